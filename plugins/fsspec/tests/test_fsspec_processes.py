"""Several processes on one directory: appends, a held lock, and resuming a session elsewhere."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import pytest
from _fsspec_support import run_child, run_together, start_child

import threadline
from threadline import Checkpoint, Message, Session, StoreUnavailableError, ToolCall
from threadline.ids import new_id
from threadline.models import to_json

PROCESSES = 3
SINGLES = 150
BATCHES = 10  # of 5 messages each


async def test_processes_appending_to_one_session_lose_nothing(root: Path, tmp_path: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    await store.close()

    commands = [
        ["append", str(root), str(tmp_path / "go"), f"p{i}", session.tenant_id, session.id,
         str(SINGLES), str(BATCHES)]
        for i in range(PROCESSES)
    ]  # fmt: skip
    seqs_by_process = await asyncio.to_thread(run_together, tmp_path / "go", commands)

    total = PROCESSES * (SINGLES + BATCHES * 5)
    every_seq = sorted(s for seqs in seqs_by_process for s in seqs)
    assert every_seq == list(range(1, total + 1))  # contiguous, none shared
    for seqs in seqs_by_process:
        assert seqs == sorted(seqs)

    store = await threadline.connect(f"file://{root}")
    try:
        messages = await store.get_messages(session.tenant_id, session.id)
        assert [m.seq for m in messages] == list(range(1, total + 1))
        assert len({m.content for m in messages}) == total
        assert await store.count_messages(session.tenant_id, session.id) == total
        batches: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
        for m in messages:
            name, _, number = m.content.partition("-")
            if int(number) >= 10_000:
                batches[(name, (int(number) - 10_000) // 10)].append(m.seq or 0)
        assert len(batches) == PROCESSES * BATCHES
        for seqs in batches.values():  # every batch whole and in one piece
            assert seqs == list(range(seqs[0], seqs[0] + 5))
        window = await store.load_window(session.tenant_id, session.id, 3)
        assert window == messages[-len(window) :]
    finally:
        await store.close()


async def test_a_held_lock_is_a_clear_error_never_a_silent_loss(root: Path, tmp_path: Path) -> None:
    store = await threadline.connect(f"file://{root}?lock_timeout=0.3")
    session = await store.create_session(Session(tenant_id=new_id()))
    first = await store.save_message(
        Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="1")
    )
    ready = tmp_path / "held"
    holder = start_child("hold", str(root), session.tenant_id, session.id, str(ready))
    try:
        deadline = time.monotonic() + 120  # a hang guard: the child may start slowly
        while not ready.exists():
            assert holder.poll() is None, holder.communicate()[1]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        blocked = Message(session_id=session.id, tenant_id=session.tenant_id, role="user")
        with pytest.raises(StoreUnavailableError, match="lock"):  # held until released below
            await store.save_message(blocked)
        assert await store.get_messages(session.tenant_id, session.id) == [first]
    finally:
        out, err = holder.communicate("release\n", timeout=60)
    assert holder.returncode == 0 and "released" in out, err
    retried = await store.save_message(blocked)  # the lock is free again: the retry lands
    assert retried.seq == 2
    assert await store.get_messages(session.tenant_id, session.id) == [first, retried]
    await store.close()


async def test_a_session_resumes_with_full_history_in_another_process(root: Path) -> None:
    url = f"file://{root}"
    store = await threadline.connect(url)
    tenant = new_id()
    session = await store.create_session(Session(tenant_id=tenant, title="résumé ✓"))

    def msg(role: str, content: str = "", **fields: object) -> Message:
        return Message(session_id=session.id, tenant_id=tenant, role=role,  # type: ignore[arg-type]
                       content=content, **fields)  # type: ignore[arg-type]  # fmt: skip

    call = ToolCall(id="call_1", name="get_time", arguments={"tz": "Europe/Paris"})
    saved = [
        await store.save_message(msg("system", "You are terse.\x00")),
        await store.save_message(msg("user", "what time is it?")),
        await store.save_message(msg("assistant", tool_calls=[call], metadata={"m": 1.5})),
        await store.save_message(msg("tool", "12:00", tool_call_id="call_1", name="get_time")),
        await store.save_message(msg("assistant", "noon", status="interrupted")),
    ]
    saved += await store.save_messages([msg("user", "thanks"), msg("assistant", "🧵")])
    checkpoint = await store.create_checkpoint(
        Checkpoint(
            tenant_id=tenant,
            session_id=session.id,
            node_id="answer",
            history=saved[:4],
            state={"k": [1, "x"]},
            input={"q": "time"},
        )  # fmt: skip
    )
    stored_session = await store.get_session(tenant, session.id)
    await store.close()

    dumped = await asyncio.to_thread(run_child, "dump", url, tenant, session.id)
    assert stored_session is not None
    assert dumped["session"] == to_json(stored_session)
    assert dumped["messages"] == [to_json(m) for m in saved]
    assert dumped["window"] == [to_json(m) for m in saved]  # system + the last 2 rounds
    assert dumped["checkpoints"] == [to_json(checkpoint)]
