"""Time-ordered UUIDs (version 7, RFC 9562) for every squidmesh row.

Rows written in one transaction share a timestamp; ordering by ``(inserted_at, id)`` with
time-ordered ids keeps them in the order they were written. They also keep PostgreSQL's primary
key indexes appending at the right edge instead of splitting pages at random.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

__all__ = ["CANONICAL_ID", "as_uuid", "new_id", "new_id_text"]

CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""An id in canonical text (lowercase, dashed), as records hold it: ``CANONICAL_ID.fullmatch``."""

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id() -> uuid.UUID:
    """A new UUIDv7; monotonic within this process (a 12-bit counter orders ids of one ms)."""
    return uuid.UUID(int=_next())


def new_id_text() -> str:
    """A new UUIDv7 (as :func:`new_id`) in canonical text, ``"0190e3a4-..."``.

    What hot-path statements take and records hold, made without a ``uuid.UUID`` between.
    """
    digits = f"{_next():032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _next() -> int:
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, int.from_bytes(os.urandom(2)) & 0x1FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8)) & 0x3FFF_FFFF_FFFF_FFFF
    return (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b


def as_uuid(value: str | uuid.UUID) -> uuid.UUID:
    """``value`` as a UUID (ids reach the stores as strings or UUIDs)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
