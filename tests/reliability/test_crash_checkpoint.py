"""Crash mid-checkpoint: a graph agent with automatic checkpoints is killed with SIGKILL.

A child forked from the fork server (``_crash_child.py``) runs :func:`counting_strategy`
(one node, ``step``, run ``STEPS`` times; each step sets deterministic state and asks the
``echo`` model one question) with ``Persistency(automatic=True)`` on SQLite, PostgreSQL or
fsspec on local disk, and reports every checkpoint its store acknowledged. Nodes do
almost nothing but write checkpoints, so random kills land inside checkpoint writes.
The test kills the child at a random moment (seeded, printed, recorded): while it
starts, or within a random step (after the child reported a random number of
acknowledged checkpoints, then up to one step's time as the calibration run measured it,
so a run faster than the calibration is still killed mid-run), one to three times per
session (each new child resumes the session the last one left), and after every kill
reads the session with a fresh store object:

* every checkpoint is readable and whole: its node, input, state and history are exactly
  what the nodes produce after that many steps, and the latest one is what
  ``get_latest_checkpoint`` returns;
* versions are unique and increasing; each checkpoint's parent is the one before it and
  is one step behind it, so every rerun resumed from the latest checkpoint;
* every checkpoint a child saw acknowledged is still there, unchanged.

Then a rerun with the same ``session_id`` (in the test process) must resume from the
latest checkpoint, run exactly the steps after it, and finish with a tombstone.
``THREADLINE_CRASH_KILLS`` changes the number of kills (default 30 per store).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import secrets
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import threadline
from threadline.graph import FINISH, GraphAgent, Persistency
from threadline.ids import new_id
from threadline.models import Checkpoint

from ._crash_child import (
    GRAPH_SYSTEM_PROMPT,
    ChildRun,
    ForkServer,
    counting_strategy,
    expected_history,
    read_report,
)
from ._record import record
from ._servers import (
    migrate_store,
    postgres_url,  # noqa: F401  (fixture)
    reliability_seed,
    sqlite_integrity,
    store_label,
)

KILLS = int(os.environ.get("THREADLINE_CRASH_KILLS", "30"))
STEPS = 24


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer() as started:
        yield started


@pytest.fixture(params=["sqlite", "postgres", "fsspec"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'graph.db'}"
    if request.param == "fsspec":
        return f"file://{tmp_path / 'checkpoints'}"
    database: str = request.getfixturevalue("postgres_url")
    return f"{database}?schema=crash_ckpt_{secrets.token_hex(3)}&max_size=2"


@attrs.define
class Tally:
    kills: int = 0
    sessions: int = 0
    checkpoints: int = 0
    acknowledged: int = 0
    resumed: int = 0
    missed: int = 0
    """Runs that ended before their kill."""
    lost: int = 0
    problems: list[str] = attrs.Factory(list)


def step_of(checkpoint: Checkpoint) -> int:
    """How many steps a checkpoint's run had done (its ``count`` state)."""
    value = checkpoint.state.get("count")
    return value if isinstance(value, int) else -1


