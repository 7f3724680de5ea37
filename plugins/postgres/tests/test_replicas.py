"""Multi-host URLs with fail-over, and reads on a read replica, against real streaming replicas.

The tests make their own servers: a ``TempCluster`` primary and a standby cloned from it with
``pg_basebackup -R`` (another temporary folder, another port), streaming synchronously, so
an acknowledged commit is on the standby too. The server the other tests use is not touched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio

import threadline
from threadline import Message, Session, StoreUnavailableError
from threadline.ids import new_id
from threadline.testing._support import new_conversation
from threadline_postgres import PostgresStore
from threadline_postgres.cluster import ClusterUnavailableError, TempCluster


def _pair() -> Iterator[tuple[TempCluster, TempCluster]]:
    try:
        with TempCluster() as primary, TempCluster(standby_of=primary) as standby:
            primary.configure("synchronous_standby_names = '*'")  # acknowledged = on both
            yield primary, standby
    except ClusterUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def replicated() -> Iterator[tuple[TempCluster, TempCluster]]:
    """A primary and its streaming standby, shared by the read-replica tests."""
    yield from _pair()


def _plugin(store: threadline.Store) -> PostgresStore:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore)
    return plugin


async def _sql(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def replica_store(
    replicated: tuple[TempCluster, TempCluster],
) -> AsyncIterator[threadline.Store]:
    primary, standby = replicated
    url = f"{primary.url}?schema=rr&replica=127.0.0.1:{standby.port}&replica_window=2"
    store = await threadline.connect(url)
    yield store
    await store.close()
    await _sql(standby.url, "SELECT pg_wal_replay_resume()")


async def test_reads_go_to_the_replica_and_a_sessions_own_reads_stay_fresh(
    replicated: tuple[TempCluster, TempCluster], replica_store: threadline.Store
) -> None:
    primary, standby = replicated
    writer = replica_store
    conv = await new_conversation(writer)
    await conv.add("user", "first")
    # Another process (a store of its own: it wrote nothing) reads the replica.
    reader = await threadline.connect(
        f"{primary.url}?schema=rr&replica=127.0.0.1:{standby.port}", migrate=False
    )
    try:
        assert _plugin(reader).pool_stats(replica=True).size >= 1
        assert [m.content for m in await reader.get_messages(conv.tenant_id, conv.id)] == [
            "first"
        ]  # synchronous replication: replayed (remote_apply is not set, so wait a little)
        # Replay paused: what is written now is on the primary only.
        await _sql(standby.url, "SELECT pg_wal_replay_pause()")
        await conv.add("user", "second")
        # The writer's own reads of that session go to the primary for replica_window...
        fresh = await writer.load_window(conv.tenant_id, conv.id, 5)
        assert [m.content for m in fresh] == ["first", "second"]
        assert await writer.count_messages(conv.tenant_id, conv.id) == 2
        # ... while the other store's reads are served by the replica: stale, as allowed.
        stale = await reader.get_messages(conv.tenant_id, conv.id)
        assert [m.content for m in stale] == ["first"]
        assert await reader.count_messages(conv.tenant_id, conv.id) == 1
        # The session row and checkpoints, which writes are planned on, come from the primary.
        seen = await reader.get_session(conv.tenant_id, conv.id)
        assert seen == await writer.get_session(conv.tenant_id, conv.id)
        assert seen is not None and seen.updated_at >= fresh[-1].created_at
        # Listing the tenant's sessions: the writer's tenant is fresh, the reader's stale view
        # still has the session (created before the pause).
        assert [s.id for s in await writer.list_sessions(conv.tenant_id)] == [conv.id]
        # After the window the writer's reads go to the replica too (stale while paused).
        await asyncio.sleep(2.1)
        assert len(await writer.get_messages(conv.tenant_id, conv.id)) == 1
        await _sql(standby.url, "SELECT pg_wal_replay_resume()")
        deadline = time.monotonic() + 10
        while len(await reader.get_messages(conv.tenant_id, conv.id)) < 2:
            assert time.monotonic() < deadline, "the replica never caught up"
            await asyncio.sleep(0.05)
    finally:
        await reader.close()


async def test_a_session_created_here_is_read_back_at_once(
    replicated: tuple[TempCluster, TempCluster], replica_store: threadline.Store
) -> None:
    """Read-your-writes holds even while the replica is far behind."""
    _, standby = replicated
    await _sql(standby.url, "SELECT pg_wal_replay_pause()")
    conv = await new_conversation(replica_store)
    await conv.add_round(1, tool=True)
    read = await replica_store.get_session(conv.tenant_id, conv.id)
    assert read is not None and read.updated_at > conv.session.updated_at  # the appends' too
    assert len(await replica_store.load_window(conv.tenant_id, conv.id, 1)) == 4
    assert [s.id for s in await replica_store.list_sessions(conv.tenant_id)] == [conv.id]


async def test_a_replica_that_is_down_leaves_reads_on_the_primary(
    replicated: tuple[TempCluster, TempCluster],
) -> None:
    primary, _ = replicated
    with TempCluster() as doomed:
        url = f"{primary.url}?schema=rr&replica=127.0.0.1:{doomed.port}&replica_window=0.1"
        store = await threadline.connect(url + "&connect_timeout=2&acquire_timeout=2")
        try:
            conv = await new_conversation(store)
            await conv.add("user", "kept")
            await asyncio.to_thread(doomed.stop, "immediate")
            await asyncio.sleep(0.2)  # past the window: these reads would use the replica
            assert [m.content for m in await conv.messages()] == ["kept"]
        finally:
            await store.close()


@pytest.fixture
def doomed_pair() -> Iterator[tuple[TempCluster, TempCluster]]:
    """A primary and its standby for one test, which kills the primary."""
    yield from _pair()


async def test_failover_to_a_promoted_standby_loses_nothing_acknowledged(
    doomed_pair: tuple[TempCluster, TempCluster],
) -> None:
    """Primary killed mid-run, standby promoted: the multi-host URL finds the new primary."""
    primary, standby = doomed_pair
    url = (
        f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
        "?target_session_attrs=read-write&schema=fo&connect_timeout=2&command_timeout=3"
        "&acquire_timeout=3&max_size=4"
    )
    store = await threadline.connect(url)
    session = await store.create_session(Session(tenant_id=new_id()))
    acknowledged: list[Message] = []
    failed = 0

    async def write(i: int) -> None:
        nonlocal failed
        m = Message(session_id=session.id, tenant_id=session.tenant_id, role="user",
                    content=f"m{i}")  # fmt: skip
        try:
            acknowledged.append(await store.save_message(m))
        except StoreUnavailableError:
            failed += 1
            await asyncio.sleep(0.05)

    try:
        for i in range(30):
            await write(i)
        assert len(acknowledged) == 30
        await asyncio.to_thread(primary.stop, "immediate")  # a crash, not a clean stop
        for i in range(30, 35):
            await write(i)
        assert len(acknowledged) == 30 and failed == 5  # no primary: typed errors
        await asyncio.to_thread(standby.promote)
        deadline = time.monotonic() + 20
        while len(acknowledged) < 40:
            assert time.monotonic() < deadline, "the client never failed over"
            await write(len(acknowledged) + failed)
        assert await _sql(standby.url, "SELECT NOT pg_is_in_recovery()")
        stored = await store.get_messages(session.tenant_id, session.id)
        assert [m.id for m in stored] == [m.id for m in acknowledged]
        assert [m.seq for m in stored] == list(range(1, 41))
    finally:
        await store.close()
