"""Graph interrupts on memory, SQLite, PostgreSQL and fsspec: a run waits in a checkpoint,
is killed, and is resumed by another process; wrong, repeated and hostile resumes fail
with typed errors and write nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from hitl_support import (
    CHILD,
    OTHER_USER,
    STORES,
    TENANT,
    USER,
    ask_agent,
    child_main,
    hitl_postgres,  # noqa: F401  (fixture)
    make_url,
    run_child,
)

import threadline
from threadline.errors import ValidationError
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.graph.errors import InterruptError, NondeterministicNodeError
from threadline.graph.interrupts import Interrupted
from threadline.ids import new_id
from threadline.runtime.waiting import list_waiting
from threadline.transfer.copying import copy_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


def lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def test_interrupt_killed_and_resumed_by_other_processes(url: str, tmp_path: Path) -> None:
    sid, log = new_id(), tmp_path / "log.txt"
    if url.startswith("memory://"):  # one process can see a memory store: same steps in-process
        store = await threadline.connect(url)
        await child_main(["start", url, sid, str(log)])
        first = (await ask_agent(store, str(log)).persistency(sid).get_latest_checkpoint()).id  # type: ignore[attr-defined]
        await child_main(["resume", url, first, '"yes"', str(log)])
        await child_main(["resume", url, sid, '{"really": true}', str(log)])
    else:
        store = await threadline.connect(url)  # migrate once, before the children
        starter = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            "start",
            url,
            sid,
            str(log),
            "hang",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
        )
        assert starter.stdout is not None and starter.stderr is not None
        line = await asyncio.wait_for(starter.stdout.readline(), 60)
        starter.send_signal(signal.SIGKILL)  # the run waits; its process is gone
        await asyncio.wait_for(starter.wait(), 30)
        assert line, (await starter.stderr.read()).decode()
        first = json.loads(line)["interrupt_id"]
        resumed = run_child(CHILD, "resume", url, first, '"yes"', str(log))
        assert resumed.returncode == 0, resumed.stderr
        second = json.loads(resumed.stdout)["interrupt_id"]
        assert second != first
        done = run_child(CHILD, "resume", url, sid, '{"really": true}', str(log))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"]["answers"] == ["yes", {"really": True}]
    try:
        # draft re-entered twice; the model was asked once and the expensive step ran once
        assert lines(log) == ["draft", "estimate", "draft", "draft", "send"]
        calls = await store.list_api_calls(TENANT, sid)
        assert [c.status for c in calls] == ["success"]
        agent = ask_agent(store, str(log))
        kinds = [c.properties["kind"] for c in await agent.persistency(sid).get_checkpoints()]  # type: ignore[attr-defined]
        assert kinds == ["interrupt", "resume", "interrupt", "resume", "auto", "auto", "tombstone"]
        tomb = (await agent.persistency(sid).get_checkpoints())[-1]  # type: ignore[attr-defined]
        assert [m.role for m in tomb.history] == ["user", "assistant"]  # replayed, not doubled
        assert await list_waiting(store, TENANT) == []
    finally:
        await store.close()


def _child_env() -> dict[str, str]:
    import os

    paths = [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


async def test_resume_errors_and_hostile_values_write_nothing(url: str, tmp_path: Path) -> None:
    log, sid = str(tmp_path / "log.txt"), new_id()
    store = await threadline.connect(url)
    try:
        agent: Any = ask_agent(store, log)
        waiting = await agent.run("hi", session_id=sid)
        assert isinstance(waiting, Interrupted) and waiting.node == "draft"
        assert waiting.payload == {"question": "send this draft?", "draft": "Echo: hi"}
        again = await agent.run("ignored while waiting", session_id=sid)
        assert again == waiting  # nothing ran
        before = await agent.persistency(sid).get_checkpoints()
        hostile: list[Any] = [
            "x" * 1_100_000,
            "nul \x00 inside",
            {"key\x00": 1},
            object(),
            float("nan"),
            b"bytes",
            {1: "int key"},
            "\ud800",
            2**70,
        ]
        deep: Any = []
        for _ in range(200):
            deep = [deep]
        hostile.append(deep)
        for value in hostile:
            with pytest.raises(ValidationError):
                await agent.resume(sid, value)
        with pytest.raises(InterruptError):
            await agent.resume(new_id(), "unknown id")
        with pytest.raises(ValidationError):
            await agent.resume("not-an-id", "x")
        assert await agent.persistency(sid).get_checkpoints() == before
        [run] = await list_waiting(store, TENANT, user_id=USER)
        assert (run.kind, run.id, run.node, run.session_id) == (
            "interrupt",
            waiting.interrupt_id,
            "draft",
            sid,
        )
        assert run.age.total_seconds() >= 0 and run.strategy == "ask-twice"
        assert await list_waiting(store, TENANT, user_id=OTHER_USER) == []
        second = await agent.resume(waiting.interrupt_id, "yes")
        assert isinstance(second, Interrupted) and second.index == 1
        with pytest.raises(InterruptError, match="moved on"):
            await agent.resume(waiting.interrupt_id, "twice")
        result = await agent.resume(second.interrupt_id, "sure")
        assert result["answers"] == ["yes", "sure"]
        with pytest.raises(InterruptError):
            await agent.resume(second.interrupt_id, "after the end")
        with pytest.raises(InterruptError):
            await agent.resume(sid, "after the end")
    finally:
        await store.close()


async def test_two_resumers_at_once_one_wins(url: str, tmp_path: Path) -> None:
    log, sid = str(tmp_path / "log.txt"), new_id()
    store = await threadline.connect(url)
    try:
        agent: Any = ask_agent(store, log)
        waiting = await agent.run("hi", session_id=sid)
        other: Any = ask_agent(store, log)
        outcomes = await asyncio.gather(
            agent.resume(waiting.interrupt_id, "a"),
            other.resume(waiting.interrupt_id, "b"),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        wins = [o for o in outcomes if isinstance(o, Interrupted)]
        assert len(errors) <= 1 and all(isinstance(e, InterruptError) for e in errors)
        assert len(wins) >= 1
        final = await agent.run(None, session_id=sid)  # still waiting at the second interrupt
        assert isinstance(final, Interrupted) and final.index == 1
        assert final.payload["first"] in ("a", "b")
    finally:
        await store.close()


async def test_rollback_and_execution_point_around_an_interrupt(url: str, tmp_path: Path) -> None:
    log, sid = str(tmp_path / "log.txt"), new_id()
    store = await threadline.connect(url)
    try:
        agent: Any = ask_agent(store, log)
        first = await agent.run("hi", session_id=sid)
        second = await agent.resume(sid, "yes")
        p = agent.persistency(sid)
        back = await p.rollback_to_checkpoint(first.interrupt_id)  # wait at the first again
        assert back.properties["kind"] == "interrupt" and back.properties["waiting"] is True
        with pytest.raises(InterruptError):
            await agent.resume(second.interrupt_id, "stale")
        again = await agent.run(None, session_id=sid)
        assert isinstance(again, Interrupted)
        assert (again.interrupt_id, again.index) == (back.id, 0)
        await p.set_execution_point("send", input={"by": "hand"})  # the run moves on
        with pytest.raises(InterruptError):
            await agent.resume(back.id, "too late")
        assert await list_waiting(store, TENANT) == []
        assert await agent.run(None, session_id=sid) == {"by": "hand"}
    finally:
        await store.close()


async def test_erasure_and_copy_carry_waiting_runs(url: str, tmp_path: Path) -> None:
    log, sid = str(tmp_path / "log.txt"), new_id()
    store = await threadline.connect(url)
    target = await threadline.connect(f"memory://copy-{new_id()}")
    try:
        agent: Any = ask_agent(store, log)
        waiting = await agent.run("hi", session_id=sid)
        await copy_store(store, target)
        [copied] = await list_waiting(target, TENANT)
        assert (copied.id, copied.payload) == (waiting.interrupt_id, waiting.payload)
        moved: Any = ask_agent(target, log)
        assert isinstance(await moved.resume(waiting.interrupt_id, "yes"), Interrupted)
        counts = await store.erase_user(TENANT, USER)
        assert counts["sessions"] == 1
        assert await list_waiting(store, TENANT) == []
    finally:
        await target.close()
        await store.close()


async def test_a_node_that_changes_its_steps_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("threadline_sqlite")
    flips = iter([True, False])
    strategy = Strategy("fickle")

    @strategy.node("n")
    async def n(ctx: GraphContext, text: str) -> str:
        if next(flips):
            await ctx.llm(text)
        else:
            await ctx.once("other", lambda: 1)
        return str(await ctx.interrupt("ok?"))

    strategy.edge(strategy.start, n).edge(n, strategy.finish)
    async with GraphAgent(
        strategy, provider="echo", features=[Persistency(f"sqlite:///{tmp_path / 'f.db'}")]
    ) as agent:
        sid = new_id()
        await agent.run("hi", session_id=sid)
        with pytest.raises(NondeterministicNodeError):
            await agent.resume(sid, "yes")


async def test_interrupt_without_a_store_is_a_configuration_error() -> None:
    strategy = Strategy("nowhere")
    node = strategy.add_node("n", lambda ctx, x: ctx.interrupt("?"))
    strategy.edge(strategy.start, node).edge(node, strategy.finish)
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(None)])
    with pytest.raises(threadline.ConfigurationError):
        await agent.run("x")
