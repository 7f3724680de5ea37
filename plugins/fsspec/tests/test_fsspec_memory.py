"""fsspec's memory file system: listings, exclusive creates and removals that cost the same
whatever else the file system holds, and agree with fsspec's own answers.

``MemoryFileSystem`` answers ``ls``/``exists`` by scanning every file in the process, so the
backend lists, creates and removes through its dict and a shared folder index instead
(:class:`threadline_fsspec.backends.MemoryIndex`).
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import fsspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import threadline
from threadline import ApiCall, Checkpoint, Message, Session
from threadline.ids import new_id
from threadline_fsspec import FsspecStore
from threadline_fsspec.backends import FsspecBackend

FOLDERS = ["t", "t/a", "t/ab", "t/a/b", "t/ab/b"]
FILES = [f"{folder}/{name}" for folder in FOLDERS[1:] for name in ("1.json", "2.json", ".h")]


def private_fs() -> Any:
    """A memory file system with its own dict (not the process-wide one)."""
    return fsspec.filesystem("memory", global_store=False, skip_instance_cache=True)


def truth(fs: Any, root: str, folder: str) -> list[str]:
    """What fsspec itself lists in ``folder`` (hidden names left out, as the backend does)."""
    try:
        entries = fs.ls(f"{root}/{folder}", detail=False)
    except FileNotFoundError:
        return []
    return sorted(n for n in (e.rsplit("/", 1)[-1] for e in entries) if not n.startswith("."))


ops = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["write", "create", "delete"]),
            st.integers(0, 1),
            st.sampled_from(FILES),
        ),
        st.tuples(st.just("rmtree"), st.integers(0, 1), st.sampled_from(FOLDERS)),
        st.tuples(
            st.sampled_from(["their write", "their delete"]), st.just(0), st.sampled_from(FILES)
        ),
        st.tuples(st.just("their rmtree"), st.just(0), st.sampled_from(FOLDERS)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_listings_agree_with_fsspec_whoever_changes_the_files(
    plan: list[tuple[str, int, str]],
) -> None:
    """Two backends on the process-wide dict (through two file system objects) and other
    code's fsspec calls: every listing is what fsspec's own ``ls`` says, creates are
    exclusive, a folder's removal spares its sibling with a longer name (``a``, ``ab``)."""
    root = f"/tl-index-{new_id()}"
    fs = fsspec.filesystem("memory")
    other = fsspec.filesystem("memory", skip_instance_cache=True)
    backends = [FsspecBackend(fs, root), FsspecBackend(other, root)]
    assert backends[0].memory is backends[1].memory is not None
    # Other code's changes are noticed by the next operation of a backend, as long as it
    # does not add and remove as many files before it (see MemoryIndex): an operation
    # first, in case the previous example's files were removed by other code.
    assert backends[0].listdir("t") == []
    try:
        for step, (op, which, path) in enumerate(plan):
            backend, target = backends[which], f"{root}/{path}"
            existed = fs.isfile(target)
            data = f"{step}".encode()
            if op == "write":
                backend.write(path, data)
            elif op == "create":
                assert backend.create(path, data) is not existed, (step, path)
            elif op == "delete":
                backend.delete(path)
            elif op == "rmtree":
                backend.rmtree(path)
            elif op == "their write":
                fs.pipe_file(target, data)
            elif op == "their delete" and existed:
                fs.rm_file(target)
            elif op == "their rmtree" and fs.exists(target):
                fs.rm(target, recursive=True)
            if op in ("write", "create", "their write") and not (op == "create" and existed):
                assert backends[1 - which].read(path) == data
            for folder in FOLDERS:
                expected = truth(fs, root, folder)
                assert backends[0].listdir(folder) == expected, (step, op, path, folder)
                assert backends[1].listdir(folder) == expected, (step, op, path, folder)
    finally:
        backends[0].rmtree("t")
        assert not fs.find(root)


def test_a_file_other_code_made_unseen_is_listed_once_a_create_meets_it() -> None:
    """Other code adds a file to the store's folder and removes one elsewhere, with no
    operation of the backend between (the one change :class:`MemoryIndex` cannot see by
    the size): the exclusive create that meets the file lists it from then on, so a
    writer taking the next free number never retries the same one forever."""
    fs = private_fs()
    backend = FsspecBackend(fs, "/store")
    fs.pipe_file("/elsewhere/old.bin", b"x")
    backend.write("calls/000000000001.json", b"1")
    assert backend.listdir("calls") == ["000000000001.json"]
    fs.pipe_file("/store/calls/000000000002.json", b"theirs")
    fs.rm_file("/elsewhere/old.bin")
    assert backend.listdir("calls") == ["000000000001.json"]  # not seen yet
    assert backend.create("calls/000000000002.json", b"mine") is False
    assert backend.listdir("calls") == ["000000000001.json", "000000000002.json"]
    assert backend.read("calls/000000000002.json") == b"theirs"


