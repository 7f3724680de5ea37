"""Sessions and the tenant list; deleting a session takes everything in it."""

from __future__ import annotations

from typing import Any

from threadline.models import Session
from threadline.queries import SessionQuery
from threadline.storekit.records import id_conflict
from threadline.storekit.sync import SyncStore
from threadline_sqlite.migrations import FORK_PARENT
from threadline_sqlite.rows import SESSION_COLUMNS, session_from_row, session_row, to_us
from threadline_sqlite.sql import SESSION_OF_TENANT, forgetting, marks, missing_session, write
from threadline_sqlite.worker import connection

__all__ = ["SESSION_TABLES", "SessionHooks", "session_rows"]

SESSION_TABLES = ("entity_message_tool_call", "entity_message_user", "entity_message",
                  "entity_api_call", "entity_checkpoint")  # fmt: skip
"""The tables whose rows belong to a session, deleted with it (:func:`session_rows`)."""


def session_rows(table: str, where: str) -> str:
    """``FROM table WHERE ...``: the rows of ``table`` of the sessions whose id matches
    ``where`` (``"= ?"``, ``"IN (?, ?)"``); messages by their session's key (0009)."""
    if table == "entity_message":
        return (
            "FROM entity_message WHERE session_key IN "
            f"(SELECT key FROM entity_session WHERE id {where})"
        )
    return f"FROM {table} WHERE session_id {where}"


_INSERT = (
    f"INSERT INTO entity_session ({SESSION_COLUMNS}) VALUES ({marks(8)}) "
    "ON CONFLICT (id) DO NOTHING"
)
_BY_ID = f"SELECT {SESSION_COLUMNS} FROM entity_session WHERE id = ?"
_OF_TENANT = f"SELECT {SESSION_COLUMNS} FROM entity_session WHERE id = ? AND tenant_id = ?"
_REPLACE = (
    "UPDATE entity_session SET title = ?, metadata = ?, updated_at = ? "
    "WHERE id = ? AND tenant_id = ?"
)
_TENANTS = """
    SELECT tenant_id FROM entity_session UNION SELECT tenant_id FROM entity_agent
    UNION SELECT tenant_id FROM entity_provider ORDER BY 1"""


class SessionHooks(SyncStore):
    """The session hooks of the required tier, and ``list_tenants``."""

    def create_session(self, session: Session) -> Session:
        row = session_row(session)
        with write() as db:
            if db.execute(_INSERT, row).rowcount == 1:
                return session_from_row(row)
            found = session_from_row(db.execute(_BY_ID, (session.id,)).fetchone())
        if found.tenant_id != session.tenant_id:
            raise id_conflict("session", session.id)
        return found

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        row = connection().execute(_OF_TENANT, (session_id, tenant_id)).fetchone()
        return None if row is None else session_from_row(row)

    def list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        """From ``idx_session_tenant_updated``; a cursor is a row-value bound on it."""
        sql = f"SELECT {SESSION_COLUMNS} FROM entity_session WHERE tenant_id = ?"
        params: list[Any] = [tenant_id]
        if query.user_id is not None:
            sql += " AND user_id = ?"
            params.append(query.user_id)
        if query.agent_id is not None:
            sql += " AND agent_id = ?"
            params.append(query.agent_id)
        if query.forked_from is not None:  # idx_session_forks (0011)
            sql += f" AND {FORK_PARENT} = ?"
            params.append(query.forked_from)
        if query.after is not None:
            sql += " AND (updated_at, id) < (?, ?)"
            params += [to_us(query.after.updated_at), query.after.id]
        sql += " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?"
        rows = connection().execute(sql, (*params, query.limit, query.offset)).fetchall()
        return [session_from_row(row) for row in rows]

    def replace_session(self, session: Session) -> Session:
        _, tenant_id, _, _, title, metadata, _, _ = session_row(session)
        params = (title, metadata, to_us(session.updated_at), session.id, tenant_id)
        with write() as db:
            if db.execute(_REPLACE, params).rowcount == 0:
                raise missing_session(session.id)
            return session_from_row(db.execute(_BY_ID, (session.id,)).fetchone())

    def delete_session(self, tenant_id: str, session_id: str) -> bool:
        with forgetting() as db:
            db.execute("BEGIN IMMEDIATE")
            found = db.execute(SESSION_OF_TENANT, (session_id, tenant_id)).fetchone()
            if found is not None:
                for table in SESSION_TABLES:
                    db.execute(f"DELETE {session_rows(table, '= ?')}", (session_id,))
                db.execute("DELETE FROM entity_session WHERE id = ?", (session_id,))
            db.execute("COMMIT")
        return found is not None

    def list_tenants(self) -> list[str]:
        return [row[0] for row in connection().execute(_TENANTS)]
