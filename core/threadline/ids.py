"""Identifiers and timestamps: UUIDv7 ids made on the client, UTC times.

Ids are canonical lowercase UUID strings. Client-side UUIDv7 ids sort by
creation time and make retries idempotent: a write repeated after a timeout
carries the same id, so the store can recognise it.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Union

from threadline.errors import ValidationError

__all__ = ["IdLike", "check_id", "new_id", "optional_id", "utcnow"]

IdLike = Union[str, uuid.UUID]
"""What the public API accepts as an id: a UUID or its string form."""

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id() -> str:
    """Return a new UUIDv7 (RFC 9562) string, monotonic within this process.

    48 bits of Unix milliseconds, then a 12-bit counter that orders ids made in
    the same millisecond, then 62 random bits.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_id(value: object, field: str = "id") -> str:
    """Return ``value`` as a canonical UUID string, or raise :class:`ValidationError`."""
    if isinstance(value, str):
        if _CANONICAL.fullmatch(value):
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    elif isinstance(value, uuid.UUID):
        return str(value)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ValidationError(f"{field} must be a UUID, got {shown}")


def optional_id(value: object, field: str = "id") -> str | None:
    """Like :func:`check_id` but lets ``None`` through."""
    return None if value is None else check_id(value, field)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (microsecond precision)."""
    return datetime.now(timezone.utc)
