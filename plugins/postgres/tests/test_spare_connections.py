"""Spare connections (:mod:`threadline_postgres.pool`): a connection freed by a call that
succeeded is kept for the next call instead of going through asyncpg's release and acquire.

What a user depends on: a spare whose server connection died is never handed to a call,
callers queued for a connection are served (not starved behind the spare list), idle
connections still expire after ``max_inactive_connection_lifetime``, and closing the store
closes every connection.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import asyncpg
import pytest

import threadline
from threadline import Message
from threadline.testing._support import new_conversation
from threadline_postgres import PostgresStore, pool


def _plugin(store: threadline.Store) -> PostgresStore:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore)
    return plugin


async def _backends(database_url: str, app: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app
        )
        return found
    finally:
        await conn.close()


async def test_a_spare_whose_connection_was_killed_is_not_used(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    app = f"spare_{secrets.token_hex(4)}"
    store = await threadline.connect(make_url(schema=fresh_schema, application_name=app))
    try:
        conv = await new_conversation(store)
        await conv.add("user", "before")
        assert _plugin(store).pool_stats().idle >= 1
        killer = await asyncpg.connect(database_url)
        try:
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                app,
            )
        finally:
            await killer.close()
        assert killed >= 1
        await asyncio.sleep(0.2)  # the client sees the connections close
        stored = await conv.add("assistant", "after")
        assert stored.seq == 2
        assert [m.content for m in await store.read_messages(conv.tenant_id, conv.id)] == [
            "before",
            "after",
        ]
    finally:
        await store.close()


async def test_callers_queued_for_the_only_connection_are_all_served(
    make_url: Callable[..., str], fresh_schema: str
) -> None:
    store = await threadline.connect(
        make_url(schema=fresh_schema, min_size=1, max_size=1, acquire_timeout=5)
    )
    try:
        conv = await new_conversation(store)
        messages = [
            Message(session_id=conv.id, tenant_id=conv.tenant_id, role="user", content=str(i))
            for i in range(40)
        ]
        saved = await asyncio.gather(*(store.save_message(m) for m in messages))
        assert sorted(m.seq for m in saved if m.seq is not None) == list(range(1, 41))
        stats = _plugin(store).pool_stats()
        assert (stats.in_use, stats.waiting, stats.size, stats.idle) == (0, 0, 1, 1)
    finally:
        await store.close()


async def test_idle_connections_still_expire_and_close_closes_them_all(
    make_url: Callable[..., str],
    database_url: str,
    fresh_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool, "SPARE_IDLE", 0.05)
    app = f"spare_{secrets.token_hex(4)}"
    store = await threadline.connect(
        make_url(
            schema=fresh_schema,
            application_name=app,
            min_size=0,
            pooler="none",  # auto keeps one connection open (it checks new ones)
            max_size=4,
            max_inactive_connection_lifetime=0.3,
        )
    )
    try:
        conv = await new_conversation(store)
        await asyncio.gather(*(conv.add("user", str(i)) for i in range(8)))
        assert await _backends(database_url, app) >= 1
        for _ in range(100):  # spare -> back to asyncpg after 0.05 s -> closed after 0.3 s
            if await _backends(database_url, app) == 0:
                break
            await asyncio.sleep(0.05)
        assert await _backends(database_url, app) == 0
        assert await store.count_messages(conv.tenant_id, conv.id) == 8  # reopens one
        assert _plugin(store).pool_stats().idle >= 1
    finally:
        await asyncio.wait_for(store.close(), 10)
    for _ in range(50):
        if await _backends(database_url, app) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _backends(database_url, app) == 0
