"""Eight processes write to one session at once: nothing lost, no seq or version twice.

Each store (SQLite file, PostgreSQL, fsspec on a local folder) gets 8 real processes,
released together by :func:`threadline.testing.processes.run_together`:

* 8 x 250 appends, single and batched: exactly 2,000 messages with seqs 1..2000, each
  acknowledged id present once with the seq it was acknowledged with, every batch on
  consecutive seqs. The fsspec store may refuse an append with a clear
  ``StoreUnavailableError`` when the session's lock stays busy past ``lock_timeout``:
  such appends are counted, must be absent, and everything acknowledged is there
  (``fsspec-busy`` sets a 50 ms lock timeout so that most writers are refused).
* 8 x 25 checkpoints with parent chains (every fifth one branching off the newest
  checkpoint another process wrote): versions unique and gapless, and every
  acknowledged checkpoint reads back whole (history, state, input, parent, version)
  through ``get_checkpoint`` and ``list_checkpoints``.
* 8 processes saving the same 40 messages and 6 checkpoints (a retry storm): each
  stored once, and every process told the seq or version that was stored.
* 16 asyncio tasks of one process on two store objects of the same URL: appends and
  checkpoint chains, all there once, gapless.

PostgreSQL runs in a database created for this module and dropped afterwards
(``_servers.postgres_url``); when the server is not reachable its cases skip, or fail
when ``CI`` is set. The order of singles and batches comes from the run's seed
(``THREADLINE_RELIABILITY_SEED`` replays one).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import threadline
from threadline import Checkpoint, Message, Session
from threadline.ids import new_id
from threadline.testing.processes import run_together

from ._record import record
from ._servers import (
    postgres_url,  # noqa: F401  (fixture)
    reliability_seed,
)

PROCESSES = 8
APPENDS = 250
CHECKPOINTS = 25
FSSPEC_LOCK_TIMEOUT = 10.0
FSSPEC_BUSY_LOCK_TIMEOUT = 0.05  # "fsspec-busy": most writers give up on the lock
CHILD = Path(__file__).with_name("_concurrency_child.py")

pytestmark = pytest.mark.slow


# -- stores ------------------------------------------------------------------------------


STORES = ["sqlite", "postgres", "fsspec"]


@dataclass(frozen=True)
class Target:
    kind: str
    url: str


@pytest.fixture(params=STORES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """An empty store of each kind, by URL (PostgreSQL: a schema of its own).

    ``fsspec-busy`` is the fsspec store with a lock timeout so short that most writers
    are refused: the refusals must be clear and must leave nothing behind. The fsspec
    stores skip ``fsync`` (what is tested here is locking and exclusive creates, not
    power-loss durability, which the crash tests cover): it keeps 2,000 appends within
    seconds on a busy machine.
    """
    kind: str = request.param
    folder = tmp_path / "store"
    if kind == "sqlite":
        return Target(kind, f"sqlite:///{tmp_path / 'chat.db'}")
    if kind == "fsspec":
        return Target(kind, f"file://{folder}?fsync=false&lock_timeout={FSSPEC_LOCK_TIMEOUT:g}")
    if kind == "fsspec-busy":
        timeout = FSSPEC_BUSY_LOCK_TIMEOUT
        return Target(kind, f"file://{folder}?fsync=false&lock_timeout={timeout:g}")
    database: str = request.getfixturevalue("postgres_url")
    return Target(kind, f"{database}?schema=cw_{secrets.token_hex(4)}&min_size=1&max_size=2")


async def _new_session(url: str) -> Session:
    store = await threadline.connect(url)  # migrates once, before the children start
    try:
        return await store.create_session(Session(tenant_id=new_id(), title="eight writers"))
    finally:
        await store.close()


def _run_children(
    target: Target, tmp_path: Path, commands: list[list[str]]
) -> list[dict[str, Any]]:
    """Run the children released together; each loads only its store's plugin (faster)."""
    plugin = "threadline-" + target.kind.partition("-")[0]
    env = {**os.environ, "THREADLINE_LOAD_PLUGINS": plugin}
    results: list[dict[str, Any]] = run_together(
        CHILD, tmp_path / "go", commands, env=env, timeout=120
    )
    return results


def _check_errors(kind: str, errors: list[str], *, busy_refuses: bool = False) -> None:
    """Only fsspec may refuse a write (its lock stayed busy), and only with a clear reason.

    ``busy_refuses``: ``fsspec-busy`` must have refused something (the 2,000 appends
    always contend enough; the checkpoint writers, slowed by their reads, may not).
    """
    if not kind.startswith("fsspec"):
        assert errors == [], f"{kind} refused writes under contention: {errors[:3]}"
    if kind == "fsspec-busy" and busy_refuses:
        assert errors, "the short lock timeout refused nothing: the refusal path went untested"
    for text in errors:
        clear = "waiting for the lock" in text or "has held the lock" in text
        assert clear, f"unclear refusal: {text}"


