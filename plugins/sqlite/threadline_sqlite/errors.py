"""Mapping ``sqlite3`` errors to threadline's: typed, never swallowed.

A lock that another connection held past ``busy_timeout`` (``SQLITE_BUSY``,
``SQLITE_LOCKED``) or a file that cannot be opened becomes
:class:`~threadline.errors.StoreUnavailableError`: retrying later may work. Anything
else, and an ``OSError`` (a directory that cannot be created), becomes
:class:`~threadline.errors.StoreError`. The transaction that failed is
rolled back by the caller first, so the store holds what it held before.
"""

from __future__ import annotations

import sqlite3

from threadline.errors import StoreError, StoreUnavailableError, ThreadlineError, ValidationError

__all__ = ["map_error"]

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CANTOPEN = 14
_UNAVAILABLE = {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN}
_UNAVAILABLE_MESSAGES = ("database is locked", "database table is locked", "unable to open")


def map_error(exc: BaseException, where: str) -> BaseException:
    """The threadline error to raise for ``exc``, raised while doing ``where``.

    threadline errors (validation, not found, conflict) and non-sqlite exceptions come
    back unchanged.
    """
    if isinstance(exc, OverflowError):  # an int past SQLite's 64 bits
        refused = ValidationError(f"sqlite store refused a value ({where}): {exc}")
        refused.__cause__ = exc
        return refused
    if isinstance(exc, OSError):  # e.g. the database's directory cannot be created
        error = StoreError(f"sqlite store failed ({where}): {exc}")
        error.__cause__ = exc
        return error
    if isinstance(exc, ThreadlineError) or not isinstance(exc, sqlite3.Error):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if code is not None:
        unavailable = code & 0xFF in _UNAVAILABLE
    else:  # Python 3.10's sqlite3 errors carry no code: go by SQLite's messages
        unavailable = any(m in text for m in _UNAVAILABLE_MESSAGES)
    if unavailable:
        mapped: StoreError = StoreUnavailableError(f"sqlite store unavailable ({where}): {text}")
    else:
        mapped = StoreError(f"sqlite store failed ({where}): {type(exc).__name__}: {text}")
    mapped.__cause__ = exc
    return mapped
