"""Row ids: time-ordered UUIDv7 that increase strictly within a process."""

from __future__ import annotations

import itertools
import time
import uuid

from squidmesh_sdk.store.ids import as_uuid, new_id, new_id_text


def test_new_id_is_an_rfc_9562_version_7_uuid() -> None:
    before_ms = time.time_ns() // 1_000_000
    value = new_id()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 >= before_ms  # the leading 48 bits are a Unix time in ms


def test_ten_thousand_ids_in_a_row_strictly_increase() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    # Their text sorts the same way (SQLite stores them as hex).
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)
    assert len({i.int for i in ids}) == 10_000


def test_as_uuid_accepts_strings_and_uuids() -> None:
    value = new_id()
    assert as_uuid(str(value)) == value
    assert as_uuid(value) is value


def test_new_id_text_is_a_canonical_version_7_uuid_that_keeps_increasing() -> None:
    texts = [new_id_text() for _ in range(5_000)]
    for text in texts[:50]:
        value = uuid.UUID(text)
        assert str(value) == text  # canonical: lowercase, dashed
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
    assert texts == sorted(texts)
    assert len(set(texts)) == len(texts)
    # Ids of both kinds share one sequence.
    assert str(new_id()) > texts[-1]
    assert new_id_text() > texts[-1]
