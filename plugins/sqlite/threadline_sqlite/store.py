"""The SQLite store: the whole threadline store contract in one database file.

Design, and why:

* **Never on the event loop.** Every SQLite call runs on a :class:`~threadline_sqlite.
  worker.Worker` thread. Writes go to one writer thread (one connection), reads to a
  reader thread with its own connection: in WAL mode readers never block the writer
  and the writer never blocks readers. The hooks return the worker's future directly,
  so a call costs one hand-off to the thread and one back.
* **Atomic sequence numbers across processes.** A message append is one ``BEGIN
  IMMEDIATE`` transaction (SQLite's write lock, waited for up to ``busy_timeout``)
  that bumps ``entity_session.last_seq`` (with ``updated_at``) and inserts the rows
  with the numbers it got. ``UNIQUE(session_id, seq)`` backs it up. Two processes
  appending to one file serialise on the lock, never share a ``seq`` and lose
  nothing. Checkpoint versions use ``last_version`` the same way. Every write that
  belongs to a session (API calls, message updates too) moves ``updated_at`` forward in
  its transaction, so retention never takes a session in use for an idle one.
* **Idempotent retries without gaps.** The insert is tried first; if the message id
  exists, the transaction (with its ``seq`` bump) is rolled back and the stored
  message comes back, or :class:`~threadline.errors.ConflictError` when the id lives
  in another session.
* **The window from indexes.** ``(session_id, role, seq)`` finds the n-th last user
  message and the system messages; ``(session_id, seq)`` reads the rounds after it;
  ``entity_message_tool_call`` finds the call of a tool result that would be
  orphaned. The cost depends on the window, not on the session's length.
* **Incremental checkpoints.** A checkpoint's history is stored as a record of
  :mod:`threadline.storekit.delta`: a delta on its parent (the messages after those
  it keeps), or a snapshot at least every ``snapshot_every`` records of a chain.
  Writing one costs the same at step 200 as at step 1: the parent's history comes from
  an in-process cache checked against the parent row's write tag. Restoring one reads
  its chain in one recursive query of primary-key lookups. Rows written before
  migration 0002 hold the whole history and read as snapshots.
* **Erasure reaches checkpoint histories.** ``erase_user`` redacts the user's messages
  in other users' checkpoints by rewriting only the records holding them (same
  ``keep`` and depth: every delta on them stays valid) and giving every checkpoint
  whose history changed a new write tag, so no cache serves the old history; all in
  its one transaction. Migration 0003's index finds the user's messages elsewhere.
* **Deleted means gone from the file.** Deletions and erasures run with
  ``secure_delete`` and end with a ``TRUNCATE`` checkpoint of the WAL, so the bytes of
  what they removed are not left in free pages or old WAL frames.
* **Typed errors, nothing half-written.** Values are encoded (and refused with
  :class:`~threadline.errors.ValidationError`) before the transaction starts; any
  failure rolls the transaction back; ``sqlite3`` errors become
  :class:`~threadline.errors.StoreUnavailableError` (locked, cannot open) or
  :class:`~threadline.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs

from threadline.errors import ConflictError, NotFoundError, StoreError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.models import (
    AgentConfig,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    trusted,
)
from threadline.storekit.delta import (
    SNAPSHOT_EVERY,
    EncodedHistory,
    HistoryCache,
    apply_record,
    encode_history,
    load_record,
    new_tag,
    rebuild,
)
from threadline.storekit.erasure import redact, redact_record
from threadline.storekit.window import orphaned_tool_results
from threadline_sqlite import migrations
from threadline_sqlite.options import SQLiteOptions
from threadline_sqlite.rows import (
    AGENT_COLUMNS,
    API_CALL_COLUMNS,
    CHECKPOINT_COLUMNS,
    MESSAGE_COLUMNS,
    PROVIDER_COLUMNS,
    SESSION_COLUMNS,
    agent_from_row,
    agent_row,
    api_call_from_row,
    api_call_row,
    chain_history,
    checkpoint_from_row,
    checkpoint_row,
    is_legacy_history,
    message_from_row,
    message_row,
    provider_from_row,
    provider_row,
    session_from_row,
    session_row,
    to_us,
)
from threadline_sqlite.worker import Worker

__all__ = ["SQLiteStore", "open_connection"]

T = TypeVar("T")
Connection = sqlite3.Connection

_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
_CHUNK = 500  # ids per "IN (...)" list: far below SQLite's bound-parameter limit


def _now_us() -> int:
    return time.time_ns() // 1000


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _switch_to_wal(connection: Connection, options: SQLiteOptions) -> None:
    """Put the database in WAL mode, retrying while another process holds the file.

    Switching the journal mode takes an exclusive lock and SQLite may report
    ``database is locked`` at once instead of calling the busy handler (seen when several
    processes open a new file together): retried for up to ``busy_timeout``.
    """
    deadline = time.monotonic() + options.busy_timeout_ms / 1000
    pause = 0.001
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    if str(mode).lower() != "wal":
        raise StoreError(f"could not switch {options.path} to WAL (journal_mode={mode})")


def open_connection(options: SQLiteOptions, *, reader: bool = False) -> Connection:
    """Open and configure a connection (on the thread that will use it).

    The writer creates the parent directory and the file if needed and switches the
    database to WAL; every connection gets ``busy_timeout``, ``synchronous`` and
    foreign keys; a reader is ``query_only``. Autocommit mode (``isolation_level=None``):
    transactions are explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``.
    """
    if not options.in_memory and not reader:
        os.makedirs(os.path.dirname(options.path), exist_ok=True)
    connection = sqlite3.connect(
        options.path,
        timeout=options.busy_timeout_ms / 1000,
        isolation_level=None,
        cached_statements=256,
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout_ms)}")
        if not options.in_memory and not reader:
            _switch_to_wal(connection, options)
        connection.execute(f"PRAGMA synchronous = {options.synchronous}")
        connection.execute("PRAGMA foreign_keys = ON")
        if reader:
            connection.execute("PRAGMA query_only = ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _ping(connection: Connection) -> None:
    connection.execute("SELECT 1").fetchone()


def _stop(*workers: Worker) -> None:
    for worker in workers:
        worker.close_nowait()


# -- SQL -------------------------------------------------------------------------------------

_SESSION_OF_TENANT = "SELECT 1 FROM entity_session WHERE id = ? AND tenant_id = ?"
# Every write that belongs to a session is activity: updated_at moves to now in the same
# transaction, never back (copy and import may have set it ahead).
_BUMP_SEQ = (
    "UPDATE entity_session SET last_seq = last_seq + ?, updated_at = max(updated_at, ?) "
    "WHERE id = ? AND tenant_id = ?"
)
_BUMP_VERSION = (
    "UPDATE entity_session SET last_version = last_version + ?, "
    "updated_at = max(updated_at, ?) WHERE id = ? AND tenant_id = ?"
)
_TOUCH = "UPDATE entity_session SET updated_at = max(updated_at, ?) WHERE id = ? AND tenant_id = ?"
_INSERT_MESSAGE = f"INSERT INTO entity_message ({MESSAGE_COLUMNS}) VALUES ({_marks(14)})"
_INSERT_TOOL_CALL = (
    "INSERT OR IGNORE INTO entity_message_tool_call (session_id, call_id, seq) VALUES (?, ?, ?)"
)
_MESSAGE_BY_ID = f"SELECT {MESSAGE_COLUMNS} FROM entity_message WHERE id = ?"
_MESSAGE_OF_TENANT = f"SELECT {MESSAGE_COLUMNS} FROM entity_message WHERE id = ? AND tenant_id = ?"
_MESSAGES_AFTER = (
    f"SELECT {MESSAGE_COLUMNS} FROM entity_message "
    "WHERE session_id = ? AND tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_MESSAGES_ALL = (
    f"SELECT {MESSAGE_COLUMNS} FROM entity_message "
    "WHERE session_id = ? AND tenant_id = ? ORDER BY seq"
)
_MESSAGES_RANGE = (
    f"SELECT {MESSAGE_COLUMNS} FROM entity_message "
    "WHERE session_id = ? AND tenant_id = ? AND seq >= ? AND seq < ? ORDER BY seq"
)
_SYSTEM_BEFORE = (
    f"SELECT {MESSAGE_COLUMNS} FROM entity_message "
    "WHERE session_id = ? AND tenant_id = ? AND role = 'system' AND seq < ? ORDER BY seq"
)
# The window in one statement: the seq of the n-th last user message (OFFSET n-1) or 1,
# the system messages before it, then everything from it on. Index-only lookups.
_WINDOW = f"""
WITH start(seq) AS (
  SELECT coalesce((SELECT seq FROM entity_message
                   WHERE session_id = :session AND role = 'user'
                   ORDER BY seq DESC LIMIT 1 OFFSET :skip), 1)
)
SELECT {MESSAGE_COLUMNS} FROM entity_message
WHERE session_id = :session AND tenant_id = :tenant AND role = 'system'
  AND seq < (SELECT seq FROM start)
