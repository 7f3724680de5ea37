"""Messages: appends numbered in one transaction, reads and rewrites by index.

* **Atomic sequence numbers across processes.** An append is one ``BEGIN IMMEDIATE``
  transaction that bumps ``entity_session.last_seq`` (with ``updated_at``) and inserts
  the rows with the numbers it got; the primary key ``(session_key, seq)`` backs it up. Two
  processes appending to one file serialise on the lock, never share a ``seq`` and
  lose nothing.
* **Idempotent retries without gaps.** The insert is tried first; if the message id
  exists, the transaction (with its ``seq`` bump) is rolled back and the stored message
  comes back, or :class:`~threadline.errors.ConflictError` when the id lives elsewhere.
* ``entity_message_tool_call`` (call id -> seq) is kept in step with every write, for
  the window (:mod:`threadline_sqlite.window`); ``entity_message_user`` gets each
  (session, user) pair once, for erasure (:mod:`threadline_sqlite.retention`).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from threadline.codec import dump_tool_calls
from threadline.errors import NotFoundError, StoreError, ValidationError
from threadline.models import Message
from threadline.queries import MessageRange
from threadline.storekit.records import id_conflict
from threadline.storekit.sync import SyncStore
from threadline_sqlite.rows import (
    MESSAGE_FROM,
    MESSAGE_KEY,
    MESSAGE_SELECT,
    MESSAGE_SEQ,
    READ_COLUMNS,
    STORED_COLUMNS,
    message_changes,
    message_from_read,
    message_from_row,
    message_row,
)
from threadline_sqlite.sql import (
    SESSION_KEY,
    SESSION_OF_TENANT,
    TOUCH,
    chunks,
    claim_seqs,
    forgetting,
    marks,
    missing_session,
    now_us,
    write,
)
from threadline_sqlite.worker import connection

__all__ = ["COUNT", "INSERT_MESSAGE", "INTERRUPT", "MessageHooks", "read_sql", "rewrite"]

INSERT_MESSAGE = f"INSERT INTO entity_message ({STORED_COLUMNS}) VALUES ({marks(13)})"
_INSERT_TOOL_CALL = (
    "INSERT OR IGNORE INTO entity_message_tool_call (session_id, call_id, seq) VALUES (?, ?, ?)"
)
# Who wrote in which session (migration 0008): what erase_user looks up instead of an
# index entry per message. A pair already there costs a lookup, no write.
_INSERT_WRITER = "INSERT OR IGNORE INTO entity_message_user (session_id, user_id) VALUES (?, ?)"
_DELETE_TOOL_CALL = (
    "DELETE FROM entity_message_tool_call WHERE session_id = ? AND call_id = ? AND seq = ?"
)
_MESSAGE_BY_ID = f"SELECT {MESSAGE_SELECT} FROM {MESSAGE_FROM} WHERE m.id = ?"
_MESSAGE_OF_TENANT = f"{_MESSAGE_BY_ID} AND s.tenant_id = ?"
_REWRITE = (
    "UPDATE entity_message SET content = :content, tool_calls = :tool_calls, status = :status, "
    "name = :name, metadata = :metadata, user_id = :user_id WHERE id = :id"
)
INTERRUPT = (
    "UPDATE entity_message SET status = 'interrupted' "
    f"WHERE session_key = {SESSION_KEY} AND status = 'streaming'"
)
COUNT = "SELECT last_seq - deleted_seqs FROM entity_session WHERE id = ? AND tenant_id = ?"
_DELETE_AFTER = (
    "DELETE FROM entity_message "
    "WHERE session_key = (SELECT key FROM entity_session WHERE id = ?) AND seq > ?"
)
_DELETE_CALLS_AFTER = "DELETE FROM entity_message_tool_call WHERE session_id = ? AND seq > ?"
_DELETED = (
    "UPDATE entity_session SET deleted_seqs = deleted_seqs + ?, updated_at = max(updated_at, ?) "
    "WHERE id = ?"
)


@functools.cache
def range_sql(columns: str, before: bool, newest_first: bool, role: bool) -> str:
    """A read of ``columns`` of a session's messages in a :class:`MessageRange` (one
    statement per combination); its parameters are :func:`range_params`'."""
    return (
        f"SELECT {columns} FROM entity_message "
        f"WHERE session_key = {SESSION_KEY} AND seq > ?"
        + (" AND seq < ?" if before else "")
        + (" AND role = ?" if role else "")
        + (" ORDER BY seq DESC" if newest_first else " ORDER BY seq")
        + " LIMIT ?"
    )


