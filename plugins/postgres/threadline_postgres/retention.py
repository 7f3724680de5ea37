"""Retention on PostgreSQL: erasing a user and deleting idle sessions, each in one transaction.

Both override the core's defaults, which walk the tenant session by session and are not one
transaction. The plans stay the core's: a message is redacted by
:func:`threadline.storekit.erasure.redact`, checkpoint records by
:func:`threadline.storekit.log.erase_plan`.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from threadline.hookspecs import hookimpl
from threadline.storekit.erasure import redact
from threadline.storekit.log import erase_plan
from threadline.storekit.records import CheckpointRecord
from threadline_postgres.checkpoints import CheckpointRecords
from threadline_postgres.forks import resolve_shared
from threadline_postgres.rows import (
    message_from_row,
    record_from_row,
    rewrite_columns,
    shared_messages,
)

__all__ = ["Retention"]


class Retention(CheckpointRecords):
    """``erase_user`` and ``delete_sessions_before`` as single transactions."""

    # Overrides the default for atomicity: everything in one transaction, sessions locked.
    @hookimpl
    async def threadline_erase_user(
        self, tenant_id: str, user_id: str, dry_run: bool
    ) -> dict[str, int]:
        """Delete the user's sessions (rows cascade) and redact them in others; one transaction.

        Their messages in other users' sessions are redacted in place, their API calls there
        deleted, and the checkpoint records of those sessions holding their messages
        rewritten by the erase plan (each checkpoint whose history changed gets a new tag).
        """
        sql = self.sql

        async def run(conn: asyncpg.Connection) -> dict[str, int]:
            locked = await conn.fetch(sql.erase_sessions, tenant_id, user_id)
            own = [r["id"] for r in locked if r["own"]]
            counts = {
                "sessions": len(own),
                **(await conn.fetchrow(sql.erase_counts, own, tenant_id)),
            }
            plans: list[tuple[str, list[CheckpointRecord]]] = []
            counts["checkpoints_redacted"] = 0
            for sid in (r["id"] for r in locked if not r["own"]):
                rows = await conn.fetch(sql.session_records, sid, tenant_id, None)
                found, rewrites = erase_plan([record_from_row(r) for r in rows], user_id)
                counts["checkpoints_redacted"] += found
                plans.append((sid, rewrites))
            rows = await conn.fetch(sql.user_messages_elsewhere, tenant_id, user_id)
            read = [message_from_row(r) for r in rows]
            if shared_messages(read):  # a fork's rows: redacted from their whole values
                await resolve_shared(conn.fetch, sql.tables["entity_message"], read)
            messages = [redact(m) for m in read]
            calls = [r["id"] for r in await conn.fetch(sql.user_api_calls_elsewhere, tenant_id,
                                                       user_id)]  # fmt: skip
            counts["messages_redacted"] = len(messages)
            counts["api_calls"] += len(calls)
            if dry_run:
                return counts
            if own:
                await conn.execute(sql.delete_sessions, own, tenant_id)
            if messages:
                await conn.fetch(sql.redact_messages, tenant_id, *rewrite_columns(messages))
            if calls:
                await conn.fetch(sql.delete_api_calls, tenant_id, calls)
            for sid, rewrites in plans:
                if rewrites:
                    await self._rewrite_records(conn, tenant_id, sid, rewrites, ())
            return counts

        return await self._call("erase_user", run, transaction=True, retry=dry_run)

    # Overrides the default for atomicity: one statement, so a session written to between
    # a listing and its deletion is never deleted.
    @hookimpl
    async def threadline_delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        """Sessions of the tenant (and user) with ``updated_at`` before ``before``."""
        query = self.sql.count_sessions_before if dry_run else self.sql.delete_sessions_before

        async def run(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(query, tenant_id, before, user_id))

        return await self._call("delete_sessions_before", run, retry=dry_run)