# -- appends -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", [*STORES, "fsspec-busy"], indirect=True)
async def test_eight_processes_append_to_one_session(target: Target, tmp_path: Path) -> None:
    kind, store_url = target.kind, target.url
    seed = reliability_seed()
    session = await _new_session(store_url)
    commands = [
        ["append", store_url, str(tmp_path / "go"), f"p{n}", session.tenant_id, session.id,
         str(APPENDS), str(seed + n)]
        for n in range(PROCESSES)
    ]  # fmt: skip
    started = time.monotonic()
    results = await asyncio.to_thread(_run_children, target, tmp_path, commands)
    elapsed = time.monotonic() - started

    acked: dict[str, int] = {}
    writer: dict[str, int] = {}
    failed: set[str] = set()
    errors: list[str] = []
    for n, result in enumerate(results):
        seqs = [seq for _, seq, _ in result["acked"]]
        assert seqs == sorted(seqs), "one process's appends came back out of order"
        by_call: dict[int, list[int]] = {}
        for message_id, seq, call in result["acked"]:
            assert message_id not in acked
            acked[message_id] = seq
            writer[message_id] = n
            by_call.setdefault(call, []).append(seq)
        for call_seqs in by_call.values():  # a batch is stored whole, on consecutive seqs
            assert call_seqs == list(range(call_seqs[0], call_seqs[0] + len(call_seqs)))
        failed.update(result["failed"])
        errors.extend(result["errors"])
    assert len(acked) + len(failed) == PROCESSES * APPENDS

    store = await threadline.connect(store_url, migrate=False)
    try:
        stored = await store.get_messages(session.tenant_id, session.id)
        counted = await store.count_messages(session.tenant_id, session.id)
    finally:
        await store.close()
    ids = [m.id for m in stored]
    seq_of = {m.id: m.seq for m in stored}
    lost = [i for i in acked if i not in seq_of]
    duplicated = len(ids) - len(set(ids))
    order = [writer.get(i) for i in ids]  # which process holds each seq, in seq order
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    record(
        "concurrent_writers.appends",
        store=kind,
        what=f"{PROCESSES} processes x {APPENDS} appends (singles and batches) to one session",
        faults=PROCESSES,
        operations=PROCESSES * APPENDS,
        lost=len(lost) + duplicated,
        seed=seed,
        notes=f"{len(failed)} appends refused with StoreUnavailableError ({len(errors)} calls); "
        f"{len(stored)} stored; writer changed {switches} times along the seqs; {elapsed:.1f} s",
    )
    _check_errors(kind, errors, busy_refuses=True)
    assert lost == [], f"{len(lost)} acknowledged appends are missing"
    assert duplicated == 0
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))  # no gap, no twin
    assert {i: seq_of[i] for i in acked} == acked  # each where it was acknowledged
    assert set(ids) == set(acked)  # a refused append left nothing behind
    assert not failed & set(ids)
    assert counted == len(stored)
    if not kind.startswith("fsspec"):
        assert len(stored) == PROCESSES * APPENDS
    assert switches >= PROCESSES, "the processes' writes did not overlap: not a concurrency test"


# -- checkpoints -------------------------------------------------------------------------


def _normal(data: dict[str, Any]) -> dict[str, Any]:
    normal: dict[str, Any] = json.loads(json.dumps(data))
    return normal