def check_checkpoints(
    checkpoints: list[Checkpoint], latest: Checkpoint | None, where: str, tally: Tally
) -> None:
    """A session's checkpoints, oldest first, against what the nodes produce."""
    problems = tally.problems
    versions = [c.version for c in checkpoints]
    if any(v is None for v in versions) or versions != sorted(set(versions), key=lambda v: v or 0):
        problems.append(f"{where}: versions not unique and increasing: {versions}")
    if checkpoints and (latest is None or latest.id != checkpoints[-1].id):
        shown = None if latest is None else (latest.version, latest.id)
        problems.append(
            f"{where}: get_latest_checkpoint gave {shown}, list ends at v{versions[-1]}"
        )
    previous: Checkpoint | None = None
    for c in checkpoints:
        label = f"{where}: v{c.version}"
        k = step_of(c)
        kind = c.properties.get("kind")
        if c.tombstone:
            if kind != "tombstone" or c.node_id is not None or k != STEPS:
                problems.append(f"{label}: bad tombstone ({kind}, {c.node_id}, count {k})")
        else:
            expected_node = FINISH if k == STEPS else "step"
            if kind != "auto" or c.node_id != expected_node or c.input != k or not 1 <= k <= STEPS:
                problems.append(
                    f"{label}: expected an auto checkpoint at {expected_node}({k}), got "
                    f"{kind} at {c.node_id}({c.input!r})"
                )
            if c.properties.get("after") != "step":
                problems.append(f"{label}: 'after' is {c.properties.get('after')!r}")
        if c.state != {"count": k, "sum": k * (k + 1) // 2}:
            problems.append(f"{label}: state {c.state} is not that of step {k}")
        history = [(m.role, m.content) for m in c.history]
        if history != expected_history(k):
            problems.append(f"{label}: history of {len(history)} messages is not step {k}'s")
        if any(m.status != "complete" for m in c.history):
            problems.append(f"{label}: history holds a message that is not complete")
        if previous is None or previous.tombstone:
            if c.parent_id is not None or k != 1:
                problems.append(f"{label}: a fresh run should start at step 1 with no parent")
        elif c.parent_id != previous.id:
            problems.append(f"{label}: parent {c.parent_id} is not v{previous.version}")
        elif k != (STEPS if c.tombstone else step_of(previous) + 1):
            problems.append(f"{label}: step {k} follows step {step_of(previous)}")
        previous = c


async def read_session(
    url: str, tenant_id: str, session_id: str
) -> tuple[list[Checkpoint] | Exception, Checkpoint | None]:
    """(checkpoints, latest) with a fresh store object; an exception is returned, not raised."""
    store = await threadline.connect(url)
    try:
        checkpoints = await store.list_checkpoints(tenant_id, session_id=session_id)
        latest = await store.get_latest_checkpoint(tenant_id, session_id)
        return checkpoints, latest
    except Exception as exc:
        return exc, None
    finally:
        await store.close()


async def rerun(url: str, tenant_id: str, session_id: str) -> tuple[int, list[int]]:
    """Run the session to its end in this process; return (result, inputs of the steps run)."""
    executed: list[int] = []
    store = await threadline.connect(url)
    agent = GraphAgent(
        counting_strategy(STEPS, executed.append),
        provider="echo",
        system_prompt=GRAPH_SYSTEM_PROMPT,
        tenant_id=tenant_id,
        features=[Persistency(storage=store, automatic=True)],
    )
    try:
        result = await asyncio.wait_for(agent.run(0, session_id=session_id), 60)
    finally:
        await agent.close()
        await store.close()
    return int(result), executed


def test_sigkill_mid_checkpoint_resumes_from_a_whole_checkpoint(
    store_url: str, forks: ForkServer, tmp_path: Path
) -> None:
    kind = store_label(store_url)
    seed = reliability_seed()
    rng = random.Random(f"{seed}:checkpoint:{kind}")
    tenant_id = new_id()
    sqlite_path = Path(store_url.removeprefix("sqlite:///")) if kind == "sqlite" else None
    tally = Tally()
    runs = 0

    def child(
        session_id: str, kill_after: float | None, after_checkpoints: int | None = None
    ) -> tuple[ChildRun, list[dict[str, Any]]]:
        """Run the graph in a child; kill it ``kill_after`` s after the fork, or after it
        reported "ready" and then ``after_checkpoints`` acknowledged checkpoints."""
        nonlocal runs
        runs += 1
        args: dict[str, Any] = {
            "url": store_url,
            "tenant_id": tenant_id,
            "session_id": session_id,
            "steps": STEPS,
        }
        report, log = tmp_path / f"run{runs}.jsonl", tmp_path / f"run{runs}.log"
        after = "checkpoint" if after_checkpoints else "ready"
        run = forks.run(
            "graph",
            args,
            report=report,
            log=log,
            kill_after=kill_after,
            after_event=None if after_checkpoints is None else after,
            after_count=after_checkpoints or 1,
        )
        if run.status not in (0, -9):
            pytest.fail(f"child run {runs} failed ({run.status}):\n{log.read_text()}")
        return run, read_report(report)

    def inspect(
        session_id: str, acked: dict[str, int | None], where: str
    ) -> tuple[Checkpoint | None, int]:
        """Check the session's checkpoints; return the latest and how many there are."""
        found, latest = asyncio.run(read_session(store_url, tenant_id, session_id))
        if isinstance(found, Exception):
            tally.problems.append(f"{where}: reading the checkpoints failed: {found!r}")
            return None, 0
        checkpoints: list[Checkpoint] = found
        check_checkpoints(checkpoints, latest, where, tally)
        stored = {c.id: c.version for c in checkpoints}
        for cid, version in acked.items():
            if stored.get(cid, -1) != version:
                tally.lost += 1
                tally.problems.append(f"{where}: acknowledged checkpoint v{version} is gone")
        if sqlite_path is not None:
            verdict = sqlite_integrity(sqlite_path)
            if verdict != "ok":
                tally.problems.append(f"{where}: integrity_check: {verdict}")
        return latest, len(checkpoints)

    # Migrate first, so that the calibration run measures an ordinary start.
    asyncio.run(migrate_store(store_url))
    # One uninterrupted run: it must finish, and its duration scales the kill times.
    calibration_id = new_id()
    calibration, events = child(calibration_id, None)
    assert calibration.status == 0
    assert (events[-1]["e"], events[-1].get("result")) == ("done", STEPS)
    # kills are timed by this run: a child that imports on its own clock would be late
    assert events[-1]["imported"] == [], f"the child imported {events[-1]['imported']}"
    ready = next(float(e["t"]) for e in events if e["e"] == "ready")
    startup = ready - calibration.started  # fork, connect, build the agent
    duration = float(events[-1]["t"]) - ready  # the run itself
    acks = [ready] + [float(e["t"]) for e in events if e["e"] == "checkpoint"]
    step = statistics.median(b - a for a, b in itertools.pairwise(acks))  # a step and its write
    acked = {e["id"]: e["version"] for e in events if e["e"] == "checkpoint"}
    inspect(calibration_id, acked, "the calibration run")
    assert not tally.problems, tally.problems

    attempts = 0
    while tally.kills < KILLS and attempts < 4 * KILLS and len(tally.problems) < 20:
        session_id = new_id()
        tally.sessions += 1
        acked = {}
        latest: Checkpoint | None = None
        for _ in range(rng.randint(1, 3)):
            attempts += 1
            done = 0 if latest is None or latest.tombstone else step_of(latest)
            if done >= STEPS:
                break
            if rng.random() < 0.1:  # while it connects and reads the checkpoint to resume
                run, events = child(session_id, rng.uniform(0.0, startup + 0.1 * duration))
            else:  # while it runs: within a random step, timed by the child's acknowledgements
                run, events = child(session_id, rng.uniform(0.0, step), rng.randrange(STEPS - done))
            acked.update({e["id"]: e["version"] for e in events if e["e"] == "checkpoint"})
            where = f"session {tally.sessions}, run {runs}"
            if run.killed:
                tally.kills += 1
                where += f" (kill {tally.kills})"
            latest, _ = inspect(session_id, acked, where)
            if not run.killed:
                tally.missed += 1
                break  # the run finished before the kill
        tally.acknowledged += len(acked)
        # The rerun: resumes from the latest checkpoint and finishes.
        if latest is not None and latest.tombstone:
            start = None  # the run had finished: nothing to resume
        else:
            start = 0 if latest is None else step_of(latest)
        if start is not None:
            result, executed = asyncio.run(rerun(store_url, tenant_id, session_id))
            tally.resumed += start > 0
            if result != STEPS or executed != list(range(start, STEPS)):
                tally.problems.append(
                    f"session {tally.sessions}: the rerun from step {start} returned {result} "
                    f"after running steps {executed}"
                )
        final, count = inspect(session_id, acked, f"session {tally.sessions} after the rerun")
        tally.checkpoints += count
        if final is None or not final.tombstone:
            tally.problems.append(f"session {tally.sessions}: no tombstone after the rerun")

    leftovers = ""
    if kind == "fsspec-file":
        temps = list((tmp_path / "checkpoints").rglob(".tmp-*"))
        leftovers = f"; {len(temps)} temporary files left behind by killed writes"
    print(f"{kind}: {tally} (start {startup:.3f} s, run {duration:.3f} s){leftovers}")
    record(
        "crash mid-checkpoint",
        store=kind,
        what=(
            "SIGKILL a graph agent writing automatic checkpoints (1-3 kills per session); "
            "check every checkpoint, rerun to the end"
        ),
        faults=tally.kills,
        operations=tally.checkpoints,
        lost=tally.lost,
        seed=seed,
        notes=(
            f"{tally.sessions} sessions of {STEPS} steps; {tally.acknowledged} checkpoints "
            f"acknowledged before kills; {tally.resumed} reruns resumed mid-run; "
            f"{tally.missed} runs ended before their kill; "
            f"problems: {len(tally.problems)}{leftovers}"
        ),
    )
    assert tally.kills >= KILLS, f"only {tally.kills} kills landed in {attempts} runs"
    assert not tally.problems, "\n".join(tally.problems)
