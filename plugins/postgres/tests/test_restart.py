"""The server stops and starts mid-run: typed errors fast, recovery, nothing acknowledged lost.

The server stopped here is a throwaway cluster of the test's own (``TempCluster``:
``initdb`` into a temporary folder, another port, deleted afterwards), never the server
the other tests use, whose postmaster start time is checked to be unchanged afterwards.
Without PostgreSQL's server binaries the test skips, or fails when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import threadline
from threadline import Message, Session, StoreUnavailableError
from threadline.ids import new_id
from threadline_postgres.cluster import TempCluster

pytestmark = pytest.mark.slow


async def test_server_restart_mid_run(cluster: TempCluster) -> None:
    """``cluster`` (conftest) is a throwaway server; the usual one is checked left alone."""
    url = (
        f"{cluster.url}?schema=restart&connect_timeout=2&command_timeout=3&acquire_timeout=3"
        "&min_size=2&max_size=4"
    )
    store = await threadline.connect(url)
    session = await store.create_session(Session(tenant_id=new_id()))
    acknowledged: list[Message] = []
    unacknowledged: list[Message] = []
    failures: list[float] = []
    stop = asyncio.Event()

    def message(i: int) -> Message:
        return Message(session_id=session.id, tenant_id=session.tenant_id, role="user",
                       content=f"m{i}")  # fmt: skip

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            m = message(i)
            i += 1
            started = time.monotonic()
            try:
                acknowledged.append(await store.save_message(m))
            except StoreUnavailableError:
                failures.append(time.monotonic() - started)
                unacknowledged.append(m)
                await asyncio.sleep(0.05)

    task = asyncio.create_task(writer())
    try:
        await asyncio.sleep(0.3)
        before = len(acknowledged)
        assert before > 0
        await asyncio.to_thread(cluster.stop)
        # Down: every operation raises the typed error, promptly, nothing hangs.
        for call in (
            lambda: store.get_messages(session.tenant_id, session.id),
            lambda: store.save_message(message(-1)),
            lambda: store.load_window(session.tenant_id, session.id, 2),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as caught:
                await call()
            assert time.monotonic() - started < 3.5, caught.value
        await asyncio.sleep(0.3)
        assert failures, "the writer should have seen the server go away"
        assert max(failures) < 3.5  # bounded by the configured timeouts
        await asyncio.to_thread(cluster.start)
        # Up again: the same store (same pool) recovers without a restart of the process.
        deadline = time.monotonic() + 20
        count_at_start = len(acknowledged)
        while len(acknowledged) < count_at_start + 20:
            assert time.monotonic() < deadline, "the pool did not recover"
            await asyncio.sleep(0.05)
    finally:
        try:
            if not await asyncio.to_thread(cluster.running):
                await asyncio.to_thread(cluster.start)  # always bring it back
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    try:
        # Retrying the writes whose outcome was unknown is safe: stored once at most.
        for m in unacknowledged:
            await store.save_message(m)
        stored = await store.get_messages(session.tenant_id, session.id)
        ids = {m.id for m in stored}
        assert {m.id for m in acknowledged} <= ids  # no acknowledged write lost
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))  # no gap, no twin
        assert len(stored) == len(acknowledged) + len(unacknowledged)
        for m in acknowledged:
            assert stored[(m.seq or 0) - 1].id == m.id
    finally:
        await store.close()