@pytest.mark.parametrize("target", [*STORES, "fsspec-busy"], indirect=True)
async def test_eight_processes_checkpoint_one_session(target: Target, tmp_path: Path) -> None:
    kind, store_url = target.kind, target.url
    session = await _new_session(store_url)
    t, s = session.tenant_id, session.id
    store = await threadline.connect(store_url, migrate=False)
    try:
        root = await store.create_checkpoint(
            Checkpoint(
                tenant_id=t,
                session_id=s,
                node_id="start",
                history=(
                    Message(session_id=s, tenant_id=t, role="system", content="be brief"),
                    Message(session_id=s, tenant_id=t, role="user", content="hello"),
                ),
            )
        )
    finally:
        await store.close()
    commands = [
        ["checkpoint", store_url, str(tmp_path / "go"), f"p{n}", t, s, str(CHECKPOINTS), root.id]
        for n in range(PROCESSES)
    ]
    started = time.monotonic()
    results = await asyncio.to_thread(_run_children, target, tmp_path, commands)
    elapsed = time.monotonic() - started

    acked: dict[str, dict[str, Any]] = {root.id: _normal(root.to_dict())}
    writer: dict[str, int] = {root.id: -1}
    failed: set[str] = set()
    errors: list[str] = []
    for n, result in enumerate(results):
        for data in result["acked"]:
            assert data["id"] not in acked
            acked[data["id"]] = data
            writer[data["id"]] = n
        failed.update(result["failed"])
        errors.extend(result["errors"])
    assert len(acked) - 1 + len(failed) == PROCESSES * CHECKPOINTS
    versions = [data["version"] for data in acked.values()]
    # checkpoints whose parent another process wrote (the root aside): deltas on a
    # parent this process never had in its cache
    foreign = sum(
        1
        for i, data in acked.items()
        if data["parent_id"] not in (None, root.id) and writer[data["parent_id"]] != writer[i]
    )

    store = await threadline.connect(store_url, migrate=False)
    try:
        read = {i: await store.get_checkpoint(t, i) for i in acked}
        listed = await store.list_checkpoints(t, session_id=s)
        latest = await store.get_latest_checkpoint(t, s)
    finally:
        await store.close()
    lost = [i for i, got in read.items() if got is None]
    damaged = [
        i for i, got in read.items() if got is not None and _normal(got.to_dict()) != acked[i]
    ]
    record(
        "concurrent_writers.checkpoints",
        store=kind,
        what=f"{PROCESSES} processes x {CHECKPOINTS} checkpoints (parent chains) on one session",
        faults=PROCESSES,
        operations=PROCESSES * CHECKPOINTS,
        lost=len(lost) + len(damaged),
        notes=f"{len(failed)} refused with StoreUnavailableError; {len(listed)} listed; "
        f"{len(versions) - len(set(versions))} version collisions; "
        f"{foreign} on another process's parent; {elapsed:.1f} s",
    )
    _check_errors(kind, errors)
    assert lost == [], f"{len(lost)} acknowledged checkpoints are missing"
    assert damaged == [], f"{len(damaged)} checkpoints read back different, e.g. {damaged[0]}"
    assert len(set(versions)) == len(versions), "two checkpoints got the same version"
    assert sorted(versions) == list(range(1, len(versions) + 1))
    assert [c.version for c in listed] == sorted(versions)
    assert {c.id: _normal(c.to_dict()) for c in listed} == acked  # nothing else, all whole
    assert latest is not None and latest.version == len(versions)
    assert not failed & {c.id for c in listed}
    assert foreign > 0, "no checkpoint built on another process's: not a concurrency test"


# -- the same writes from every process ----------------------------------------------------

SHARED_MESSAGES = 40
SHARED_CHECKPOINTS = 6


async def test_eight_processes_retry_the_same_writes(target: Target, tmp_path: Path) -> None:
    """Every process saves the same 40 messages and 6 checkpoints (a retry storm): once each."""
    kind, store_url = target.kind, target.url
    seed = reliability_seed()
    session = await _new_session(store_url)
    t, s = session.tenant_id, session.id
    messages = [
        Message(session_id=s, tenant_id=t, role="user" if i % 2 == 0 else "assistant",
                content=f"shared {i}", metadata={"i": i})
        for i in range(SHARED_MESSAGES)
    ]  # fmt: skip
    checkpoints: list[Checkpoint] = []
    for k in range(SHARED_CHECKPOINTS):
        checkpoints.append(
            Checkpoint(
                tenant_id=t,
                session_id=s,
                node_id=f"shared-{k}",
                history=tuple(messages[: 2 * (k + 1)]),
                state={"k": k},
                parent_id=checkpoints[-1].id if checkpoints else None,
            )
        )
    shared = tmp_path / "shared.json"
    shared.write_text(
        json.dumps(
            {
                "messages": [m.to_dict() for m in messages],
                "checkpoints": [c.to_dict() for c in checkpoints],
            }
        ),
        encoding="utf-8",
    )
    commands = [
        ["resave", store_url, str(tmp_path / "go"), f"p{n}", t, s, str(shared), str(seed + n)]
        for n in range(PROCESSES)
    ]
    started = time.monotonic()
    results = await asyncio.to_thread(_run_children, target, tmp_path, commands)
    elapsed = time.monotonic() - started

    store = await threadline.connect(store_url, migrate=False)
    try:
        stored = await store.get_messages(t, s)
        listed = await store.list_checkpoints(t, session_id=s)
    finally:
        await store.close()
    seq_of = {m.id: m.seq for m in stored}
    version_of = {c.id: c.version or 0 for c in listed}
    disagreements = [
        (i, seq) for r in results for i, seq in r["messages"] if seq_of.get(i) != seq
    ] + [(i, v) for r in results for i, v in r["checkpoints"] if version_of.get(i) != v]
    record(
        "concurrent_writers.same_ids",
        store=kind,
        what=f"{PROCESSES} processes save the same {SHARED_MESSAGES} messages and "
        f"{SHARED_CHECKPOINTS} checkpoints at once",
        faults=PROCESSES,
        operations=PROCESSES * (SHARED_MESSAGES + SHARED_CHECKPOINTS),
        lost=len({m.id for m in messages} - set(seq_of))
        + len({c.id for c in checkpoints} - set(version_of)),
        seed=seed,
        notes=f"{len(stored)} messages and {len(listed)} checkpoints stored; "
        f"{len(disagreements)} acknowledgements disagree with the store; {elapsed:.1f} s",
    )
    assert sorted(m.id for m in stored) == sorted(m.id for m in messages)  # once each
    assert [m.seq for m in stored] == list(range(1, SHARED_MESSAGES + 1))
    assert [c.id for c in sorted(listed, key=lambda c: c.id)] == sorted(c.id for c in checkpoints)
    assert sorted(version_of.values()) == list(range(1, SHARED_CHECKPOINTS + 1))
    assert disagreements == [], "a process was told another seq or version than was stored"
    for c in listed:
        wanted = next(w for w in checkpoints if w.id == c.id)
        assert c.history == wanted.history and c.parent_id == wanted.parent_id


