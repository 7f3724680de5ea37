"""threadline.graph across processes on a SQLite file: a killed run resumes, writers never collide.

Each child is a fresh ``python`` process; ``os._exit`` kills it inside a node with no
cleanup, as a crash would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import threadline
from threadline.graph import GraphAgent, Persistency, Strategy
from threadline.ids import new_id

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "checkpoints.py"

CHILD = r"""
import asyncio, os, sys
from threadline.graph import GraphAgent, Persistency, Strategy

url, session_id, crash_at, log_path = sys.argv[1:5]
strategy = Strategy("relay")

def leg(name):
    async def run(ctx, legs):
        with open(log_path, "a") as log:
            log.write(name + "\n")
        if name == crash_at:
            os._exit(17)
        ctx.state[name] = len(legs)
        ctx.append("assistant", name + " done")
        return legs + [name]
    return strategy.add_node(name, run)

a, b, c = leg("a"), leg("b"), leg("c")
strategy.edge(strategy.start, a).edge(a, b).edge(b, c).edge(c, strategy.finish)

async def main():
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(url)])
    print(await agent.run([], session_id=session_id))
    await agent.close()

asyncio.run(main())
"""

WRITER = r"""
import asyncio, sys
from threadline.graph import GraphAgent, Persistency, Strategy

url, session_id = sys.argv[1:3]
strategy = Strategy("relay")
node = strategy.add_node("a", lambda ctx, x: x)
strategy.edge(strategy.start, node).edge(node, strategy.finish)

async def main():
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(url)])
    p = agent.persistency(session_id)
    await asyncio.gather(*(p.create_checkpoint("a", i) for i in range(15)))
    await agent.close()

asyncio.run(main())
"""


def child(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", *args], capture_output=True, text=True, timeout=60, check=False
    )


def relay_strategy() -> Strategy:
    s = Strategy("relay")
    node = s.add_node("a", lambda ctx, x: x)
    s.edge(s.start, node).edge(node, s.finish)
    return s


async def test_killed_process_resumes_in_another(tmp_path: Path) -> None:
    url, sid, log = f"sqlite:///{tmp_path / 'graph.db'}", new_id(), tmp_path / "log.txt"
    killed = child(CHILD, url, sid, "c", str(log))
    assert killed.returncode == 17, killed.stderr
    assert log.read_text().split() == ["a", "b", "c"]
    resumed = child(CHILD, url, sid, "", str(log))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "['a', 'b', 'c']"
    assert log.read_text().split() == ["a", "b", "c", "c"]  # a and b did not run again
    store = await threadline.connect(url)
    try:
        agent = GraphAgent(relay_strategy(), provider="echo", features=[Persistency(store)])
        checkpoints = await agent.persistency(sid).get_checkpoints()
        assert [c.version for c in checkpoints] == [1, 2, 3, 4]
        assert [c.node_id for c in checkpoints] == ["b", "c", "__finish__", None]
        tomb = checkpoints[-1]
        assert tomb.tombstone and tomb.state == {"a": 0, "b": 1, "c": 2}
        assert [m.content for m in tomb.history] == ["a done", "b done", "c done"]
    finally:
        await store.close()
    fresh = child(CHILD, url, sid, "", str(log))  # the tombstone: the next run starts over
    assert fresh.returncode == 0, fresh.stderr
    assert log.read_text().split()[-3:] == ["a", "b", "c"]


async def test_two_processes_checkpointing_one_session(tmp_path: Path) -> None:
    url, sid = f"sqlite:///{tmp_path / 'graph.db'}", new_id()
    store = await threadline.connect(url)  # migrate once before the writers race
    await store.close()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            url,
            sid,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    store = await threadline.connect(url)
    try:
        agent = GraphAgent(relay_strategy(), provider="echo", features=[Persistency(store)])
        versions = [c.version for c in await agent.persistency(sid).get_checkpoints()]
        assert versions == list(range(1, 31))
    finally:
        await store.close()


@pytest.mark.parametrize("store", ["sqlite", "memory://"])
def test_example_crashes_resumes_and_rolls_back(tmp_path: Path, store: str) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}" if store == "sqlite" else store
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    crash, resume, rollback = out.split("\n1. ")[1], out.split("\n2. ")[1], out.split("\n3. ")[1]
    assert "!! crash inside draft" in crash
    if store == "sqlite":
        assert "child process exited with code 17" in crash
    assert "-> node understand" not in resume.split("\n3.")[0]
    assert "-> node book" not in resume.split("\n3.")[0]
    assert "-> node draft" in resume and "See you soon, Ada!" in resume
    assert "[undo] cancelled booking-ada-2n" in rollback
    assert rollback.index("[undo]") < rollback.index("-> node book")
    assert "v10 tombstone" in rollback
