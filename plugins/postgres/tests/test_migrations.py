"""Migrations: recorded, re-runnable, transactional, one migrator at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

import threadline
from threadline.ids import new_id
from threadline_postgres import parse_config
from threadline_postgres.schema import MIGRATIONS, TABLES, Migration, migrate, render


async def _tables(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    return {r[0] for r in rows}


async def test_migrations_are_recorded_and_rerunnable(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    url = make_url(schema=fresh_schema)
    store = await threadline.connect(url, migrate=False)
    try:
        assert await store.migrate() == [m.name for m in MIGRATIONS]
        assert await store.migrate() == []
    finally:
        await store.close()
    again = await threadline.connect(url)  # connect migrates: nothing left to do
    assert await again.migrate() == []
    await again.close()
    conn = await asyncpg.connect(database_url)
    try:
        assert await _tables(conn, fresh_schema) == {*TABLES, "threadline_migrations"}
        ledger = f'"{fresh_schema}".threadline_migrations'
        names = await conn.fetch(f"SELECT name, applied_at FROM {ledger}")
        assert [r["name"] for r in names] == [m.name for m in MIGRATIONS]
        # Running the migrator itself again (not only the fast check) changes nothing.
        assert await migrate(conn, parse_config(url)) == []
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_once(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    config = parse_config(make_url(schema=fresh_schema))
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, config) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(MIGRATIONS)]
        assert await _tables(conns[0], fresh_schema) == {*TABLES, "threadline_migrations"}
    finally:
        for c in conns:
            await c.close()


async def test_migration_waits_for_the_advisory_lock(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    config = parse_config(make_url(schema=fresh_schema))
    holder = await asyncpg.connect(database_url)
    migrator = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", config.lock_key)
            task = asyncio.create_task(migrate(migrator, config))
            await asyncio.sleep(0.3)
            assert not task.done()  # blocked behind the other "process"
        assert await asyncio.wait_for(task, 10) == [m.name for m in MIGRATIONS]
    finally:
        await holder.close()
        await migrator.close()


async def test_failed_migration_rolls_back_whole(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    config = parse_config(make_url(schema=fresh_schema))
    broken = (*MIGRATIONS, Migration("9999_broken", "CREATE TABLE {entity_message} (x int)"))
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.DuplicateTableError):
            await migrate(conn, config, broken)
        assert not await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{fresh_schema}".entity_session'
        )
        assert await migrate(conn, config) == [m.name for m in MIGRATIONS]
    finally:
        await conn.close()


def test_migrations_use_nothing_newer_than_postgres_13() -> None:
    partitioned = parse_config("postgresql://h/db?partitions=4")  # every option's SQL
    sql = " ".join(render(m.sql, partitioned).upper() for m in MIGRATIONS)
    for feature in ("CREATE EXTENSION", "MERGE ", "NULLS NOT DISTINCT", "GENERATED ALWAYS"):
        assert feature not in sql
    names = [m.name for m in MIGRATIONS]
    assert names == sorted(names) and len(set(names)) == len(names)


async def test_an_existing_database_gains_the_user_indexes(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    """A database migrated before 0004 gets 0004 and 0005, with its data; pre-built indexes
    are fine."""
    url = make_url(schema=fresh_schema)
    config = parse_config(url)
    older = tuple(m for m in MIGRATIONS if m.name < "0004")
    conn = await asyncpg.connect(database_url)
    index = f'"{fresh_schema}".entity_message_tenant_user'
    try:
        assert await migrate(conn, config, older) == [m.name for m in older]
        assert not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", index)
        store = await threadline.connect(url, migrate=False)
        try:
            session = await store.create_session(threadline.Session(tenant_id=new_id()))
            t, s = session.tenant_id, session.id
            message = threadline.Message(session_id=s, tenant_id=t, role="user", content="kept")
            await store.save_message(message)
            assert await store.migrate() == [m.name for m in MIGRATIONS if m.name >= "0004"]
            assert await store.migrate() == []
            assert [m.id for m in await store.get_messages(t, s)] == [message.id]
        finally:
            await store.close()
        for name in (index, f'"{fresh_schema}".entity_api_call_tenant_user'):
            definition = await conn.fetchval("SELECT pg_get_indexdef($1::regclass)", name)
            assert definition.endswith("(tenant_id, user_id)"), definition
        # Built beforehand (CREATE INDEX CONCURRENTLY, outside the migration): no error.
        await conn.execute(f"DELETE FROM \"{fresh_schema}\".threadline_migrations "
                           "WHERE name >= '0004'")  # fmt: skip
        assert await migrate(conn, config) == [m.name for m in MIGRATIONS if m.name >= "0004"]
    finally:
        await conn.close()
