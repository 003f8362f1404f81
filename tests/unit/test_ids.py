"""Row ids: time-ordered UUIDv7 that increase strictly within a process."""

from __future__ import annotations

import itertools
import time
import uuid

from squidmesh_sdk.store.ids import as_uuid, new_id


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
