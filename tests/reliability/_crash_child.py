"""Processes to kill: a fork server that starts crash-test children in milliseconds.

Run as a script (``python tests/reliability/_crash_child.py``) this file is a *fork
server*: it imports threadline, every store plugin and the ``openai`` provider once,
loads the plugins, prints ``{"ready": ...}`` and then reads one JSON command per line on
stdin. For each command it forks a child that runs one job (:data:`JOBS`) in a fresh
``asyncio.run``, answers ``{"pid": n}`` at once and ``{"pid": n, "status": code}`` when
the child is gone (``-9`` after SIGKILL). The fork server never opens a store, a loop or
a thread, so every child starts clean; a child costs a fork instead of an interpreter
start and ~0.4 s of imports, which is what lets a test kill 30 processes per store in
seconds. Commands are handled one at a time.

A child reports what it had *acknowledged* (a token handed to the caller, a message or a
checkpoint the store confirmed) as JSON lines appended with ``os.write`` to a report
file: those bytes are in the kernel once the call returns, so a SIGKILL cannot take them
back. Its stdout/stderr go to a log file.

Imported (by the tests), it gives :class:`ForkServer`, the test side of that protocol,
and what both sides must agree on: the report format (:func:`read_report`), the graph
strategy the checkpoint test runs (:func:`counting_strategy`) and the history its nodes
produce (:func:`expected_history`).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import attrs

import threadline
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.models import Checkpoint, Message
from threadline.store import Store, open_plugin
from threadline.urls import StoreURL

__all__ = [
    "GRAPH_STRATEGY",
    "GRAPH_SYSTEM_PROMPT",
    "JOBS",
    "ChildRun",
    "ForkServer",
    "Reporter",
    "ReportingStore",
    "counting_strategy",
    "expected_history",
    "late_imports",
    "read_report",
]

GRAPH_STRATEGY = "crash-counter"
GRAPH_SYSTEM_PROMPT = "You count."

# -- reports --------------------------------------------------------------------------------


class Reporter:
    """Appends JSON lines to a file with one ``os.write`` each (kept by the kernel on a kill)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"e": event, "t": time.monotonic(), **fields}) + "\n"
        os.write(self._fd, line.encode())


