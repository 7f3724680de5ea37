"""Faults injected for real: a server SIGKILLed mid-stream, restarted under 16 writers,
and 8 processes appending to one session. Servers that are killed are the tests' own
(``redis_server``: AOF with ``appendfsync always``), never the machine's."""

from __future__ import annotations

import asyncio
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from _servers import RedisServer

import threadline
from threadline import Message, Session
from threadline.errors import StoreUnavailableError
from threadline.ids import new_id
from threadline.testing.processes import run_together

CHILD = Path(__file__).with_name("_child.py")


async def _connect(url: str) -> threadline.Store:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an AOF server: connect must not warn
        return await threadline.connect(url)


async def _until_up(url: str, seconds: float = 20) -> threadline.Store:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await _connect(url)
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_sigkill_mid_stream_loses_nothing_acknowledged(redis_server: RedisServer) -> None:
    """A reply streamed into the store (append, then growing updates) while the server is
    SIGKILLed: after a restart every acknowledged message and update reads back."""
    url = redis_server.url + "?timeout=1&retries=1"
    store = await _connect(url)
    tenant = new_id()
    session = await store.create_session(Session(tenant_id=tenant))
    acked: dict[str, str] = {}  # message id -> last acknowledged content
    killed = asyncio.Event()
    failure: list[BaseException] = []
    # killed after a random number of acknowledged writes (an event, not a timer): at
    # least six replies of 21 writes each are acknowledged first, however slow the machine
    target = random.randint(6 * 21, 8 * 21)
    writes = 0
    enough = asyncio.Event()

    def ack(message_id: str, content: str) -> None:
        nonlocal writes
        acked[message_id] = content
        writes += 1
        if writes >= target:
            enough.set()

    async def stream() -> None:
        try:
            for turn in range(10_000):
                reply = await store.save_message(
                    Message(session_id=session.id, tenant_id=tenant, role="assistant",
                            content="", status="streaming")
                )  # fmt: skip
                ack(reply.id, "")
                text = ""
                for token in range(20):
                    text += f"t{turn}.{token} "
                    reply = await store.update_message(
                        Message(**{**reply.to_dict(), "content": text})
                    )
                    ack(reply.id, text)
        except StoreUnavailableError as exc:
            failure.append(exc)
            assert killed.is_set(), "the store failed before the server was killed"

    writer = asyncio.create_task(stream())
    await asyncio.wait_for(enough.wait(), 60)
    killed.set()
    redis_server.kill()
    await asyncio.wait_for(writer, 30)
    assert failure, "the writer never saw the server go"
    await store.close()
    assert len(acked) > 5
    redis_server.start()
    reopened = await _until_up(url)
    try:
        stored = {m.id: m for m in await reopened.get_messages(tenant, session.id)}
        for message_id, content in acked.items():
            assert message_id in stored, "an acknowledged append was lost"
            assert stored[message_id].content.startswith(content), "an acknowledged update was lost"
        seqs = [m.seq for m in await reopened.get_messages(tenant, session.id)]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await reopened.close()


async def test_restart_under_16_writers(redis_server: RedisServer) -> None:
    """16 tasks append while the server stops and starts again: they get typed
    StoreUnavailableErrors, then succeed by retrying the same message, and every session
    ends with exactly its acknowledged messages, once each, seqs 1..n."""
    url = redis_server.url + "?timeout=1&retries=1"
    store = await _connect(url)
    tenant = new_id()
    sessions = [await store.create_session(Session(tenant_id=tenant)) for _ in range(16)]
    acked: dict[str, list[str]] = {s.id: [] for s in sessions}
    errors: list[BaseException] = []
    done = asyncio.Event()

    async def writer(session: Session) -> None:
        while not done.is_set():
            message = Message(session_id=session.id, tenant_id=tenant, role="user", content="x")
            while True:  # the same message (same id) until it is acknowledged
                try:
                    stored = await store.save_message(message)
                    break
                except StoreUnavailableError as exc:
                    errors.append(exc)
                    await asyncio.sleep(0.05)
            assert stored.id == message.id
            acked[session.id].append(stored.id)

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.02)

    async def restart() -> None:
        # Each step waits for what the writers did (events, not timers): every writer has
        # appended before the stop, one has failed on the stopped server, and every writer
        # has appended again after the start.
        try:
            await until(lambda: all(len(a) >= 5 for a in acked.values()), "writers never ran")
            await asyncio.to_thread(redis_server.stop)
            await until(lambda: bool(errors), "no writer noticed the stopped server")
            await asyncio.to_thread(redis_server.start)
            after = {sid: len(a) for sid, a in acked.items()}
            await until(
                lambda: all(len(acked[sid]) >= n + 5 for sid, n in after.items()),
                "the writers did not resume after the restart",
            )
        finally:
            done.set()

    started = time.monotonic()
    await asyncio.gather(restart(), *(writer(s) for s in sessions))
    took = time.monotonic() - started
    assert errors, "no writer noticed the restart"
    assert all(isinstance(e, StoreUnavailableError) for e in errors)
    for s in sessions:
        stored = await store.get_messages(tenant, s.id)
        assert [m.id for m in stored] == acked[s.id]
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    await store.close()
    total = sum(map(len, acked.values()))
    print(f"\n16 writers: {total} acknowledged appends in {took:.1f} s across a restart, "
          f"{len(errors)} StoreUnavailableErrors, none lost or doubled")  # fmt: skip


def test_eight_processes_append_to_one_session(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    """8 processes append to one session at once (singles and batches): no seq is lost or
    given twice, and every acknowledged message is stored at its acknowledged seq."""
    url = make_url()

    async def setup() -> tuple[str, str]:
        store = await threadline.connect(url)
        try:
            session = await store.create_session(Session(tenant_id=new_id()))
            return session.tenant_id, session.id
        finally:
            await store.close()

    tenant, sid = asyncio.run(setup())
    singles, batches = 40, 4
    results = run_together(
        CHILD, tmp_path / "go",
        [["append", url, str(tmp_path / "go"), f"p{n}", tenant, sid, str(singles), str(batches)]
         for n in range(8)],
    )  # fmt: skip
    acked = {mid: seq for result in results for mid, seq in result}
    per_process = 8 * (singles + 10 * batches)
    assert len(acked) == per_process
    assert sorted(acked.values()) == list(range(1, per_process + 1))
    for result in results:  # each process saw its own seqs increase
        seqs = [seq for _, seq in result]
        assert seqs == sorted(seqs)

    async def check() -> None:
        store = await threadline.connect(url)
        try:
            stored = await store.get_messages(tenant, sid)
            assert {m.id: m.seq for m in stored} == acked
        finally:
            await store.close()

    asyncio.run(check())
