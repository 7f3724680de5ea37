"""Migration 0011: a session's forks come from an index, in a new schema and an upgraded one."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

import threadline
from threadline.ids import new_id
from threadline.testing.branching import fill_forks
from threadline_postgres import parse_config
from threadline_postgres.schema import MIGRATIONS, migrate
from threadline_postgres.sql import FORK_PARENT


async def _plan(conn: asyncpg.Connection, schema: str) -> str:
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(
            f'EXPLAIN SELECT id FROM "{schema}".entity_session WHERE tenant_id = $1::uuid '
            f"AND {FORK_PARENT} = $2::text ORDER BY updated_at DESC, id DESC LIMIT 50",
            new_id(),
            new_id(),
        )
    return "\n".join(r[0] for r in rows)


async def test_0011_upgrades_a_database_with_forks_in_place(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    """Forks made before 0011 are listed after it, from ``entity_session_forks``, with all
    their messages; sessions that are no fork stay out of the index."""
    url = make_url(schema=fresh_schema)
    older = tuple(m for m in MIGRATIONS if m.name < "0011")
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, parse_config(url), older)
        store = await threadline.connect(url, migrate=False)
        tenant, user = new_id(), new_id()
        try:
            source, forks, before = await fill_forks(store, tenant, user)
            assert "entity_session_forks" not in await _plan(conn, fresh_schema)
            assert await store.migrate() == [m.name for m in MIGRATIONS if m.name >= "0011"]
            assert await store.migrate() == []
            branches = await store.list_branches(tenant, source.id)
            assert [b.id for b in branches] == [f.id for f in forks]
            assert {f.id: await store.get_messages(tenant, f.id) for f in forks} == before
            assert [len(m) for m in before.values()] == [10, 40]
        finally:
            await store.close()
        assert "entity_session_forks" in await _plan(conn, fresh_schema)
        indexed = await conn.fetchval(
            f'SELECT COUNT(*) FROM "{fresh_schema}".entity_session WHERE {FORK_PARENT} IS NOT NULL'
        )
        assert indexed == 2
    finally:
        await conn.close()
