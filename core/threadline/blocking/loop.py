"""One background event loop that runs every blocking call of the process.

A sync caller (a script, a notebook cell, a Flask or Django request thread) hands a
coroutine to :func:`run`, which runs it on the loop's thread and waits for the result.
All blocking objects share the one loop, so a store opened by one thread serves every
thread (an async store's connections and pools belong to the loop that opened them).

At interpreter exit the loop closes what is still open (:func:`track`), finishes async
generators and the default executor, then stops. It does so from
``threading._register_atexit``, the hook ``concurrent.futures`` uses itself: it runs
before the executors refuse new work, which a plain ``atexit`` handler runs after (a
store closing through ``asyncio.to_thread`` would then fail). Where that private hook is
missing, ``atexit`` is used.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from threadline.errors import ThreadlineError

__all__ = [
    "SHUTDOWN_TIMEOUT",
    "RunningLoopError",
    "loop_thread",
    "run",
    "shutdown",
    "start",
    "submit",
    "track",
    "untrack",
]

T = TypeVar("T")

SHUTDOWN_TIMEOUT = 10.0
"""Seconds exit waits for open stores and agents to close: exit never hangs on a dead server."""


class RunningLoopError(ThreadlineError, RuntimeError):
    """A blocking call made inside a running event loop: it would stall that loop.

    Await the async API there instead (``threadline.connect``, ``Agent.chat``). A Jupyter
    cell is the one exception (see :func:`_in_a_notebook_cell`).
    """


class _Loop:
    """The loop, its thread, and what to close at exit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.closing: dict[int, Callable[[], Awaitable[object]]] = {}

    def start(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._serve, args=(loop, ready), name="threadline-sync", daemon=True
                )
                thread.start()
                ready.wait()
                self.loop, self.thread = loop, thread
                _register_exit(shutdown)
            return self.loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()


_STATE = _Loop()


def _register_exit(callback: Callable[[], None]) -> None:
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(callback)
            return
    except RuntimeError:  # already shutting down: atexit still runs
        pass
    atexit.register(callback)


def loop_thread() -> threading.Thread | None:
    """The background loop's thread, once a blocking call started it."""
    return _STATE.thread


def _in_a_notebook_cell() -> bool:
    """A Jupyter (IPython kernel) cell runs its code inside the kernel's loop, on the main
    thread: a blocking call there stalls only the cell, as any blocking code in a cell does,
    and cannot deadlock (the work runs on the background loop). It is allowed."""
    return "ipykernel" in sys.modules and threading.current_thread() is threading.main_thread()


def _refuse_inside_a_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if _in_a_notebook_cell():
        return
    raise RunningLoopError(
        "a blocking threadline call inside a running event loop would stall it: "
        "await the async API here (threadline.connect, Agent.chat, PersistenceContext)"
    )


def start() -> asyncio.AbstractEventLoop:
    """The background loop, started on first use; refused inside a running loop."""
    _refuse_inside_a_loop()
    return _STATE.start()


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the background loop from any thread."""
    try:
        loop = start()
    except BaseException:
        coro.close()  # never "coroutine was never awaited"
        raise
    return asyncio.run_coroutine_threadsafe(coro, loop)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (raise its error).

    Safe from any number of threads at once. An interrupt of the waiting thread
    (Ctrl-C) cancels the coroutine. Raises :class:`RunningLoopError` when the caller
    runs inside an event loop (an ``async def``), except in a Jupyter cell.
    """
    future = submit(coro)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def track(key: object, close: Callable[[], Awaitable[object]]) -> None:
    """Close ``close()`` at exit unless :func:`untrack` says it was closed before."""
    with _STATE.lock:
        _STATE.closing[id(key)] = close


def untrack(key: object) -> None:
    with _STATE.lock:
        _STATE.closing.pop(id(key), None)


async def _close_all(closers: list[Callable[[], Awaitable[object]]]) -> None:
    # Newest first: iterators left open end while their agent and store are open (a reply
    # cut short is recorded as cancelled), then agents, then the stores they use.
    for close in reversed(closers):
        try:
            await close()
        except Exception as exc:  # one failed close must not keep the others open
            warnings.warn(f"threadline: closing at exit failed: {exc!r}", stacklevel=1)
    loop = asyncio.get_running_loop()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Close what is open, stop the loop and join its thread (run at interpreter exit;
    a blocking call after it starts a new loop)."""
    with _STATE.lock:
        loop, thread = _STATE.loop, _STATE.thread
        closers = list(_STATE.closing.values())
        _STATE.closing.clear()
        _STATE.loop = _STATE.thread = None  # a later call starts a new loop
    if loop is None or thread is None or not thread.is_alive():
        return
    done = asyncio.run_coroutine_threadsafe(_close_all(closers), loop)
    try:
        done.result(timeout)
    except BaseException:  # a close that hangs or fails: stop anyway
        done.cancel()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
