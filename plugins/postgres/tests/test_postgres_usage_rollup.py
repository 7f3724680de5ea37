"""The usage rollup (migration 0010): filled from the calls on upgrade, kept by every write."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

import threadline
from threadline.ids import new_id
from threadline.testing.usage import assert_usage_matches_default, fill_usage_calls
from threadline_postgres import parse_config
from threadline_postgres.schema import MIGRATIONS, migrate


async def test_0010_fills_the_rollup_from_a_filled_schema(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    """A schema of the previous release with calls (some deleted) upgrades in place: reports
    from the rollup equal the calls' own; later writes, updates and deletions keep them so."""
    url = make_url(schema=fresh_schema)
    config = parse_config(url)
    before = tuple(m for m in MIGRATIONS if m.name != "0010_usage_rollup")
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, config, before)
        old = await threadline.connect(url, migrate=False)
        tenant, users = new_id(), [new_id(), new_id()]
        try:
            saved = await fill_usage_calls(old, tenant, users)
        finally:
            await old.close()
        calls = config.table("entity_api_call")
        await conn.execute(f"DELETE FROM {calls} WHERE id = ANY($1::uuid[])",
                           [c.id for c in saved[:5]])  # fmt: skip
        store = await threadline.connect(url)  # migrates: 0010
        try:
            rollup = config.table("usage_rollup")
            assert await conn.fetchval(f"SELECT count(*) FROM {rollup}") > 0
            await assert_usage_matches_default(store, tenant)
            assert (await store.usage(tenant)).calls == 55
            more = await fill_usage_calls(store, tenant, users)
            await conn.execute(f"DELETE FROM {calls} WHERE id = ANY($1::uuid[])",
                               [c.id for c in more[10:20]])  # fmt: skip
            await conn.execute(
                f"UPDATE {calls} SET model = 'small', latency_ms = 7.5, "
                "created_at = created_at + interval '1 day' WHERE id = ANY($1::uuid[])",
                [c.id for c in more[20:30]],
            )
            await assert_usage_matches_default(store, tenant)
            await store.erase_user(tenant, users[0])
            await assert_usage_matches_default(store, tenant)
            for session in await store.list_sessions(tenant):
                assert await store.delete_session(tenant, session.id)
            assert (await store.usage(tenant, group_by="session")).rows == ()
        finally:
            await store.close()
    finally:
        await conn.close()