def range_params(session_id: str, tenant_id: str, query: MessageRange) -> list[Any]:
    """The parameters of :func:`range_sql`'s statement for ``query``."""
    params: list[Any] = [session_id, tenant_id, query.after_seq]
    if query.before_seq is not None:
        params.append(query.before_seq)
    if query.role is not None:
        params.append(query.role)
    params.append(-1 if query.limit is None else query.limit)
    return params


def read_sql(before: bool, newest_first: bool, role: bool) -> str:
    """The statement of a :meth:`MessageHooks.read_messages` (one per combination)."""
    return range_sql(READ_COLUMNS, before, newest_first, role)


def _index_calls(db: sqlite3.Connection, sql: str, messages: Sequence[Message]) -> None:
    calls = [(m.session_id, c.id, m.seq) for m in messages for c in m.tool_calls]
    if calls:
        db.executemany(sql, calls)


def _index_writers(db: sqlite3.Connection, messages: Sequence[Message]) -> None:
    """Record the (session, user) pairs of ``messages`` (inside the caller's transaction)."""
    pairs = {(m.session_id, m.user_id) for m in messages if m.user_id is not None}
    if pairs:
        db.executemany(_INSERT_WRITER, pairs)


def rewrite(
    db: sqlite3.Connection,
    tenant_id: str,
    messages: Sequence[Message],
    *,
    keep_user: bool,
    only_streaming: bool = False,
) -> list[Message]:
    """Rewrite stored messages' mutable columns inside the caller's transaction.

    ``keep_user`` keeps each stored ``user_id`` (an update) instead of the given one;
    ``only_streaming`` skips a message no longer ``streaming`` (not returned).
    :raises NotFoundError: a message is not stored for this tenant.
    """
    changes = [message_changes(m) for m in messages]  # refused before anything changes
    old: list[Message] = []
    done: list[Message] = []
    for m, values in zip(messages, changes):
        found = db.execute(_MESSAGE_OF_TENANT, (m.id, tenant_id)).fetchone()
        if found is None or m.tenant_id != tenant_id:
            raise NotFoundError(f"message {m.id} not found for this tenant")
        stored = message_from_row(found)
        if only_streaming and stored.status != "streaming":
            continue  # finished meanwhile: its ending stays
        old.append(stored)
        done.append(m)
        if keep_user:
            values["user_id"] = old[-1].user_id
        db.execute(_REWRITE, {**values, "id": m.id})
        if values["user_id"] is not None:
            db.execute(_INSERT_WRITER, (stored.session_id, values["user_id"]))
    for o, m in zip(old, done):
        if dump_tool_calls(o.tool_calls) != dump_tool_calls(m.tool_calls):
            db.executemany(_DELETE_TOOL_CALL, [(o.session_id, c.id, o.seq) for c in o.tool_calls])
            db.executemany(_INSERT_TOOL_CALL, [(o.session_id, c.id, o.seq) for c in m.tool_calls])
    return [message_from_row(db.execute(_MESSAGE_BY_ID, (m.id,)).fetchone()) for m in done]