# -- tasks in one process ----------------------------------------------------------------

TASKS = 16
TASK_APPENDS = 100
TASK_CHECKPOINTS = 25


async def test_sixteen_tasks_on_two_store_objects(target: Target) -> None:
    """16 asyncio tasks of one process, half on each of two store objects (same URL).

    Twelve append (singles and batches), four build checkpoint chains; then every
    acknowledged write is there once, seqs and versions gapless.
    """
    kind, url = target.kind, target.url
    seed = reliability_seed()
    rng = random.Random(seed)
    session = await _new_session(url)
    t, s = session.tenant_id, session.id
    stores = [await threadline.connect(url, migrate=False) for _ in range(2)]
    acked: dict[str, int] = {}
    checkpoints: dict[str, Checkpoint] = {}
    started = time.monotonic()

    async def appender(n: int) -> None:
        store = stores[n % 2]
        i = 0
        while i < TASK_APPENDS:
            size = min(1 if rng.random() < 0.6 else rng.randint(2, 6), TASK_APPENDS - i)
            batch = [
                Message(session_id=s, tenant_id=t, role="user", content=f"t{n}-{i + k}")
                for k in range(size)
            ]
            i += size
            got = [await store.save_message(batch[0])] if size == 1 else (
                await store.save_messages(batch))  # fmt: skip
            seqs = [m.seq or 0 for m in got]
            assert seqs == list(range(seqs[0], seqs[0] + size)), "a batch was split"
            acked.update((m.id, m.seq or 0) for m in got)

    async def checkpointer(n: int) -> None:
        store = stores[n % 2]
        parent: Checkpoint | None = None
        for i in range(TASK_CHECKPOINTS):
            history = (
                *(parent.history if parent else ()),
                Message(session_id=s, tenant_id=t, role="user", content=f"c{n}-{i}"),
            )
            parent = await store.create_checkpoint(
                Checkpoint(tenant_id=t, session_id=s, node_id=f"c{n}-{i}", history=history,
                           state={"i": i}, parent_id=parent.id if parent else None)
            )  # fmt: skip
            checkpoints[parent.id] = parent

    try:
        await asyncio.wait_for(
            asyncio.gather(*(appender(n) for n in range(TASKS - 4)),
                           *(checkpointer(n) for n in range(4))),
            120,
        )  # fmt: skip
        stored = await stores[0].get_messages(t, s)
        listed = await stores[1].list_checkpoints(t, session_id=s)
    finally:
        for store in stores:
            await store.close()
    seq_of = {m.id: m.seq for m in stored}
    by_id = {c.id: c for c in listed}
    lost = [i for i, seq in acked.items() if seq_of.get(i) != seq]
    lost += [i for i, c in checkpoints.items() if by_id.get(i) != c]
    record(
        "concurrent_writers.tasks",
        store=kind,
        what=f"{TASKS} asyncio tasks on two store objects of one process: "
        f"{(TASKS - 4) * TASK_APPENDS} appends and {4 * TASK_CHECKPOINTS} checkpoints",
        faults=TASKS,
        operations=len(acked) + len(checkpoints),
        lost=len(lost),
        seed=seed,
        notes=f"{len(stored)} messages, {len(listed)} checkpoints; "
        f"{time.monotonic() - started:.1f} s",
    )
    assert lost == []
    assert len(stored) == (TASKS - 4) * TASK_APPENDS == len(acked)
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    assert [c.version for c in listed] == list(range(1, 4 * TASK_CHECKPOINTS + 1))