UNION ALL
SELECT {MESSAGE_COLUMNS} FROM entity_message
WHERE session_id = :session AND tenant_id = :tenant AND seq >= (SELECT seq FROM start)
ORDER BY seq
"""
# For each orphaned call id the nearest call before the window (max seq), then the
# earliest of those: where threadline.storekit.window.window_start moves the window's start.
_NEAREST_CALLERS = (
    "SELECT min(caller) FROM (SELECT max(seq) AS caller FROM entity_message_tool_call "
    "WHERE session_id = ? AND seq < ? AND call_id IN ({marks}) GROUP BY call_id)"
)
_ROUND_START = (
    "SELECT max(seq) FROM entity_message WHERE session_id = ? AND role = 'user' AND seq <= ?"
)
_UPDATE_MESSAGE = (
    "UPDATE entity_message SET content = ?, tool_calls = ?, status = ?, name = ?, metadata = ? "
    "WHERE id = ?"
)
_INTERRUPT = (
    "UPDATE entity_message SET status = 'interrupted' "
    "WHERE session_id = ? AND tenant_id = ? AND status = 'streaming'"
)

_INSERT_SESSION = (
    f"INSERT INTO entity_session ({SESSION_COLUMNS}) VALUES ({_marks(8)}) "
    "ON CONFLICT (id) DO NOTHING"
)
_SESSION_BY_ID = f"SELECT {SESSION_COLUMNS} FROM entity_session WHERE id = ?"
_SESSION_OF = f"SELECT {SESSION_COLUMNS} FROM entity_session WHERE id = ? AND tenant_id = ?"
_UPDATE_SESSION = (
    "UPDATE entity_session SET title = ?, metadata = ?, updated_at = max(updated_at, ?) "
    "WHERE id = ? AND tenant_id = ?"
)
_SET_UPDATED_AT = "UPDATE entity_session SET updated_at = ? WHERE id = ? AND tenant_id = ?"
_COUNT = "SELECT last_seq FROM entity_session WHERE id = ? AND tenant_id = ?"

_INSERT_API_CALL = (
    f"INSERT INTO entity_api_call ({API_CALL_COLUMNS}) VALUES ({_marks(20)}) "
    "ON CONFLICT (id) DO NOTHING"
)
_API_CALL_BY_ID = f"SELECT {API_CALL_COLUMNS} FROM entity_api_call WHERE id = ?"
_API_CALLS = (
    f"SELECT {API_CALL_COLUMNS} FROM entity_api_call "
    "WHERE session_id = ? AND tenant_id = ? ORDER BY rowid"
)

_INSERT_CHECKPOINT = f"INSERT INTO entity_checkpoint ({CHECKPOINT_COLUMNS}) VALUES ({_marks(16)})"
_CHECKPOINT_OWNER = "SELECT tenant_id FROM entity_checkpoint WHERE id = ?"
_CHECKPOINT_LINK = (
    "SELECT session_id, history_depth, history_tag FROM entity_checkpoint WHERE id = ?"
)
_CHECKPOINTS_OF_SESSION = (
    f"SELECT {CHECKPOINT_COLUMNS} FROM entity_checkpoint WHERE session_id = ? AND tenant_id = ?"
)
_C_COLUMNS = ", ".join("c." + name.strip() for name in CHECKPOINT_COLUMNS.split(","))
_CHECKPOINTS_OF_TENANT = (
    f"SELECT {_C_COLUMNS} FROM entity_checkpoint c JOIN entity_session s ON s.id = c.session_id "
    "WHERE c.tenant_id = ?"
)
# A checkpoint and the records its history is rebuilt from, in one statement: itself,
# then its parent, and so on while the row just read is a delta (history_depth > 0; a
# snapshot has 0 and a row older than migration 0002 NULL). Each step is a primary-key
# lookup; threadline.storekit.delta bounds the chain to SNAPSHOT_EVERY rows. Rows come
# with their distance n first and are put in order by _chain (an ORDER BY would copy
# every row, snapshot included, into a temporary b-tree first).
_CHAIN = f"""
WITH RECURSIVE chain(n, {CHECKPOINT_COLUMNS}) AS (
  SELECT 0, {CHECKPOINT_COLUMNS} FROM entity_checkpoint WHERE {{anchor}}
  UNION ALL
  SELECT chain.n + 1, {_C_COLUMNS}
  FROM chain JOIN entity_checkpoint c ON c.id = chain.parent_id
  WHERE chain.history_depth > 0
)
SELECT n, {CHECKPOINT_COLUMNS} FROM chain
"""
_CHAIN_OF_ID = _CHAIN.format(anchor="id = ?")
_CHAIN_OF_TENANT = _CHAIN.format(anchor="id = ? AND tenant_id = ?")
_CHAIN_OF_LATEST = _CHAIN.format(
    anchor="id = (SELECT id FROM entity_checkpoint WHERE session_id = :session "
    "AND tenant_id = :tenant AND (:agent IS NULL OR agent_id = :agent) "
    "ORDER BY version DESC LIMIT 1)"
)

_AGENT_UPSERT = (
    f"INSERT INTO entity_agent ({AGENT_COLUMNS}) VALUES ({_marks(16)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(
        f"{name} = excluded.{name}"
        for name in (n.strip() for n in AGENT_COLUMNS.split(","))
        if name != "id"
    )
)
_PROVIDER_UPSERT = (
    f"INSERT INTO entity_provider ({PROVIDER_COLUMNS}) VALUES ({_marks(10)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(
        f"{name} = excluded.{name}"
        for name in (n.strip() for n in PROVIDER_COLUMNS.split(","))
        if name != "id"
    )
)
_AGENT_BY_ID = f"SELECT {AGENT_COLUMNS} FROM entity_agent WHERE id = ? AND tenant_id = ?"
_AGENT_BY_CODE = f"SELECT {AGENT_COLUMNS} FROM entity_agent WHERE tenant_id = ? AND code = ?"
_AGENTS = f"SELECT {AGENT_COLUMNS} FROM entity_agent WHERE tenant_id = ? ORDER BY code, id"
_PROVIDER_OF = f"SELECT {PROVIDER_COLUMNS} FROM entity_provider WHERE id = ? AND tenant_id = ?"
_PROVIDERS = f"SELECT {PROVIDER_COLUMNS} FROM entity_provider WHERE tenant_id = ?"
_PROVIDERS_BY_NAME = _PROVIDERS + " ORDER BY name, id"


def _bump(connection: Connection, sql: str, params: tuple[Any, ...], column: str) -> int | None:
    """Run a counter ``UPDATE`` on a session and return the new value (``None``: no session).

    Must run inside ``BEGIN IMMEDIATE``: the value read back is then the one this
    transaction wrote. ``RETURNING`` saves a statement where SQLite has it (3.35+).
    """
    if _HAS_RETURNING:
        row = connection.execute(f"{sql} RETURNING {column}", params).fetchone()
        return None if row is None else int(row[0])
    if connection.execute(sql, params).rowcount == 0:
        return None
    value = connection.execute(
        f"SELECT {column} FROM entity_session WHERE id = ?", (params[-2],)
    ).fetchone()
    return int(value[0])


def _missing_session(session_id: str) -> NotFoundError:
    return NotFoundError(f"session {session_id} not found for this tenant")


def _unusable_id(kind: str, record_id: str) -> ConflictError:
    """The one answer to an id another row holds: it never says whose row (or tenant) it is."""
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")


# -- message jobs (writer thread) -----------------------------------------------------------


def _save_message(connection: Connection, message: Message) -> Message:
    row = message_row(message)  # encoded (and validated) before taking the lock
    connection.execute("BEGIN IMMEDIATE")
    seq = _bump(connection, _BUMP_SEQ, (1, _now_us(), message.session_id, message.tenant_id),
                "last_seq")  # fmt: skip
    if seq is None:
        raise _missing_session(message.session_id)
    row[5] = seq
    try:
        connection.execute(_INSERT_MESSAGE, row)
    except sqlite3.IntegrityError:
        connection.execute("ROLLBACK")  # undo the seq bump: a retry leaves no gap
        return _existing_message(connection, message)
    if message.tool_calls:
        connection.executemany(
            _INSERT_TOOL_CALL, [(message.session_id, c.id, seq) for c in message.tool_calls]
        )
    connection.execute("COMMIT")
    return message_from_row(row)


def _existing_message(connection: Connection, message: Message) -> Message:
    found = connection.execute(_MESSAGE_BY_ID, (message.id,)).fetchone()
    if found is None:  # the insert failed for another reason: report it, never hide it
        raise StoreError(f"could not insert message {message.id} (integrity error)")
    existing = message_from_row(found)
    if existing.session_id != message.session_id or existing.tenant_id != message.tenant_id:
        raise _unusable_id("message", message.id)
    return existing


def _save_messages(connection: Connection, messages: Sequence[Message]) -> list[Message]:
    first = messages[0]
    for m in messages:
        if m.session_id != first.session_id or m.tenant_id != first.tenant_id:
            raise ValidationError("save_messages takes messages of a single session")
    rows = [message_row(m) for m in messages]
    n = len(rows)
    connection.execute("BEGIN IMMEDIATE")
    last = _bump(connection, _BUMP_SEQ, (n, _now_us(), first.session_id, first.tenant_id),
                 "last_seq")  # fmt: skip
    if last is None:
        raise _missing_session(first.session_id)
    if len({m.id for m in messages}) != n:
        raise ValidationError("save_messages got the same message id twice")
    seq = last - n
    for row in rows:
        seq += 1
        row[5] = seq
    try:
        connection.executemany(_INSERT_MESSAGE, rows)
    except sqlite3.IntegrityError:
        connection.execute("ROLLBACK")
        return _save_messages_with_retries(connection, messages, rows)
    _index_tool_calls(connection, messages, rows)
    connection.execute("COMMIT")
    return [message_from_row(row) for row in rows]


def _index_tool_calls(
    connection: Connection, messages: Sequence[Message], rows: Sequence[list[Any]]
) -> None:
    calls = [
        (m.session_id, c.id, row[5])
        for m, row in zip(messages, rows)
        if m.tool_calls
        for c in m.tool_calls
    ]
    if calls:
        connection.executemany(_INSERT_TOOL_CALL, calls)


def _save_messages_with_retries(
    connection: Connection, messages: Sequence[Message], rows: list[list[Any]]
) -> list[Message]:
    """The slow path of a batch in which some ids are stored already (a retried batch)."""
    first = messages[0]
    connection.execute("BEGIN IMMEDIATE")
    session = (first.session_id, first.tenant_id)
    if connection.execute(_SESSION_OF_TENANT, session).fetchone() is None:
        raise _missing_session(first.session_id)
    existing: dict[str, Message] = {}
    for chunk in _chunks([m.id for m in messages]):
        sql = f"SELECT {MESSAGE_COLUMNS} FROM entity_message WHERE id IN ({_marks(len(chunk))})"
        for found in connection.execute(sql, tuple(chunk)):
            existing[found[0]] = message_from_row(found)
    for m in messages:
        stored = existing.get(m.id)
        if stored is not None and (
            stored.session_id != m.session_id or stored.tenant_id != m.tenant_id
        ):
            raise _unusable_id("message", m.id)
    fresh = [(m, row) for m, row in zip(messages, rows) if m.id not in existing]
    if fresh:
        last = _bump(connection, _BUMP_SEQ, (len(fresh), _now_us(), *session), "last_seq")
        assert last is not None
        seq = last - len(fresh)
        for _, row in fresh:
            seq += 1
            row[5] = seq
        connection.executemany(_INSERT_MESSAGE, [row for _, row in fresh])
        _index_tool_calls(connection, [m for m, _ in fresh], [row for _, row in fresh])
    connection.execute("COMMIT")
    return [existing[m.id] if m.id in existing else message_from_row(row)
            for m, row in zip(messages, rows)]  # fmt: skip


def _update_message(connection: Connection, message: Message) -> Message:
    new = message_row(message)
    connection.execute("BEGIN IMMEDIATE")
    found = connection.execute(_MESSAGE_OF_TENANT, (message.id, message.tenant_id)).fetchone()
    if found is None:
        raise NotFoundError(f"message {message.id} not found for this tenant")
    # content, tool calls, status, name and metadata change; the rest stays as stored.
    row = (*found[:7], new[7], new[8], found[9], new[10], new[11], new[12], found[13])
    connection.execute(_UPDATE_MESSAGE, (new[7], new[8], new[11], new[10], new[12], message.id))
    if found[8] != new[8]:
        session_id, seq = found[1], found[5]
        old = message_from_row(found).tool_calls
        connection.executemany(
            "DELETE FROM entity_message_tool_call WHERE session_id = ? AND call_id = ? AND seq = ?",
            [(session_id, c.id, seq) for c in old],
        )
        connection.executemany(
            _INSERT_TOOL_CALL, [(session_id, c.id, seq) for c in message.tool_calls]
        )
    connection.execute(_TOUCH, (_now_us(), found[1], message.tenant_id))
    connection.execute("COMMIT")
    return message_from_row(row)


def _interrupt_streaming(connection: Connection, tenant_id: str, session_id: str) -> int:
    connection.execute("BEGIN IMMEDIATE")
    changed = int(connection.execute(_INTERRUPT, (session_id, tenant_id)).rowcount)
    if changed:
        connection.execute(_TOUCH, (_now_us(), session_id, tenant_id))
    connection.execute("COMMIT")
    return changed


# -- message reads (reader thread) -----------------------------------------------------------


def _get_messages(
    connection: Connection, tenant_id: str, session_id: str, after_seq: int, limit: int | None
) -> list[Message]:
    rows = connection.execute(
        _MESSAGES_AFTER, (session_id, tenant_id, after_seq, -1 if limit is None else limit)
    ).fetchall()
    return [message_from_row(row) for row in rows]


def _count_messages(connection: Connection, tenant_id: str, session_id: str) -> int:
    # Messages are only ever appended (or deleted with their session): the counter is the count.
    row = connection.execute(_COUNT, (session_id, tenant_id)).fetchone()
    return 0 if row is None else int(row[0])


def _load_window(
    connection: Connection, tenant_id: str, session_id: str, last_rounds: int | None
) -> list[Message]:
    if last_rounds is None:
        rows = connection.execute(_MESSAGES_ALL, (session_id, tenant_id)).fetchall()
        return [message_from_row(row) for row in rows]
    if last_rounds == 0:
        rows = connection.execute(_SYSTEM_BEFORE, (session_id, tenant_id, 2**62)).fetchall()
        return [message_from_row(row) for row in rows]
    params = {"session": session_id, "tenant": tenant_id, "skip": last_rounds - 1}
    rows = connection.execute(_WINDOW, params).fetchall()
    start, answers_a_call = _round_start(rows, last_rounds)
    window = [message_from_row(row) for row in rows]
    if not answers_a_call or rows[start][5] <= 1 or not orphaned_tool_results(window[start:]):
        return window
    # Rare: a tool result in the window answers a call made before it. Grow back to the
    # call's round, in one read transaction so every query sees the same snapshot.
    connection.execute("BEGIN")
    try:
        rows = connection.execute(_WINDOW, params).fetchall()
        start, _ = _round_start(rows, last_rounds)
        return _grow_window(
            connection, tenant_id, session_id, [message_from_row(row) for row in rows[start:]]
        )
    finally:
        connection.execute("COMMIT")


def _round_start(rows: Sequence[Sequence[Any]], last_rounds: int) -> tuple[int, bool]:
    """Where the rounds begin in a :data:`_WINDOW` result, and whether they hold a tool result.

    The query starts the rounds at the ``last_rounds``-th last user message, or at
    ``seq`` 1 when the session has fewer user messages; the head before it holds only
    system messages. Works on rows (``row[6]`` is the role) before they become models.
    """
    seen = 0
    tool_result = False
    for index in range(len(rows) - 1, -1, -1):
        role = rows[index][6]
        if role == "user":
            seen += 1
            if seen == last_rounds:
                return index, tool_result
        elif role == "tool":
            tool_result = True
    return 0, tool_result  # fewer user messages than rounds: everything from seq 1


def _grow_window(
    connection: Connection, tenant_id: str, session_id: str, rounds: list[Message]
) -> list[Message]:
    """Move the window's start back until no tool result in it lacks its call.

    Mirrors :func:`threadline.storekit.window.window_start` with index lookups: for each orphaned
    id the nearest earlier message that called it (``entity_message_tool_call``), the
    earliest of those, then the user message that starts its round.
    """
    start = (rounds[0].seq or 1) if rounds else 1
    while start > 1:
        orphans = sorted(orphaned_tool_results(rounds))
        if not orphans:
            break
        caller: int | None = None
        for chunk in _chunks(orphans):
            sql = _NEAREST_CALLERS.format(marks=_marks(len(chunk)))
            found = connection.execute(sql, (session_id, start, *chunk)).fetchone()[0]
            if found is not None and (caller is None or found < caller):
                caller = found
        if caller is None:
            break
        user = connection.execute(_ROUND_START, (session_id, caller)).fetchone()[0]
        new_start = int(user) if user is not None else 1
        earlier = connection.execute(_MESSAGES_RANGE, (session_id, tenant_id, new_start, start))
        rounds = [message_from_row(row) for row in earlier] + rounds
        start = new_start
    head = connection.execute(_SYSTEM_BEFORE, (session_id, tenant_id, start)).fetchall()
    return [message_from_row(row) for row in head] + rounds


# -- sessions ---------------------------------------------------------------------------------


def _create_session(connection: Connection, session: Session) -> Session:
    row = session_row(session)
    connection.execute("BEGIN IMMEDIATE")
    if connection.execute(_INSERT_SESSION, row).rowcount == 1:
        connection.execute("COMMIT")
        return session_from_row(row)
    found = connection.execute(_SESSION_BY_ID, (session.id,)).fetchone()
    connection.execute("COMMIT")
    if found[1] != session.tenant_id:
        raise _unusable_id("session", session.id)
    return session_from_row(found)


def _get_session(connection: Connection, tenant_id: str, session_id: str) -> Session | None:
    row = connection.execute(_SESSION_OF, (session_id, tenant_id)).fetchone()
    return None if row is None else session_from_row(row)


def _list_sessions(
    connection: Connection,
    tenant_id: str,
    user_id: str | None,
    agent_id: str | None,
    limit: int,
    offset: int,
) -> list[Session]:
    sql = f"SELECT {SESSION_COLUMNS} FROM entity_session WHERE tenant_id = ?"
    params: list[Any] = [tenant_id]
    if user_id is not None:
        sql += " AND user_id = ?"
        params.append(user_id)
    if agent_id is not None:
        sql += " AND agent_id = ?"
        params.append(agent_id)
    sql += " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
    rows = connection.execute(sql, (*params, limit, offset)).fetchall()
    return [session_from_row(row) for row in rows]


def _update_session(connection: Connection, session: Session) -> Session:
    row = session_row(session)
    connection.execute("BEGIN IMMEDIATE")
    changed = connection.execute(
        _UPDATE_SESSION, (session.title, row[5], _now_us(), session.id, session.tenant_id)
    ).rowcount
    if changed == 0:
        raise NotFoundError(f"session {session.id} not found for this tenant")
    found = connection.execute(_SESSION_BY_ID, (session.id,)).fetchone()
    connection.execute("COMMIT")
    return session_from_row(found)


def _set_session_updated_at(
    connection: Connection, tenant_id: str, session_id: str, updated_at_us: int
) -> Session:
    """Set ``updated_at`` to exactly ``updated_at_us`` (copy and import keep the source's)."""
    connection.execute("BEGIN IMMEDIATE")
    params = (updated_at_us, session_id, tenant_id)
    if connection.execute(_SET_UPDATED_AT, params).rowcount == 0:
        raise _missing_session(session_id)
    found = connection.execute(_SESSION_BY_ID, (session_id,)).fetchone()
    connection.execute("COMMIT")
    return session_from_row(found)


def _delete_session(connection: Connection, tenant_id: str, session_id: str) -> bool:
    connection.execute("BEGIN IMMEDIATE")
    if connection.execute(_SESSION_OF_TENANT, (session_id, tenant_id)).fetchone() is None:
        connection.execute("COMMIT")
        return False
    for table in ("entity_message_tool_call", "entity_message", "entity_api_call",
                  "entity_checkpoint"):  # fmt: skip
        connection.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
    connection.execute("DELETE FROM entity_session WHERE id = ?", (session_id,))
    connection.execute("COMMIT")
    return True


# -- API calls --------------------------------------------------------------------------------


def _save_api_call(connection: Connection, api_call: ApiCall) -> ApiCall:
    row = api_call_row(api_call)
    connection.execute("BEGIN IMMEDIATE")
    session = (api_call.session_id, api_call.tenant_id)
    if connection.execute(_SESSION_OF_TENANT, session).fetchone() is None:
        raise _missing_session(api_call.session_id)
    if connection.execute(_INSERT_API_CALL, row).rowcount == 1:
        connection.execute(_TOUCH, (_now_us(), *session))
        connection.execute("COMMIT")
        return api_call_from_row(row)
    found = connection.execute(_API_CALL_BY_ID, (api_call.id,)).fetchone()
    connection.execute("COMMIT")
    existing = api_call_from_row(found)
    if (existing.session_id, existing.tenant_id) != session:
        raise _unusable_id("api call", api_call.id)
    return existing


def _list_api_calls(connection: Connection, tenant_id: str, session_id: str) -> list[ApiCall]:
    rows = connection.execute(_API_CALLS, (session_id, tenant_id)).fetchall()
    return [api_call_from_row(row) for row in rows]


# -- checkpoints ------------------------------------------------------------------------------


def _chain(connection: Connection, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """A :data:`_CHAIN` query's rows in :data:`CHECKPOINT_COLUMNS` order, the checkpoint first."""
    found = connection.execute(sql, params).fetchall()
    found.sort()  # by n, unique: the tuples never compare further
    return [row[1:] for row in found]


def _create_checkpoint(
    connection: Connection, checkpoint: Checkpoint, cache: HistoryCache, snapshot_every: int
) -> Checkpoint:
    """Insert the checkpoint with its history as a snapshot or a delta on its parent.

    The delta is found against the parent's history from ``cache`` (before taking the
    lock) when the parent row's write tag confirms it, else rebuilt from the parent's
    chain inside the transaction.
    """
    c = checkpoint
    t, sid = c.tenant_id, c.session_id
    cached = cache.get(c.parent_id)
    encoded: EncodedHistory | None = None
    if c.parent_id is None:
        encoded = encode_history(c.history, tenant_id=t, session_id=sid)
    elif cached is not None:
        encoded = encode_history(
            c.history, tenant_id=t, session_id=sid, parent=cached.history,
            parent_depth=cached.depth, snapshot_every=snapshot_every,
        )  # fmt: skip
    tag = new_tag()
    row = checkpoint_row(c, "", 0, tag)  # input, state, properties refused before the lock
    connection.execute("BEGIN IMMEDIATE")
    if connection.execute(_SESSION_OF_TENANT, (c.session_id, c.tenant_id)).fetchone() is None:
        raise _missing_session(c.session_id)
    if connection.execute(_CHECKPOINT_OWNER, (c.id,)).fetchone() is not None:
        rows = _chain(connection, _CHAIN_OF_ID, (c.id,))
        connection.execute("COMMIT")
        return _existing_checkpoint(c, row, rows)
    if c.parent_id is not None:
        link = connection.execute(_CHECKPOINT_LINK, (c.parent_id,)).fetchone()
        if link is None or link[0] != c.session_id:
            raise NotFoundError(f"parent checkpoint {c.parent_id} not found in this session")
        _, depth, parent_tag = link
        if encoded is None or cached is None or cached.tag != parent_tag:
            parent = chain_history(_chain(connection, _CHAIN_OF_ID, (c.parent_id,)))
            cache.put(c.parent_id, parent_tag, depth, parent)
            encoded = encode_history(
                c.history, tenant_id=t, session_id=sid, parent=parent,
                parent_depth=depth or 0, snapshot_every=snapshot_every,
            )  # fmt: skip
    assert encoded is not None
    row[9], row[14] = encoded.text, encoded.depth
    row[4] = _bump(connection, _BUMP_VERSION, (1, _now_us(), c.session_id, c.tenant_id),
                   "last_version")  # fmt: skip
    connection.execute(_INSERT_CHECKPOINT, row)
    connection.execute("COMMIT")
    cache.put(c.id, tag, encoded.depth, c.history)
    return checkpoint_from_row(row, c.history)


def _existing_checkpoint(
    checkpoint: Checkpoint, row: list[Any], stored: Sequence[Sequence[Any]]
) -> Checkpoint:
    """A retry returns the stored checkpoint; the same id with other content conflicts."""
    existing = checkpoint_from_row(stored[0], chain_history(stored))
    t, sid = checkpoint.tenant_id, checkpoint.session_id
    # Compare as stored: JSON round trips of the retry's values (tuples become lists ...).
    snapshot = encode_history(checkpoint.history, tenant_id=t, session_id=sid)
    history = rebuild([snapshot.text], tenant_id=t, session_id=sid)
    row[4] = existing.version
    if checkpoint_from_row(row, history) != existing:
        raise _unusable_id("checkpoint", checkpoint.id)
    return existing


def _checkpoint_of_chain(rows: Sequence[Sequence[Any]], cache: HistoryCache) -> Checkpoint | None:
    if not rows:
        return None
    history = chain_history(rows)
    head = rows[0]
    cache.put(head[0], head[15], head[14], history)
    return checkpoint_from_row(head, history)


def _get_checkpoint(
    connection: Connection, tenant_id: str, checkpoint_id: str, cache: HistoryCache
) -> Checkpoint | None:
    rows = _chain(connection, _CHAIN_OF_TENANT, (checkpoint_id, tenant_id))
    return _checkpoint_of_chain(rows, cache)


def _get_latest_checkpoint(
    connection: Connection,
    tenant_id: str,
    session_id: str,
    agent_id: str | None,
    cache: HistoryCache,
) -> Checkpoint | None:
    params = {"session": session_id, "tenant": tenant_id, "agent": agent_id}
    rows = _chain(connection, _CHAIN_OF_LATEST, params)
    return _checkpoint_of_chain(rows, cache)


def _list_checkpoints(
    connection: Connection,
    tenant_id: str,
    session_id: str | None,
    agent_id: str | None,
    cache: HistoryCache,
) -> list[Checkpoint]:
    if session_id is not None:
        sql, params = _CHECKPOINTS_OF_SESSION, [session_id, tenant_id]
        agent_filter, order = " AND agent_id = ?", " ORDER BY version"
    else:
        sql, params = _CHECKPOINTS_OF_TENANT, [tenant_id]
        agent_filter, order = " AND c.agent_id = ?", " ORDER BY s.created_at, s.id, c.version"
    if agent_id is not None:
        sql += agent_filter
        params.append(agent_id)
    rows = connection.execute(sql + order, params).fetchall()
    by_id = {row[0]: row for row in rows}
    # A delta whose parent was filtered out (another agent's): read those sessions whole.
    sessions = sorted({row[2] for row in rows if row[14] and row[5] not in by_id})
    for chunk in _chunks(sessions):
        more = f"SELECT {CHECKPOINT_COLUMNS} FROM entity_checkpoint WHERE session_id IN "
        for row in connection.execute(more + f"({_marks(len(chunk))})", tuple(chunk)):
            by_id.setdefault(row[0], row)
    histories = _histories(by_id, [row[0] for row in rows])
    out = []
    for row in rows:
        history = histories[row[0]]
        cache.put(row[0], row[15], row[14], history)
        out.append(checkpoint_from_row(row, history))
    return out


def _histories(
    by_id: Mapping[str, Sequence[Any]], ids: Iterable[str]
) -> dict[str, tuple[Message, ...]]:
    """The logical histories of ``ids`` (and of every checkpoint they build on), by id.

    ``by_id`` holds the rows (in :data:`CHECKPOINT_COLUMNS` order) of the checkpoints and
    of every record their chains need. Each history is built on its parent's, so every
    record is decoded once however many checkpoints share it.

    :raises StoreError: a chain's record is missing or damaged.
    """
    histories: dict[str, tuple[Message, ...]] = {}
    for checkpoint_id in ids:
        chain: list[Sequence[Any]] = []
        current = checkpoint_id
        while current not in histories:
            row = by_id.get(current)
            if row is None:
                raise StoreError(f"checkpoint {current} is missing; the store is damaged")
            chain.append(row)
            if not row[14]:  # a snapshot, or a full history older than migration 0002
                break
            current = row[5]
        for row in reversed(chain):
            if not row[14]:
                history = chain_history([row])
            else:
                built = list(histories[row[5]])
                apply_record(built, row[9], tenant_id=row[1], session_id=row[2])
                history = tuple(built)
            histories[row[0]] = history
    return histories


# -- retention (writer thread) ---------------------------------------------------------------


def _forgetting(connection: Connection, fn: Callable[..., T], dry_run: bool, *args: Any) -> T:
    """Run a deletion so that what it deletes leaves the file, not just the tables.

    SQLite keeps deleted rows' bytes in free pages and cells, and earlier versions of
    the pages in the WAL, until they are reused. With ``secure_delete`` on for the
    transaction, freed space is overwritten with zeros; a ``TRUNCATE`` checkpoint then
    copies the zeroed pages into the file and empties the WAL (best effort: it waits up
    to ``busy_timeout`` for readers of other connections, and leaves the WAL to the next
    checkpoint if one still holds it).
    """
    if dry_run:
        return fn(connection, *args)
    before = connection.execute("PRAGMA secure_delete").fetchone()[0]
    connection.execute("PRAGMA secure_delete = ON")
    try:
        result = fn(connection, *args)
    finally:
        connection.execute(f"PRAGMA secure_delete = {int(before)}")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return result


_SESSION_TABLES = ("entity_message_tool_call", "entity_message", "entity_api_call",
                   "entity_checkpoint")  # fmt: skip
_COUNTED = (("messages", "entity_message"), ("api_calls", "entity_api_call"),
            ("checkpoints", "entity_checkpoint"))  # fmt: skip


def _drop_sessions(connection: Connection, session_ids: Sequence[str]) -> None:
    """Delete sessions with everything in them (inside the caller's transaction)."""
    for chunk in _chunks(session_ids):
        marks = _marks(len(chunk))
        for table in _SESSION_TABLES:
            connection.execute(f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk)
        connection.execute(f"DELETE FROM entity_session WHERE id IN ({marks})", chunk)


def _erase_user(
    connection: Connection, tenant_id: str, user_id: str, dry_run: bool
) -> dict[str, int]:
    """Delete the user's sessions; redact or delete their rows in other users' sessions.

    One transaction: the counts are what it changed (with ``dry_run``, would change).
    See :func:`threadline.hookspecs.threadline_erase_user`.
    """
    connection.execute("BEGIN IMMEDIATE")
    ids = [
        row[0]
        for row in connection.execute(
            "SELECT id FROM entity_session WHERE tenant_id = ? AND user_id = ?",
            (tenant_id, user_id),
        )
    ]
    counts = {"sessions": len(ids)}
    for kind, table in _COUNTED:
        counts[kind] = 0
        for chunk in _chunks(ids):
            sql = f"SELECT count(*) FROM {table} WHERE session_id IN ({_marks(len(chunk))})"
            counts[kind] += connection.execute(sql, chunk).fetchone()[0]
    # The user's rows in other users' sessions of the tenant: messages are redacted in
    # place (seq, role, status kept), API calls deleted, checkpoint histories redacted.
    params = (tenant_id, user_id, user_id)
    found = connection.execute(_ERASE_FOREIGN_MESSAGES, params).fetchall()
    counts["messages_redacted"] = len(found)
    counts["api_calls"] += connection.execute(
        f"SELECT count(*) {_ERASE_FOREIGN_CALLS}", params
    ).fetchone()[0]
    counts["checkpoints_redacted"] = _redact_checkpoints(connection, tenant_id, user_id, dry_run)
    if not dry_run:
        _drop_sessions(connection, ids)
        for row in found:
            old = message_from_row(row)
            new = message_row(redact(old))
            connection.execute(
                "UPDATE entity_message SET user_id = ?, content = ?, tool_calls = ?, name = ?, "
                "metadata = ? WHERE id = ?",
                (new[3], new[7], new[8], new[10], new[12], old.id),
            )
            connection.executemany(
                "DELETE FROM entity_message_tool_call "
                "WHERE session_id = ? AND call_id = ? AND seq = ?",
                [(old.session_id, c.id, old.seq) for c in old.tool_calls],
            )
        connection.execute(
            f"DELETE FROM entity_api_call WHERE id IN (SELECT a.id {_ERASE_FOREIGN_CALLS})",
            params,
        )
    connection.execute("COMMIT")
    return counts


_M_COLUMNS = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
# The user's messages in other users' sessions: idx_message_tenant_user (migration 0003)
# finds them without reading the tenant's other messages. Parameters: tenant, user, user.
_ERASE_FOREIGN_MESSAGES = (
    f"SELECT {_M_COLUMNS} FROM entity_message m JOIN entity_session s ON s.id = m.session_id "
    "WHERE m.tenant_id = ? AND m.user_id = ? AND s.user_id IS NOT ?"
)
# Their API calls there: idx_api_call_tenant_user (migration 0004). Same parameters.
_ERASE_FOREIGN_CALLS = (
    "FROM entity_api_call a JOIN entity_session s ON s.id = a.session_id "
    "WHERE a.tenant_id = ? AND a.user_id = ? AND s.user_id IS NOT ?"
)
# Other users' sessions of the tenant with a checkpoint record that names the user:
# the only ones whose checkpoint histories can hold the user's messages (see
# _redact_checkpoints). User ids are canonical UUIDs: JSON writes them as they are.
# Parameters: tenant, user.
_ERASE_CHECKPOINTED_SESSIONS = (
    "SELECT s.id FROM entity_session s WHERE s.tenant_id = :tenant AND s.user_id IS NOT :user "
    "AND EXISTS (SELECT 1 FROM entity_checkpoint c "
    "WHERE c.session_id = s.id AND c.tenant_id = :tenant AND instr(c.history, :user) > 0)"
)
_ERASE_SESSION_CHECKPOINTS = _CHECKPOINTS_OF_SESSION + " ORDER BY version"
_REWRITE_RECORD = (
    "UPDATE entity_checkpoint SET history = ?, history_depth = ?, history_tag = ? WHERE id = ?"
)


def _redact_checkpoints(connection: Connection, tenant_id: str, user_id: str, dry_run: bool) -> int:
    """Redact ``user_id``'s messages in other users' checkpoints; count the checkpoints.

    Runs inside :func:`_erase_user`'s transaction. A session can hold such a checkpoint
    only if one of its records names the user: an item leaves out its ``user_id`` only
    when the message before it in the same logical history has the same one, and that
    message's record is in the same session (a delta's parent always is). So the
    sessions are found with a text search of their records (``instr``, no decoding),
    and only their checkpoints are rebuilt.

    Every checkpoint whose history held the user's messages gets a new write tag, and
    every record whose own messages held them is rewritten with
    :func:`threadline.storekit.erasure.redact_record` (same kind, ``keep`` and depth; a full
    history from before migration 0002 becomes a snapshot record). The new tags make
    every :class:`~threadline.storekit.delta.HistoryCache`, in this process or another,
    miss on these checkpoints: a delta whose own record is unchanged has a redacted
    history too, and a cached unredacted one would give a child written on it a wrong
    ``keep``.
    """
    params = {"tenant": tenant_id, "user": user_id}
    sessions = connection.execute(_ERASE_CHECKPOINTED_SESSIONS, params).fetchall()
    count = 0
    for (session_id,) in sessions:
        rows = connection.execute(_ERASE_SESSION_CHECKPOINTS, (session_id, tenant_id)).fetchall()
        histories = _histories({row[0]: row for row in rows}, [row[0] for row in rows])
        rewrites = []
        for row in rows:
            history = histories[row[0]]
            if any(m.user_id == user_id for m in history):
                count += 1
                if not dry_run:
                    rewrites.append(_redacted_record(row, history, user_id))
        connection.executemany(_REWRITE_RECORD, rewrites)
    return count


def _redacted_record(
    row: Sequence[Any], history: Sequence[Message], user_id: str
) -> tuple[str, int | None, int, str]:
    """:data:`_REWRITE_RECORD`'s parameters for a checkpoint whose ``history`` holds the user's.

    The record is rewritten if its own messages hold them (else kept as it is); the tag
    is new either way.
    """
    text, depth = row[9], row[14]
    keep = None if is_legacy_history(text) else load_record(text)[0]
    encoded = redact_record(
        history, keep, user_id, tenant_id=row[1], session_id=row[2], depth=depth or 0
    )
    if encoded is not None:
        text, depth = encoded.text, encoded.depth
    return text, depth, new_tag(), row[0]


def _delete_sessions_before(
    connection: Connection, tenant_id: str, before_us: int, user_id: str | None, dry_run: bool
) -> int:
    sql = "SELECT id FROM entity_session WHERE tenant_id = ? AND updated_at < ?"
    params: tuple[Any, ...] = (tenant_id, before_us)
    if user_id is not None:
        sql, params = sql + " AND user_id = ?", (*params, user_id)
    connection.execute("BEGIN IMMEDIATE")
    ids = [row[0] for row in connection.execute(sql, params)]
    if not dry_run:
        _drop_sessions(connection, ids)
    connection.execute("COMMIT")
    return len(ids)


def _prune_checkpoints(
    connection: Connection,
    tenant_id: str,
    session_id: str,
    keep: int,
    dry_run: bool,
) -> int:
    """Delete all but the newest ``keep`` versions; a kept delta whose base goes becomes a snapshot.

    The kept checkpoint's history is rebuilt from its chain before anything is deleted and
    written back as a snapshot record (depth 0, a new write tag), so it reads back exactly
    as before; its ``parent_id`` is left as it was.
    """
    connection.execute("BEGIN IMMEDIATE")
    rows = connection.execute(
        "SELECT id, parent_id, history_depth FROM entity_checkpoint "
        "WHERE session_id = ? AND tenant_id = ? ORDER BY version",
        (session_id, tenant_id),
    ).fetchall()
    doomed = [row[0] for row in rows[: max(len(rows) - keep, 0)]]
    if doomed and not dry_run:
        gone = set(doomed)
        for checkpoint_id, parent_id, depth in rows[len(doomed) :]:
            if depth and parent_id in gone:  # a delta on a checkpoint about to go
                history = chain_history(_chain(connection, _CHAIN_OF_ID, (checkpoint_id,)))
                encoded = encode_history(history, tenant_id=tenant_id, session_id=session_id)
                connection.execute(
                    "UPDATE entity_checkpoint SET history = ?, history_depth = 0, "
                    "history_tag = ? WHERE id = ?",
                    (encoded.text, new_tag(), checkpoint_id),
                )
        for chunk in _chunks(doomed):
            connection.execute(
                f"DELETE FROM entity_checkpoint WHERE id IN ({_marks(len(chunk))})", chunk
            )
    connection.execute("COMMIT")
    return len(doomed)


# -- agent configs ----------------------------------------------------------------------------


def _save_agent_config(connection: Connection, config: AgentConfig) -> AgentConfig:
    agent, provider = config.agent, config.provider
    if provider is not None and agent.provider_id != provider.id:
        agent = attrs.evolve(agent, provider_id=provider.id)
    agent_values = agent_row(agent)
    provider_values = None if provider is None else provider_row(provider)
    connection.execute("BEGIN IMMEDIATE")
    owner = connection.execute(
        "SELECT tenant_id FROM entity_agent WHERE id = ?", (agent.id,)
    ).fetchone()
    if owner is not None and owner[0] != agent.tenant_id:
        raise _unusable_id("agent", agent.id)
    taken = connection.execute(
        "SELECT 1 FROM entity_agent WHERE tenant_id = ? AND code = ? AND id != ?",
        (agent.tenant_id, agent.code, agent.id),
    ).fetchone()
    if taken is not None:
        raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
    if provider is not None and provider_values is not None:
        owner = connection.execute(
            "SELECT tenant_id FROM entity_provider WHERE id = ?", (provider.id,)
        ).fetchone()
        if owner is not None and owner[0] != provider.tenant_id:
            raise _unusable_id("provider", provider.id)
        connection.execute(_PROVIDER_UPSERT, provider_values)
    connection.execute(_AGENT_UPSERT, agent_values)
    connection.execute("COMMIT")
    return trusted(
        AgentConfig,
        agent=agent_from_row(agent_values),
        provider=None if provider_values is None else provider_from_row(provider_values),
    )


def _config(connection: Connection, row: Sequence[Any]) -> AgentConfig:
    agent = agent_from_row(row)
    provider: ProviderRecord | None = None
    if agent.provider_id is not None:
        found = connection.execute(_PROVIDER_OF, (agent.provider_id, agent.tenant_id)).fetchone()
        provider = None if found is None else provider_from_row(found)
    return trusted(AgentConfig, agent=agent, provider=provider)


def _load_agent_config(
    connection: Connection, tenant_id: str, code: str | None, agent_id: str | None
) -> AgentConfig | None:
    if agent_id is not None:
        row = connection.execute(_AGENT_BY_ID, (agent_id, tenant_id)).fetchone()
    else:
        row = connection.execute(_AGENT_BY_CODE, (tenant_id, code)).fetchone()
    return None if row is None else _config(connection, row)


def _list_agent_configs(connection: Connection, tenant_id: str) -> list[AgentConfig]:
    providers = {
        row[0]: provider_from_row(row)
        for row in connection.execute(_PROVIDERS, (tenant_id,)).fetchall()
    }
    configs = []
    for row in connection.execute(_AGENTS, (tenant_id,)).fetchall():
        agent = agent_from_row(row)
        provider = providers.get(agent.provider_id) if agent.provider_id else None
        configs.append(trusted(AgentConfig, agent=agent, provider=provider))
    return configs


def _save_provider(connection: Connection, provider: ProviderRecord) -> ProviderRecord:
    values = provider_row(provider)
    connection.execute("BEGIN IMMEDIATE")
    owner = connection.execute(
        "SELECT tenant_id FROM entity_provider WHERE id = ?", (provider.id,)
    ).fetchone()
    if owner is not None and owner[0] != provider.tenant_id:
        raise _unusable_id("provider", provider.id)
    connection.execute(_PROVIDER_UPSERT, values)
    connection.execute("COMMIT")
    return provider_from_row(values)


def _list_providers(connection: Connection, tenant_id: str) -> list[ProviderRecord]:
    rows = connection.execute(_PROVIDERS_BY_NAME, (tenant_id,)).fetchall()
    return [provider_from_row(row) for row in rows]


_TENANTS = """
    SELECT tenant_id FROM entity_session UNION SELECT tenant_id FROM entity_agent
    UNION SELECT tenant_id FROM entity_provider ORDER BY 1"""


def _list_tenants(connection: Connection) -> list[str]:
    return [row[0] for row in connection.execute(_TENANTS).fetchall()]


# -- the store --------------------------------------------------------------------------------


class SQLiteStore:
    """A threadline store in one SQLite file (or ``:memory:``), served by worker threads.

    Open it with ``await threadline.connect("sqlite:///chat.db")`` or
    :meth:`SQLiteStore.open`. Hooks return the worker's future: awaiting it is the
    only thing that happens on the event loop.
    """

    def __init__(self, options: SQLiteOptions) -> None:
        """Start the writer thread (use :meth:`open`, which also waits for the connection)."""
        self.options = options
        self._writer = Worker("threadline-sqlite-writer", lambda: open_connection(options))
        self._reader = self._writer
        self._write = self._writer.submit
        self._read = self._writer.submit
        self._histories = HistoryCache()
        self.snapshot_every = SNAPSHOT_EVERY
        """Longest chain of history records (see :mod:`threadline.storekit.delta`)."""
        self._finalizer = weakref.finalize(self, _stop, self._writer)

    @classmethod
    async def open(cls, options: SQLiteOptions) -> SQLiteStore:
        """Start the threads and open their connections; raise if the file cannot be used."""
        store = cls(options)
        try:
            await store._writer.submit(_ping)
            if not options.in_memory:
                reader = Worker(
                    "threadline-sqlite-reader", lambda: open_connection(options, reader=True)
                )
                store._reader, store._read = reader, reader.submit
                store._finalizer.detach()
                store._finalizer = weakref.finalize(store, _stop, store._writer, reader)
                await reader.submit(_ping)
        except BaseException:
            await store.aclose()
            raise
        return store

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.options.path} synchronous={self.options.synchronous}>"

    @property
    def closed(self) -> bool:
        """True once the store was closed."""
        return self._writer.closed

    async def aclose(self) -> None:
        """Finish queued work, close both connections and stop the threads."""
        self._finalizer.detach()
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

    def run_write(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(connection, *args)`` on the writer thread (tests, tools, extensions)."""
        return self._write(fn, *args)

    def run_read(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(connection, *args)`` on the reader thread (a ``query_only`` connection)."""
        return self._read(fn, *args)

    # -- lifecycle --------------------------------------------------------------------------

    @hookimpl
    def threadline_migrate(self) -> asyncio.Future[list[str]]:
        return self._write(migrations.migrate)

    @hookimpl
    async def threadline_close(self) -> None:
        await self.aclose()

    # -- sessions ---------------------------------------------------------------------------

    @hookimpl
    def threadline_create_session(self, session: Session) -> asyncio.Future[Session]:
        return self._write(_create_session, session)

    @hookimpl
    def threadline_get_session(
        self, tenant_id: str, session_id: str
    ) -> asyncio.Future[Session | None]:
        return self._read(_get_session, tenant_id, session_id)

    @hookimpl
    def threadline_list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> asyncio.Future[list[Session]]:
        return self._read(_list_sessions, tenant_id, user_id, agent_id, limit, offset)

    @hookimpl
    def threadline_update_session(self, session: Session) -> asyncio.Future[Session]:
        return self._write(_update_session, session)

    @hookimpl
    def threadline_set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> asyncio.Future[Session]:
        return self._write(_set_session_updated_at, tenant_id, session_id, to_us(updated_at))

    @hookimpl
    def threadline_delete_session(self, tenant_id: str, session_id: str) -> asyncio.Future[bool]:
        return self._write(_forgetting, _delete_session, False, tenant_id, session_id)

    # -- messages ---------------------------------------------------------------------------

    @hookimpl
    def threadline_save_message(self, message: Message) -> asyncio.Future[Message]:
        return self._write(_save_message, message)

    @hookimpl
    def threadline_save_messages(
        self, messages: Sequence[Message]
    ) -> asyncio.Future[list[Message]]:
        return self._write(_save_messages, messages)

    @hookimpl
    def threadline_update_message(self, message: Message) -> asyncio.Future[Message]:
        return self._write(_update_message, message)

    @hookimpl
    def threadline_get_messages(
        self, tenant_id: str, session_id: str, after_seq: int, limit: int | None
    ) -> asyncio.Future[list[Message]]:
        return self._read(_get_messages, tenant_id, session_id, after_seq, limit)

    @hookimpl
    def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> asyncio.Future[list[Message]]:
        return self._read(_load_window, tenant_id, session_id, last_rounds)

    @hookimpl
    def threadline_count_messages(self, tenant_id: str, session_id: str) -> asyncio.Future[int]:
        return self._read(_count_messages, tenant_id, session_id)

    @hookimpl
    def threadline_interrupt_streaming(
        self, tenant_id: str, session_id: str
    ) -> asyncio.Future[int]:
        return self._write(_interrupt_streaming, tenant_id, session_id)

    # -- API calls --------------------------------------------------------------------------

    @hookimpl
    def threadline_save_api_call(self, api_call: ApiCall) -> asyncio.Future[ApiCall]:
        return self._write(_save_api_call, api_call)

    @hookimpl
    def threadline_list_api_calls(
        self, tenant_id: str, session_id: str
    ) -> asyncio.Future[list[ApiCall]]:
        return self._read(_list_api_calls, tenant_id, session_id)

    # -- checkpoints ------------------------------------------------------------------------

    @hookimpl
    def threadline_create_checkpoint(self, checkpoint: Checkpoint) -> asyncio.Future[Checkpoint]:
        return self._write(_create_checkpoint, checkpoint, self._histories, self.snapshot_every)

    @hookimpl
    def threadline_get_checkpoint(
        self, tenant_id: str, checkpoint_id: str
    ) -> asyncio.Future[Checkpoint | None]:
        return self._read(_get_checkpoint, tenant_id, checkpoint_id, self._histories)

    @hookimpl
    def threadline_list_checkpoints(
        self, tenant_id: str, session_id: str | None, agent_id: str | None
    ) -> asyncio.Future[list[Checkpoint]]:
        return self._read(_list_checkpoints, tenant_id, session_id, agent_id, self._histories)

    @hookimpl
    def threadline_get_latest_checkpoint(
        self, tenant_id: str, session_id: str, agent_id: str | None
    ) -> asyncio.Future[Checkpoint | None]:
        return self._read(_get_latest_checkpoint, tenant_id, session_id, agent_id, self._histories)

    # -- retention --------------------------------------------------------------------------

    @hookimpl
    def threadline_erase_user(
        self, tenant_id: str, user_id: str, dry_run: bool
    ) -> asyncio.Future[dict[str, int]]:
        return self._write(_forgetting, _erase_user, dry_run, tenant_id, user_id, dry_run)

    @hookimpl
    def threadline_prune_checkpoints(
        self, tenant_id: str, session_id: str, keep: int, dry_run: bool
    ) -> asyncio.Future[int]:
        return self._write(
            _forgetting, _prune_checkpoints, dry_run, tenant_id, session_id, keep, dry_run
        )

    @hookimpl
    def threadline_delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> asyncio.Future[int]:
        return self._write(
            _forgetting, _delete_sessions_before, dry_run, tenant_id, to_us(before), user_id,
            dry_run,
        )  # fmt: skip

    # -- agent configs ----------------------------------------------------------------------

    @hookimpl
    def threadline_save_agent_config(self, config: AgentConfig) -> asyncio.Future[AgentConfig]:
        return self._write(_save_agent_config, config)

    @hookimpl
    def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> asyncio.Future[AgentConfig | None]:
        return self._read(_load_agent_config, tenant_id, code, agent_id)

    @hookimpl
    def threadline_list_agent_configs(self, tenant_id: str) -> asyncio.Future[list[AgentConfig]]:
        return self._read(_list_agent_configs, tenant_id)

    @hookimpl
    def threadline_save_provider(self, provider: ProviderRecord) -> asyncio.Future[ProviderRecord]:
        return self._write(_save_provider, provider)

    @hookimpl
    def threadline_list_providers(self, tenant_id: str) -> asyncio.Future[list[ProviderRecord]]:
        return self._read(_list_providers, tenant_id)

    @hookimpl
    def threadline_list_tenants(self) -> asyncio.Future[list[str]]:
        return self._read(_list_tenants)