class MessageHooks(SyncStore):
    """The message hooks: the required three and the hot derived ones."""

    # Derived, kept: one transaction without building a list (W1 in benchmarks/bench_sqlite.py).
    def save_message(self, message: Message) -> Message:
        row = message_row(message)  # encoded (and validated) before taking the lock
        db = connection()
        db.execute("BEGIN IMMEDIATE")
        claimed = claim_seqs(db, 1, message.session_id, message.tenant_id)
        if claimed is None:
            raise missing_session(message.session_id)
        seq, row[MESSAGE_KEY] = claimed
        row[MESSAGE_SEQ] = seq
        try:
            db.execute(INSERT_MESSAGE, row)
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")  # undo the seq bump: a retry leaves no gap
            return self._existing([message])[message.id]
        if message.user_id is not None:
            db.execute(_INSERT_WRITER, (message.session_id, message.user_id))
        if message.tool_calls:
            db.executemany(_INSERT_TOOL_CALL, [(message.session_id, c.id, seq)
                                               for c in message.tool_calls])  # fmt: skip
        db.execute("COMMIT")
        return message_from_read(row[1:], message.session_id, message.tenant_id)

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        first = messages[0]
        for m in messages:
            if m.session_id != first.session_id or m.tenant_id != first.tenant_id:
                raise ValidationError("save_messages takes messages of a single session")
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        rows = [message_row(m) for m in messages]
        db = connection()
        db.execute("BEGIN IMMEDIATE")
        claimed = claim_seqs(db, len(rows), first.session_id, first.tenant_id)
        if claimed is None:
            raise missing_session(first.session_id)
        last, key = claimed
        for seq, row in enumerate(rows, last - len(rows) + 1):
            row[MESSAGE_KEY] = key
            row[MESSAGE_SEQ] = seq
        try:
            db.executemany(INSERT_MESSAGE, rows)
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            return self._save_retried(messages, rows)
        session_id, tenant_id = first.session_id, first.tenant_id
        stored = [message_from_read(row[1:], session_id, tenant_id) for row in rows]
        _index_calls(db, _INSERT_TOOL_CALL, stored)
        _index_writers(db, stored)
        db.execute("COMMIT")
        return stored

    def _save_retried(self, messages: Sequence[Message], rows: list[list[Any]]) -> list[Message]:
        """The slow path of a batch in which some ids are stored already (a retried batch)."""
        first = messages[0]
        session = (first.session_id, first.tenant_id)
        with write() as db:
            if db.execute(SESSION_OF_TENANT, session).fetchone() is None:
                raise missing_session(first.session_id)
            existing = self._existing(messages)
            fresh = [row for m, row in zip(messages, rows) if m.id not in existing]
            if fresh:
                claimed = claim_seqs(db, len(fresh), *session)
                assert claimed is not None
                last, key = claimed
                for seq, row in enumerate(fresh, last - len(fresh) + 1):
                    row[MESSAGE_KEY] = key
                    row[MESSAGE_SEQ] = seq
                db.executemany(INSERT_MESSAGE, fresh)
            stored = [message_from_read(row[1:], *session) for row in fresh]
            _index_calls(db, _INSERT_TOOL_CALL, stored)
            _index_writers(db, stored)
        made = iter(stored)
        return [existing[m.id] if m.id in existing else next(made) for m in messages]

    @staticmethod
    def _existing(messages: Sequence[Message]) -> dict[str, Message]:
        """The stored messages of these ids; an id stored in another session conflicts."""
        db = connection()
        existing: dict[str, Message] = {}
        for chunk in chunks([m.id for m in messages]):
            sql = f"SELECT {MESSAGE_SELECT} FROM {MESSAGE_FROM} WHERE m.id IN ({marks(len(chunk))})"
            existing.update((m.id, m) for m in map(message_from_row, db.execute(sql, chunk)))
        for m in messages:
            stored = existing.get(m.id)
            if stored is not None and (stored.session_id, stored.tenant_id) != (
                m.session_id, m.tenant_id,
            ):  # fmt: skip
                raise id_conflict("message", m.id)
        if len(messages) == 1 and not existing:  # the insert failed for another reason
            raise StoreError(f"could not insert message {messages[0].id} (integrity error)")
        return existing

    def read_messages(self, tenant_id: str, session_id: str, query: MessageRange) -> list[Message]:
        params = range_params(session_id, tenant_id, query)
        sql = read_sql(query.before_seq is not None, query.newest_first, query.role is not None)
        read = message_from_read
        return [read(row, session_id, tenant_id) for row in connection().execute(sql, params)]

    def rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        with write() as db:
            stored = rewrite(
                db, tenant_id, messages, keep_user=False, only_streaming=only_streaming
            )
            for session_id in {m.session_id for m in stored} if activity else ():
                db.execute(TOUCH, (now_us(), session_id, tenant_id))
        return len(stored)

    def delete_messages(self, tenant_id: str, session_id: str, after_seq: int) -> int:
        """The rows and their tool-call index entries in one transaction; ``last_seq`` stays
        (seqs are never reused) and ``deleted_seqs`` keeps the count right."""
        with forgetting() as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute(SESSION_OF_TENANT, (session_id, tenant_id)).fetchone() is None:
                db.execute("COMMIT")
                return 0
            db.execute(_DELETE_CALLS_AFTER, (session_id, after_seq))
            gone = int(db.execute(_DELETE_AFTER, (session_id, after_seq)).rowcount)
            if gone:
                db.execute(_DELETED, (gone, now_us(), session_id))
            db.execute("COMMIT")
        return gone

    # Derived, kept: one lookup by id in one transaction; the default reads by seq and,
    # for a streaming reply's flush (no seq), scans the session.
    def update_message(self, message: Message) -> Message:
        with write() as db:
            stored = rewrite(db, message.tenant_id, [message], keep_user=True)[0]
            db.execute(TOUCH, (now_us(), stored.session_id, message.tenant_id))
        return stored

    # Derived, kept: one UPDATE through the partial index of streaming rows; the default
    # reads the whole session and its rewrite could undo a reply finished meanwhile.
    def interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        with write() as db:
            changed = int(db.execute(INTERRUPT, (session_id, tenant_id)).rowcount)
            if changed:
                db.execute(TOUCH, (now_us(), session_id, tenant_id))
        return changed

    # Derived, kept: the session's counter, one primary-key read (no message is built).
    def count_messages(self, tenant_id: str, session_id: str) -> int:
        row = connection().execute(COUNT, (session_id, tenant_id)).fetchone()
        return 0 if row is None else int(row[0])
