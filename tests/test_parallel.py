"""Parallel branches on memory, SQLite, PostgreSQL and fsspec: a crash (or an interrupt)
inside a fan-out resumes only the branches that had not finished; the join sees every
branch's output exactly once; concurrent branch checkpoints get distinct versions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hitl_support import (
    FANOUT,
    STORES,
    TENANT,
    fanout_agent,
    hitl_postgres,  # noqa: F401  (fixture)
    make_url,
    run_child,
)

import threadline
from threadline.graph import FanOut, GraphAgent, GraphContext, Persistency, Send, Strategy
from threadline.graph.interrupts import Interrupted
from threadline.ids import new_id
from threadline.runtime.waiting import list_waiting


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


def lines(log: Path) -> list[str]:
    return log.read_text().split()


EXPECTED = {
    "outputs": ["A:x", "B:x", "C:x"],
    "state": {"a": True, "b": True, "c": True},
    "said": 3,
}


async def test_crash_in_a_fanout_reruns_only_unfinished_branches(url: str, tmp_path: Path) -> None:
    sid, log = new_id(), tmp_path / "log.txt"
    store = await threadline.connect(url)
    try:
        if url.startswith("memory://"):  # no second process can see it: a failing branch
            with pytest.raises(RuntimeError):
                await fanout_agent(store, str(log), "raise").run("x", session_id=sid)  # type: ignore[attr-defined]
            result = await fanout_agent(store, str(log)).run("x", session_id=sid)  # type: ignore[attr-defined]
        else:
            crashed = await asyncio.to_thread(run_child, FANOUT, url, sid, str(log), "exit")
            assert crashed.returncode == 9, crashed.stderr
            done = await asyncio.to_thread(run_child, FANOUT, url, sid, str(log), "")
            assert done.returncode == 0, done.stderr
            result = json.loads(done.stdout)
        assert result == EXPECTED
        seen = lines(log)
        assert seen[0] == "plan" and sorted(seen[1:4]) == ["a", "b", "c"]
        assert seen[4:] == ["c", "join"]  # only the unfinished branch ran again
        agent: Any = fanout_agent(store, str(log))
        checkpoints = await agent.persistency(sid).get_checkpoints()
        versions = [c.version for c in checkpoints]
        assert versions == sorted(set(versions))
        kinds = [c.properties["kind"] for c in checkpoints]
        assert kinds.count("branch") == 3 and kinds.count("fanout") == 1
        assert kinds[-2:] == ["auto", "tombstone"]
    finally:
        await store.close()


async def test_interrupt_inside_a_branch(url: str, tmp_path: Path) -> None:
    sid, log = new_id(), tmp_path / "log.txt"
    store = await threadline.connect(url)
    try:
        agent: Any = fanout_agent(store, str(log), "ask")
        waiting = await agent.run("x", session_id=sid)
        assert isinstance(waiting, Interrupted) and waiting.node == "b"
        assert waiting.payload == {"branch": "b"}
        [listed] = await list_waiting(store, TENANT)
        assert listed.id == waiting.interrupt_id
        other: Any = fanout_agent(store, str(log), "ask")
        result = await other.resume(waiting.interrupt_id, "ok")
        assert result["outputs"] == ["A:x", "B:x:ok", "C:x"]
        assert result["state"] == {"a": True, "b": True, "c": True}
        assert result["said"] == 3  # b's message once, not twice
        seen = lines(log)
        assert sorted(seen[1:4]) == ["a", "b", "c"] and seen[4:] == ["b", "join"]
    finally:
        await store.close()


async def test_many_branches_write_distinct_versions(url: str) -> None:
    strategy = Strategy("wide")

    @strategy.node("plan")
    async def plan(ctx: GraphContext, n: int) -> FanOut:
        return FanOut([Send("work", i) for i in range(n)], join="total")

    @strategy.node("work")
    async def work(ctx: GraphContext, i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        return i * i

    @strategy.node("total")
    async def total(ctx: GraphContext, squares: list[int]) -> int:
        return sum(squares)

    strategy.edge(strategy.start, plan).edge(plan, work).edge(work, total)
    strategy.edge(total, strategy.finish)
    store = await threadline.connect(url)
    try:
        agent = GraphAgent(strategy, provider="echo", features=[Persistency(store)])
        sid = new_id()
        assert await agent.run(12, session_id=sid) == sum(i * i for i in range(12))
        checkpoints = await agent.persistency(sid).get_checkpoints()
        versions = [c.version for c in checkpoints]
        assert len(versions) == len(set(versions)) == 12 + 4  # fanout, 12 branches, join, end...
    finally:
        await store.close()
