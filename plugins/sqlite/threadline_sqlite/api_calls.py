"""The API-call group: one row per model request, kept with its session."""

from __future__ import annotations

from collections.abc import Sequence

from threadline.models import ApiCall
from threadline.storekit.records import id_conflict
from threadline.storekit.sync import SyncStore
from threadline_sqlite.rows import API_CALL_COLUMNS, api_call_from_row, api_call_row
from threadline_sqlite.sql import (
    SESSION_OF_TENANT,
    TOUCH,
    chunks,
    forgetting,
    marks,
    missing_session,
    now_us,
    write,
)
from threadline_sqlite.worker import connection

__all__ = ["ApiCallHooks"]

_INSERT = (
    f"INSERT INTO entity_api_call ({API_CALL_COLUMNS}) VALUES ({marks(20)}) "
    "ON CONFLICT (id) DO NOTHING"
)
_BY_ID = f"SELECT {API_CALL_COLUMNS} FROM entity_api_call WHERE id = ?"
_OF_SESSION = (
    f"SELECT {API_CALL_COLUMNS} FROM entity_api_call "
    "WHERE session_id = ? AND tenant_id = ? ORDER BY rowid"
)

_DELETE = "DELETE FROM entity_api_call WHERE tenant_id = ? AND id IN"


class ApiCallHooks(SyncStore):
    """Save, list and delete API call records."""

    def save_api_call(self, api_call: ApiCall) -> ApiCall:
        row = api_call_row(api_call)
        session = (api_call.session_id, api_call.tenant_id)
        with write() as db:
            if db.execute(SESSION_OF_TENANT, session).fetchone() is None:
                raise missing_session(api_call.session_id)
            if db.execute(_INSERT, row).rowcount == 1:
                db.execute(TOUCH, (now_us(), *session))
                return api_call_from_row(row)
            existing = api_call_from_row(db.execute(_BY_ID, (api_call.id,)).fetchone())
        if (existing.session_id, existing.tenant_id) != session:
            raise id_conflict("api call", api_call.id)
        return existing

    def list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        rows = connection().execute(_OF_SESSION, (session_id, tenant_id))
        return [api_call_from_row(row) for row in rows]

    def delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        gone = 0
        with forgetting() as db:
            db.execute("BEGIN IMMEDIATE")
            for chunk in chunks(list(api_call_ids)):
                sql = f"{_DELETE} ({marks(len(chunk))})"
                gone += db.execute(sql, (tenant_id, *chunk)).rowcount
            db.execute("COMMIT")
        return gone
