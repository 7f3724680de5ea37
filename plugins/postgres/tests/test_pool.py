"""Pool behaviour: statistics, and a typed error when no connection comes free in time.

A pool whose connections are all busy is not a server that does not answer: the first
raises :class:`~threadline.errors.PoolTimeoutError` naming the pool size, the second the
plain :class:`~threadline.errors.StoreUnavailableError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

import threadline
from threadline.errors import ConfigurationError, PoolTimeoutError, StoreUnavailableError
from threadline.testing._support import new_conversation
from threadline_postgres import PostgresStore
from threadline_postgres.pool import PoolStats


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pool never got there")


def _plugin(store: threadline.Store) -> PostgresStore:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore)
    return plugin


async def test_a_full_pool_raises_pool_timeout_naming_its_size(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    store = await threadline.connect(
        make_url(schema=fresh_schema, min_size=1, max_size=1, acquire_timeout=0.5)
    )
    plugin = _plugin(store)
    try:
        conv = await new_conversation(store)
        assert plugin.pool_stats() == PoolStats(in_use=0, idle=1, waiting=0, size=1, max=1)
        locker = await asyncpg.connect(database_url)
        try:
            # Another client locks the sessions table: the store's only connection blocks.
            tx = locker.transaction()
            await tx.start()
            await locker.execute(f'LOCK TABLE "{fresh_schema}".entity_session')
            blocked = asyncio.create_task(conv.add("user", "waits for the lock"))
            await _until(lambda: plugin.pool_stats().in_use == 1)
            waiting = asyncio.create_task(store.count_messages(conv.tenant_id, conv.id))
            await _until(lambda: plugin.pool_stats().waiting == 1)
            assert plugin.pool_stats() == PoolStats(in_use=1, idle=0, waiting=1, size=1, max=1)
            with pytest.raises(PoolTimeoutError, match=r"max_size=1") as raised:
                await waiting
            assert raised.value.pool_size == 1
            assert isinstance(raised.value, StoreUnavailableError)
            await tx.rollback()
        finally:
            await locker.close()
        stored = await blocked  # the held call finishes once the lock is gone
        assert stored.seq == 1
        assert plugin.pool_stats().in_use == 0
        assert await store.count_messages(conv.tenant_id, conv.id) == 1
    finally:
        await store.close()


async def test_a_server_that_does_not_answer_is_not_a_pool_timeout(
    make_url: Callable[..., str], fresh_schema: str
) -> None:
    """A statement that times out is the server's fault: StoreUnavailableError, not a pool's."""
    store = await threadline.connect(
        make_url(schema=fresh_schema, command_timeout=0.5), migrate=False
    )
    try:
        plugin = _plugin(store)
        with pytest.raises(StoreUnavailableError) as raised:
            await plugin._call("sleep", lambda conn: conn.execute("SELECT pg_sleep(3)"))
        assert not isinstance(raised.value, PoolTimeoutError)
    finally:
        await store.close()


async def test_stats_of_a_store_without_replica(store: threadline.Store) -> None:
    stats = _plugin(store).pool_stats()
    assert stats.max == 10 and stats.in_use == 0 and stats.waiting == 0
    assert stats.size >= 1 and stats.idle == stats.size
    with pytest.raises(ConfigurationError, match="no read replica"):
        _plugin(store).pool_stats(replica=True)