def read_report(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of a report file; a line cut short by the kill (if any) is left out."""
    events: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return events
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


class ReportingStore(Store):
    """A :class:`threadline.Store` that reports every write the store acknowledged."""

    reporter: Reporter | None = None

    def _message(self, event: str, op: str, message: Message) -> None:
        if self.reporter is not None:
            self.reporter(
                event,
                op=op,
                id=message.id,
                role=message.role,
                status=message.status,
                n=len(message.content),
                seq=message.seq,
            )

    async def save_message(self, message: Message) -> Message:
        self._message("write", "save", message)
        stored = await super().save_message(message)
        self._message("ack", "save", stored)
        return stored

    async def update_message(self, message: Message) -> Message:
        self._message("write", "update", message)
        stored = await super().update_message(message)
        self._message("ack", "update", stored)
        return stored

    async def create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        stored = await super().create_checkpoint(checkpoint)
        if self.reporter is not None:
            self.reporter(
                "checkpoint",
                id=stored.id,
                version=stored.version,
                node=stored.node_id,
                input=stored.input,
                tombstone=stored.tombstone,
            )
        return stored


async def open_reporting_store(url: str, reporter: Reporter | None) -> ReportingStore:
    """``threadline.connect(url)``, as a :class:`ReportingStore`."""
    parsed = StoreURL.parse(url)
    store = ReportingStore(await open_plugin(parsed), url=parsed)
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    store.reporter = reporter
    return store


# -- the graph every checkpoint child runs --------------------------------------------------


def counting_strategy(steps: int, on_step: Callable[[int], None] | None = None) -> Strategy:
    """``step`` runs ``steps`` times: step k sets ``count=k``, ``sum=1+..+k`` and asks the
    model ``"step k"`` (the echo provider answers ``"Echo: step k"``); the run returns
    ``steps``. ``on_step(n)`` is called with each step's input."""
    strategy = Strategy(GRAPH_STRATEGY)

    @strategy.node("step")
    async def step(ctx: GraphContext, n: int) -> int:
        if on_step is not None:
            on_step(n)
        k = n + 1
        ctx.state["count"] = k
        ctx.state["sum"] = int(ctx.state.get("sum", 0)) + k
        await ctx.llm(f"step {k}")
        return k

    strategy.edge(strategy.start, step)
    strategy.edge(step, step, when=lambda k: k < steps)
    strategy.edge(step, strategy.finish)
    return strategy


def expected_history(k: int) -> list[tuple[str, str]]:
    """``(role, content)`` of the history after ``k`` steps."""
    history = [("system", GRAPH_SYSTEM_PROMPT)]
    for i in range(1, k + 1):
        history += [("user", f"step {i}"), ("assistant", f"Echo: step {i}")]
    return history


# -- jobs (run in a forked child) -----------------------------------------------------------


async def stream_job(args: dict[str, Any], report: Reporter) -> None:
    """One chat turn over the ``openai`` provider, every token reported as it arrives."""
    store = await open_reporting_store(args["url"], report)
    agent = await (
        threadline.AgentBuilder(args["system_prompt"])
        .with_store(store)
        .with_provider("openai", base_url=args["base_url"], max_retries=0)
        .with_model("reliability-model")
        .with_tenant_id(args["tenant_id"])
        .with_user_id(args["user_id"])
        .with_agent_id(args["agent_id"])
        .with_session_id(args["session_id"])
        .with_flush_interval(args["flush_interval"])
        .build()
    )
    report("ready", imported=late_imports())
    received = 0
    async for text in agent.chat_stream(args["prompt"]):
        received += len(text)
        report("recv", n=received)
    report("done", n=received, imported=late_imports())
    await agent.close()
    await store.close()


async def graph_job(args: dict[str, Any], report: Reporter) -> None:
    """Run (or resume) the counting strategy of a session, checkpoints reported."""
    store = await open_reporting_store(args["url"], report)
    agent = GraphAgent(
        counting_strategy(args["steps"]),
        provider="echo",
        system_prompt=GRAPH_SYSTEM_PROMPT,
        tenant_id=args["tenant_id"],
        features=[Persistency(storage=store, automatic=True)],
    )
    report("ready", imported=late_imports())
    result = await agent.run(0, session_id=args["session_id"])
    report("done", result=result, imported=late_imports())
    await agent.close()
    await store.close()


JOBS: dict[str, Callable[[dict[str, Any], Reporter], Coroutine[Any, Any, None]]] = {
    "stream": stream_job,
    "graph": graph_job,
}


# -- the fork server (this file run as a script) --------------------------------------------


PLUGIN_PACKAGES = (
    "threadline_memory",
    "threadline_sqlite",
    "threadline_postgres",
    "threadline_fsspec",
    "threadline_openai",
)
"""The plugins the suite loads (``conftest.py``): every module of each is imported."""
LAZY_IMPORTS = (
    "httpcore",
    "httpcore._backends.anyio",
    "anyio._backends._asyncio",
    "sniffio",
    "sqlite_utils",
    "encodings.utf_8_sig",
)
"""What is imported on first use, not by importing the plugins: httpx's transport and
decoder on the first request (200-400 ms of a child's turn, with the event loop blocked,
where no bytecode is cached, as in tox: ``PYTHONDONTWRITEBYTECODE``; ~100 ms with it),
SQLite's migrations."""

_preloaded: frozenset[str] = frozenset()
"""The modules the fork server imported: a child has them all (see :func:`late_imports`)."""


def late_imports() -> list[str]:
    """The modules this process imported after the fork server's preload (none in a child
    that only runs what was preloaded: a child that imports pays for it on its own clock,
    and a kill timed from another child's run lands somewhere else in its turn)."""
    if not _preloaded:
        return []
    return sorted(set(sys.modules) - _preloaded)


def _preload() -> None:
    """Import and register everything a job needs, so a forked child does no imports."""
    global _preloaded
    import importlib
    import pkgutil

    from threadline.plugins import provider_registry, store_registry

    def import_all(package: str) -> None:
        try:
            root = importlib.import_module(package)
        except ImportError:  # not installed here: tests that need it skip
            return
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not module.name.startswith(("threadline.cli", "threadline.testing")):
                try:
                    importlib.import_module(module.name)
                except ImportError:
                    pass

    # the runtime and the plugins import some modules on first use (compaction, editing,
    # live replies, a store's checkpoint or API call tables...), and so does httpx: a
    # child that imports them itself starts late, and a kill meant for mid-stream lands first
    for package in ("threadline", *PLUGIN_PACKAGES):
        import_all(package)
    for name in ("httpx", *LAZY_IMPORTS):
        try:
            importlib.import_module(name)
        except ImportError:
            pass

    store_registry()
    provider_registry()
    if threading.active_count() != 1:  # forking a process with threads is not safe
        raise RuntimeError(f"the fork server has {threading.active_count()} threads")
    _preloaded = frozenset(sys.modules)


def _child(command: dict[str, Any]) -> None:
    code = 1
    try:
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        job = JOBS[command["job"]]
        asyncio.run(job(command["args"], Reporter(command["report"])))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> int:
    """The fork server's loop (see the module docstring)."""
    _preload()
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("job") == "exit":
            break
        out.flush()
        pid = os.fork()
        if pid == 0:
            _child(command)  # never returns
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"pid": pid, "status": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()
    return 0


# -- the test side ----------------------------------------------------------------------------


@attrs.frozen
class ChildRun:
    """How one child ended."""

    pid: int
    status: int
    """Exit code; ``-9`` when it was killed with SIGKILL."""
    started: float
    """``time.monotonic()`` when the fork server reported the child's pid."""
    killed_at: float | None
    """``time.monotonic()`` just before SIGKILL was sent (``None``: not sent)."""
    ended: float
    """``time.monotonic()`` when the fork server reported the child gone."""

    @property
    def killed(self) -> bool:
        return self.status == -signal.SIGKILL


class ForkServer:
    """Starts :file:`_crash_child.py` as a fork server; :meth:`run` forks and maybe kills a job.

    ``with ForkServer() as forks: forks.run("stream", args, report=..., log=..., kill_after=0.3)``
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def __enter__(self) -> ForkServer:
        self._proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._pump, name="fork-server-reader", daemon=True).start()
        self._next("ready")
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write(json.dumps({"job": "exit"}) + "\n")
                proc.stdin.close()
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, key: str, timeout: float | None = None) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            raise TimeoutError(f"the fork server sent no {key!r} in time") from None
        if line is None:
            raise RuntimeError("the fork server exited (see stderr above)")
        answer: dict[str, Any] = json.loads(line)
        if key not in answer:
            raise RuntimeError(f"the fork server answered {answer}, expected {key!r}")
        return answer

    def _wait_for_event(
        self, report: Path, event: str, count: int, deadline: float
    ) -> dict[str, Any] | None:
        """Poll ``report`` until it holds ``count`` ``event`` lines; the exit status if the
        child ended first."""
        needle = f'{{"e": "{event}"'.encode()
        while time.monotonic() < deadline:
            try:
                if report.read_bytes().count(needle) >= count:
                    return None
            except FileNotFoundError:
                pass
            try:
                return self._next("status", timeout=0.001)
            except TimeoutError:
                continue
        raise TimeoutError(f"the child reported no {event!r} in time")

    def run(
        self,
        job: str,
        args: dict[str, Any],
        *,
        report: Path,
        log: Path,
        kill_after: float | None = None,
        after_event: str | None = None,
        after_count: int = 1,
    ) -> ChildRun:
        """Fork a child running ``job`` and SIGKILL it, if still alive, ``kill_after`` s
        after the fork, or after it reported ``after_event`` (the ``after_count``-th one;
        polled every millisecond)."""
        assert self._proc is not None and self._proc.stdin is not None
        command = {"job": job, "args": args, "report": str(report), "log": str(log)}
        self._proc.stdin.write(json.dumps(command) + "\n")
        self._proc.stdin.flush()
        pid: int = self._next("pid")["pid"]
        started = time.monotonic()
        killed_at: float | None = None
        exited: dict[str, Any] | None = None
        if kill_after is not None and after_event is not None:
            deadline = started + self.timeout
            exited = self._wait_for_event(report, after_event, after_count, deadline)
        if kill_after is not None and exited is None:
            try:
                exited = self._next("status", timeout=kill_after)
            except TimeoutError:
                killed_at = time.monotonic()
                os.kill(pid, signal.SIGKILL)
        if exited is None:
            try:
                exited = self._next("status")
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)  # a hung child: end it, then report the hang
                self._next("status")
                raise TimeoutError(f"child {pid} ({job}) did not end in {self.timeout} s") from None
        if exited["pid"] != pid:
            raise RuntimeError(f"the fork server reported pid {exited['pid']}, expected {pid}")
        return ChildRun(pid, int(exited["status"]), started, killed_at, time.monotonic())


if __name__ == "__main__":
    sys.exit(serve())