def test_one_create_wins_among_threads_and_backends(memory_name: str) -> None:
    """Eight threads on two backends (two file system objects, one dict) race to create
    the same files: each file has exactly one winner, and holds the winner's bytes."""
    root = f"/{memory_name}"
    backends = [
        FsspecBackend(fsspec.filesystem("memory"), root),
        FsspecBackend(fsspec.filesystem("memory", skip_instance_cache=True), root),
    ]
    paths = [f"f/{i:03d}.json" for i in range(200)]
    wins: dict[str, list[bytes]] = {p: [] for p in paths}
    go = threading.Barrier(8)

    def racer(n: int) -> None:
        backend, mine = backends[n % 2], f"racer {n}".encode()
        go.wait()
        for path in paths:
            if backend.create(path, mine):
                wins[path].append(mine)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for path in paths:
        assert len(wins[path]) == 1, path
        assert backends[0].read(path) == backends[1].read(path) == wins[path][0]
    assert backends[1].listdir("f") == sorted(p.rsplit("/", 1)[-1] for p in paths)


def fill(fs: Any, files: int) -> None:
    """``files`` files of other code in the file system, outside the store's folder."""
    for i in range(files):
        fs.pipe_file(f"/elsewhere/{i % 100}/{i}.bin", b"x")


def median_seconds(op: Callable[[], object], runs: int = 25) -> float:
    op()  # warm up (a first listing after other code's changes rebuilds the index)
    samples = []
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter()
            op()
            samples.append(time.perf_counter() - started)
    finally:
        gc.enable()
    return statistics.median(samples)


def slower(before: dict[str, float], after: dict[str, float]) -> dict[str, str]:
    """Operations over 5 times slower after the file system grew (below 20 us is noise)."""
    return {
        k: f"{before[k] * 1e6:.0f}us, then {after[k] * 1e6:.0f}us"
        for k in before
        if after[k] > 5 * max(before[k], 20e-6)
    }


def test_file_operations_cost_the_same_among_50000_other_files() -> None:
    """A scan of 50,000 files takes milliseconds; each operation here takes microseconds."""
    fs = private_fs()
    backend = FsspecBackend(fs, "/store")
    counter = iter(range(10**9))
    for i in range(5):
        backend.write(f"small/{i}.json", b"{}")

    def create() -> None:
        assert backend.create(f"new/{next(counter)}.json", b"{}")

    operations: dict[str, Callable[[], object]] = {
        "create": create,
        "create (taken)": lambda: backend.create("small/0.json", b"{}"),
        "write": lambda: backend.write("small/1.json", b"{}"),
        "read": lambda: backend.read("small/2.json"),
        "listdir": lambda: backend.listdir("small"),
        "write + delete": lambda: (backend.write("gone.json", b"{}"), backend.delete("gone.json")),
        "rmtree": lambda: (backend.write("tree/a/1.json", b"{}"), backend.rmtree("tree")),
    }
    before = {k: median_seconds(op) for k, op in operations.items()}
    fill(fs, 50_000)
    after = {k: median_seconds(op) for k, op in operations.items()}
    assert not slower(before, after), slower(before, after)
    assert backend.listdir("small") == [f"{i}.json" for i in range(5)]
    assert len(backend.listdir("new")) == 2 * 26


async def median_seconds_async(op: Callable[[], Awaitable[object]], runs: int = 25) -> float:
    await op()  # warm up
    samples = []
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter()
            await op()
            samples.append(time.perf_counter() - started)
    finally:
        gc.enable()
    return statistics.median(samples)


async def test_store_id_writes_cost_the_same_among_50000_other_files() -> None:
    """The lookups the conformance kit times on a 10,000-message store (saving a message or
    an API call with a new id, the latest checkpoint), quick: 50,000 files of other code."""
    fs = private_fs()
    store = threadline.Store(FsspecStore.from_filesystem(fs, "/store"))
    await store.migrate()
    session = await store.create_session(Session(tenant_id=new_id()))
    t, s = session.tenant_id, session.id
    await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=s))
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "save_message(new id)": lambda: store.save_message(
            Message(tenant_id=t, session_id=s, role="user", content="x")
        ),
        "save_api_call(new id)": lambda: store.save_api_call(
            ApiCall(tenant_id=t, session_id=s, model="m", status="success")
        ),
        "get_latest_checkpoint": lambda: store.get_latest_checkpoint(t, s),
    }
    before = {k: await median_seconds_async(op) for k, op in operations.items()}
    fill(fs, 50_000)
    after = {k: await median_seconds_async(op) for k, op in operations.items()}
    assert not slower(before, after), slower(before, after)
    assert await store.count_messages(t, s) == 2 * 26
    assert len(await store.list_api_calls(t, s)) == 2 * 26
    await store.close()
