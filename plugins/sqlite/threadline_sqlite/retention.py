"""Retention: erasing a user and deleting idle sessions, each in one transaction.

Both run with :func:`~threadline_sqlite.sql.forgetting`: what they delete leaves the
file. The plans are the core's (:func:`threadline.storekit.erasure.redact`,
:func:`threadline.storekit.log.erase_plan`); the user's rows in other users' sessions
are found without reading the tenant's others: messages through the sessions the user
wrote in (migration 0008), API calls by the index of migration 0004.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from threadline.storekit import log
from threadline.storekit.erasure import redact
from threadline.storekit.sync import SyncStore
from threadline_sqlite.checkpoints import records_of_session, rewrite_records
from threadline_sqlite.messages import rewrite
from threadline_sqlite.rows import MESSAGE_SELECT, message_from_row, to_us
from threadline_sqlite.sessions import SESSION_TABLES, session_rows
from threadline_sqlite.sql import chunks, forgetting, marks

__all__ = [
    "ERASE_CHECKPOINTED_SESSIONS",
    "ERASE_FOREIGN_CALLS",
    "ERASE_FOREIGN_MESSAGES",
    "RetentionHooks",
]

_COUNTED = (("messages", "entity_message"), ("api_calls", "entity_api_call"),
            ("checkpoints", "entity_checkpoint"))  # fmt: skip
# The user's messages in other users' sessions: the sessions the user wrote in
# (entity_message_user, migration 0008), then their messages. Parameters: tenant, user, user.
ERASE_FOREIGN_MESSAGES = (
    f"SELECT {MESSAGE_SELECT} FROM entity_message_user u "
    "JOIN entity_session s ON s.id = u.session_id "
    "JOIN entity_message m ON m.session_key = s.key "
    "WHERE u.user_id = ?2 AND s.tenant_id = ?1 AND s.user_id IS NOT ?3 "
    "AND m.user_id = ?2 ORDER BY s.id, m.seq"
)
# The user's (session, user) pairs in the tenant: the id must leave the file too.
_FORGET_WRITER = (
    "DELETE FROM entity_message_user WHERE user_id = ?2 "
    "AND session_id IN (SELECT id FROM entity_session WHERE tenant_id = ?1)"
)
# Their API calls there: idx_api_call_tenant_user (migration 0004). Same parameters.
ERASE_FOREIGN_CALLS = (
    "FROM entity_api_call a JOIN entity_session s ON s.id = a.session_id "
    "WHERE a.tenant_id = ? AND a.user_id = ? AND s.user_id IS NOT ?"
)
# Other users' sessions with a checkpoint record naming the user: the only ones whose
# histories can hold the user's messages (an item leaves out its user_id only after a
# message of the same user in the same session, and a delta's parent is in its session).
# User ids are canonical UUIDs: JSON writes them as they are. Parameters: tenant, user.
ERASE_CHECKPOINTED_SESSIONS = (
    "SELECT s.id FROM entity_session s WHERE s.tenant_id = :tenant AND s.user_id IS NOT :user "
    "AND EXISTS (SELECT 1 FROM entity_checkpoint c "
    "WHERE c.session_id = s.id AND c.tenant_id = :tenant AND instr(c.history, :user) > 0)"
)


def _drop_sessions(db: sqlite3.Connection, session_ids: Sequence[str]) -> None:
    """Delete sessions with everything in them (inside the caller's transaction)."""
    for chunk in chunks(session_ids):
        where = f"IN ({marks(len(chunk))})"
        for table in SESSION_TABLES:
            db.execute(f"DELETE {session_rows(table, where)}", chunk)
        db.execute(f"DELETE FROM entity_session WHERE id {where}", chunk)


def _count(db: sqlite3.Connection, table: str, session_ids: Sequence[str]) -> int:
    total = 0
    for chunk in chunks(session_ids):
        sql = f"SELECT count(*) {session_rows(table, f'IN ({marks(len(chunk))})')}"
        total += db.execute(sql, chunk).fetchone()[0]
    return int(total)


class RetentionHooks(SyncStore):
    """``erase_user`` and ``delete_sessions_before`` as single transactions."""

    # Derived, kept for atomicity and indexes: one transaction (the default goes session
    # by session) that finds the user's rows elsewhere by index, not by reading the tenant.
    def erase_user(self, tenant_id: str, user_id: str, dry_run: bool) -> dict[str, int]:
        with forgetting(dry_run) as db:
            db.execute("BEGIN IMMEDIATE")
            own = "SELECT id FROM entity_session WHERE tenant_id = ? AND user_id = ?"
            ids = [row[0] for row in db.execute(own, (tenant_id, user_id))]
            counts = {"sessions": len(ids)}
            counts.update((kind, _count(db, table, ids)) for kind, table in _COUNTED)
            params = (tenant_id, user_id, user_id)
            found = [message_from_row(r) for r in db.execute(ERASE_FOREIGN_MESSAGES, params)]
            counts["messages_redacted"] = len(found)
            calls = db.execute(f"SELECT count(*) {ERASE_FOREIGN_CALLS}", params).fetchone()[0]
            counts["api_calls"] += calls
            redacted = self._erase_checkpoints(db, tenant_id, user_id, dry_run)
            counts["checkpoints_redacted"] = redacted
            if not dry_run:
                _drop_sessions(db, ids)
                rewrite(db, tenant_id, [redact(m) for m in found], keep_user=False)
                db.execute(_FORGET_WRITER, params[:2])
                sql = f"DELETE FROM entity_api_call WHERE id IN (SELECT a.id {ERASE_FOREIGN_CALLS})"
                db.execute(sql, params)
            db.execute("COMMIT")
        return counts

    @staticmethod
    def _erase_checkpoints(
        db: sqlite3.Connection, tenant_id: str, user_id: str, dry_run: bool
    ) -> int:
        """Redact the user's messages in other users' checkpoint histories (storekit's plan)."""
        count = 0
        who = {"tenant": tenant_id, "user": user_id}
        for (session_id,) in db.execute(ERASE_CHECKPOINTED_SESSIONS, who).fetchall():
            n, rewrites = log.erase_plan(records_of_session(db, tenant_id, session_id), user_id)
            count += n
            if rewrites and not dry_run:
                rewrite_records(db, session_id, rewrites, ())
        return count

    # Derived, kept for atomicity: the sessions idle before ``before`` are chosen and
    # deleted in one statement each, so a session written meanwhile is never taken.
    def delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        sql = "SELECT id FROM entity_session WHERE tenant_id = ? AND updated_at < ?"
        params: tuple[Any, ...] = (tenant_id, to_us(before))
        if user_id is not None:
            sql, params = sql + " AND user_id = ?", (*params, user_id)
        with forgetting(dry_run) as db:
            db.execute("BEGIN IMMEDIATE")
            ids = [row[0] for row in db.execute(sql, params)]
            if not dry_run:
                _drop_sessions(db, ids)
            db.execute("COMMIT")
        return len(ids)
