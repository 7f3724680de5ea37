"""The server stops and starts mid-run: typed errors fast, recovery, nothing acknowledged lost.

This test stops the local PostgreSQL cluster for a few seconds (``pg_ctlcluster``, as
root) and always starts it again. It skips, with the reason, where that cannot be done
(another host, not root, no pg_ctlcluster) or when ``THREADLINE_TEST_NO_RESTART`` is set
because others share the server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest

import threadline
from threadline import Message, Session, StoreUnavailableError
from threadline.ids import new_id
from threadline_postgres.cluster import cluster_ctl, cluster_online, local_cluster

pytestmark = pytest.mark.slow


async def test_server_restart_mid_run(make_url: Callable[..., str], database_url: str) -> None:
    cluster = local_cluster(database_url)
    if os.environ.get("THREADLINE_TEST_NO_RESTART"):
        pytest.skip("THREADLINE_TEST_NO_RESTART is set")
    if cluster is None:
        pytest.skip("needs root and pg_ctlcluster for a local cluster on the test port")
    url = make_url(schema="restart", connect_timeout=2, command_timeout=3, acquire_timeout=3,
                   min_size=2, max_size=4)  # fmt: skip
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
        await asyncio.to_thread(cluster_ctl, cluster, "stop")
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
        await asyncio.to_thread(cluster_ctl, cluster, "start")
        # Up again: the same store (same pool) recovers without a restart of the process.
        deadline = time.monotonic() + 20
        count_at_start = len(acknowledged)
        while len(acknowledged) < count_at_start + 20:
            assert time.monotonic() < deadline, "the pool did not recover"
            await asyncio.sleep(0.05)
    finally:
        try:
            if not await asyncio.to_thread(cluster_online, cluster):
                await asyncio.to_thread(cluster_ctl, cluster, "start")  # always bring it back
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
