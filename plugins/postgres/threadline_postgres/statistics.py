"""Planner statistics after a bulk load: ``ANALYZE`` of the tables a copy or import filled.

Reads of one session take the ``(session_id, seq)`` path whatever the statistics say (see
:mod:`threadline_postgres.sql`), but a tenant's pages, erasure and usage reports are
planned from them; autovacuum gets there eventually, a copy or import asks right away.
"""

from __future__ import annotations

import asyncpg

from threadline_postgres.pool import PooledStore

__all__ = ["PlannerStatistics"]

_LOADED = ("entity_session", "entity_message", "entity_api_call", "entity_checkpoint")


class PlannerStatistics(PooledStore):
    """``after_bulk_load``: what :mod:`threadline.transfer` calls when it has written."""

    async def after_bulk_load(self) -> None:
        """``ANALYZE`` the session, message, API-call and checkpoint tables (on the primary)."""
        tables = ", ".join(self.config.table(name) for name in _LOADED)

        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(f"ANALYZE {tables}")

        await self._call("after_bulk_load", run, transaction=True)
