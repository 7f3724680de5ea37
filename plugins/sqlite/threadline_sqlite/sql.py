"""What every concern of the store shares: transactions, counters, deletion that forgets.

Every operation runs on a worker thread (:mod:`threadline_sqlite.worker`) and reaches
its connection with :func:`~threadline_sqlite.worker.connection`. Writes are explicit
``BEGIN IMMEDIATE`` ... ``COMMIT`` transactions (SQLite's write lock, waited for up to
``busy_timeout``); a failure leaves the transaction to the worker, which rolls it back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from threadline.errors import NotFoundError
from threadline_sqlite.worker import connection

__all__ = [
    "BUMP_SEQ",
    "BUMP_VERSION",
    "SESSION_KEY",
    "SESSION_OF_TENANT",
    "TOUCH",
    "bump",
    "chunks",
    "claim_seqs",
    "forgetting",
    "marks",
    "missing_session",
    "now_us",
    "write",
]

T = TypeVar("T")

_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
_CHUNK = 500  # ids per "IN (...)" list: far below SQLite's bound-parameter limit

SESSION_OF_TENANT = "SELECT 1 FROM entity_session WHERE id = ? AND tenant_id = ?"
SESSION_KEY = "(SELECT key FROM entity_session WHERE id = ? AND tenant_id = ?)"
"""The integer key of a session of a tenant (migration 0009), as a scalar subquery: how
statements on ``entity_message`` find a session's rows and check its tenant at once."""
# Every write that belongs to a session is activity: updated_at moves to now in the same
# transaction, never back (copy and import may have set it ahead).
BUMP_SEQ = (
    "UPDATE entity_session SET last_seq = last_seq + ?, updated_at = max(updated_at, ?) "
    "WHERE id = ? AND tenant_id = ?"
)
BUMP_VERSION = (
    "UPDATE entity_session SET last_version = last_version + ?, "
    "updated_at = max(updated_at, ?) WHERE id = ? AND tenant_id = ?"
)
TOUCH = "UPDATE entity_session SET updated_at = max(updated_at, ?) WHERE id = ? AND tenant_id = ?"


def now_us() -> int:
    """Now, in integer microseconds since the epoch (the stored timestamp format)."""
    return time.time_ns() // 1000


def marks(n: int) -> str:
    """``n`` bound-parameter marks for an ``IN (...)`` list."""
    return ",".join("?" * n)


def chunks(items: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    """``items`` in slices short enough for one ``IN (...)`` list each."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def missing_session(session_id: str) -> NotFoundError:
    """The error of a write to a session this tenant does not have."""
    return NotFoundError(f"session {session_id} not found for this tenant")


def bump(
    db: sqlite3.Connection, sql: str, n: int, session_id: str, tenant_id: str, column: str
) -> int | None:
    """Add ``n`` to a session's counter ``column``; its new value (``None``: no session).

    Must run inside ``BEGIN IMMEDIATE``: the value read back is then the one this
    transaction wrote. ``RETURNING`` saves a statement where SQLite has it (3.35+).
    """
    params = (n, now_us(), session_id, tenant_id)
    if _HAS_RETURNING:
        row = db.execute(f"{sql} RETURNING {column}", params).fetchone()
        return None if row is None else int(row[0])
    if db.execute(sql, params).rowcount == 0:
        return None
    value = db.execute(f"SELECT {column} FROM entity_session WHERE id = ?", (session_id,))
    return int(value.fetchone()[0])


def claim_seqs(
    db: sqlite3.Connection, n: int, session_id: str, tenant_id: str
) -> tuple[int, int] | None:
    """Take ``n`` seqs of a session for an append: ``(its new last_seq, its key)``, or
    ``None`` when the tenant has no such session (inside ``BEGIN IMMEDIATE``, as
    :func:`bump`; one statement where SQLite has ``RETURNING``)."""
    params = (n, now_us(), session_id, tenant_id)
    if _HAS_RETURNING:
        row = db.execute(f"{BUMP_SEQ} RETURNING last_seq, key", params).fetchone()
    else:  # pragma: no cover - SQLite before 3.35
        if db.execute(BUMP_SEQ, params).rowcount == 0:
            return None
        row = db.execute(
            "SELECT last_seq, key FROM entity_session WHERE id = ?", (session_id,)
        ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


@contextmanager
def write() -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction, committed when the block ends normally."""
    db = connection()
    db.execute("BEGIN IMMEDIATE")
    yield db
    db.execute("COMMIT")


@contextmanager
def forgetting(dry_run: bool = False) -> Iterator[sqlite3.Connection]:
    """Run a deletion so that what it deletes leaves the file, not just the tables.

    SQLite keeps deleted rows' bytes in free pages and cells, and earlier versions of
    the pages in the WAL, until they are reused. With ``secure_delete`` on for the
    block, freed space is overwritten with zeros; a ``TRUNCATE`` checkpoint then copies
    the zeroed pages into the file and empties the WAL (best effort: it waits up to
    ``busy_timeout`` for readers of other connections, and leaves the WAL to the next
    checkpoint if one still holds it). A dry run changes nothing and needs neither.
    """
    db = connection()
    if dry_run:
        yield db
        return
    before = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield db
    finally:
        if db.in_transaction:  # failed: roll back before the pragma can change again
            db.execute("ROLLBACK")
        db.execute(f"PRAGMA secure_delete = {int(before)}")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
