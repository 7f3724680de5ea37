"""A thread that owns one SQLite connection and runs jobs for the event loop.

``sqlite3`` calls block (disk I/O, fsync, waiting on another process's lock), so
none of them may run on the event loop. Each :class:`Worker` is one daemon thread
with its own connection; :meth:`Worker.submit` puts a job on a
:class:`queue.SimpleQueue` and returns an :class:`asyncio.Future` that the thread
resolves with :meth:`~asyncio.AbstractEventLoop.call_soon_threadsafe`.

This is the cheapest hand-off the standard library offers: no executor, no
``contextvars`` copy, no ``concurrent.futures`` wrapping (``asyncio.to_thread`` does
all three). Jobs run one at a time in submission order, so a connection is never
shared between threads and one worker's writes are naturally serialised.

A job is ``fn(*args)``; it reaches the thread's connection with :func:`connection`.
What it raises reaches the awaiting task, ``sqlite3`` errors mapped by
:func:`threadline_sqlite.errors.map_error`; a job left inside a transaction by an
error is rolled back first. Cancelling the awaiting task does not cancel a job
already queued: a write may still commit.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from threadline.errors import StoreError
from threadline_sqlite.errors import map_error

__all__ = ["Worker", "bind", "connection"]

T = TypeVar("T")

_thread = threading.local()


def connection() -> sqlite3.Connection:
    """The connection of the worker thread running the current job."""
    try:
        found: sqlite3.Connection = _thread.connection
    except AttributeError:
        raise StoreError("no sqlite connection: not on a store's worker thread") from None
    return found


@contextmanager
def bind(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Make ``db`` this thread's :func:`connection` for the block (inline reads on the loop)."""
    previous = getattr(_thread, "connection", None)
    _thread.connection = db
    try:
        yield db
    finally:
        if previous is None:
            del _thread.connection
        else:
            _thread.connection = previous


_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    # Runs on the event loop thread.
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Worker:
    """One thread and one connection, opened on that thread by ``opener``."""

    def __init__(self, name: str, opener: Callable[[], sqlite3.Connection]) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._submitted = 0  # jobs queued, counted by the submitting thread
        self._finished = 0  # ... and run to the end, counted by the worker thread
        self._thread = threading.Thread(target=self._run, args=(opener,), name=name, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Worker {self.name} {'closed' if self._closed else 'open'}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`close_nowait` was called."""
        return self._closed

    @property
    def idle(self) -> bool:
        """No job queued or running: a write done elsewhere now cannot overtake one of
        this worker's (read on the submitting thread)."""
        return self._submitted == self._finished

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)``; the future resolves on the calling loop."""
        if self._closed:
            raise StoreError(f"the sqlite store is closed ({self.name})")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._submitted += 1
        self._jobs.put((fn, args, loop, future))
        return future

    async def close(self) -> None:
        """Finish the queued jobs, close the connection and end the thread."""
        if self._closed:
            return
        future = self.submit(_close)
        self._closed = True
        await future

    def close_nowait(self) -> None:
        """Ask the thread to finish its queue and stop, without waiting (finalizers)."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)

    def _run(self, opener: Callable[[], sqlite3.Connection]) -> None:
        connection: sqlite3.Connection | None = None
        open_error: BaseException | None = None
        try:
            connection = _thread.connection = opener()
        except BaseException as exc:  # reported to every job instead
            open_error = map_error(exc, f"opening {self.name}")
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                break
            fn, args, loop, future = job
            if fn is _close:
                _close_quietly(connection)
                connection = None
                _resolve(loop, future, None, None)
                return
            result: Any = None
            error: BaseException | None = open_error
            if error is None:
                assert connection is not None
                try:
                    result = fn(*args)
                except BaseException as exc:
                    error = map_error(exc, getattr(fn, "__name__", "job").lstrip("_"))
                    if connection.in_transaction:
                        try:
                            connection.rollback()
                        except sqlite3.Error:
                            pass
            self._finished += 1
            _resolve(loop, future, result, error)
        _close_quietly(connection)


def _resolve(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, future, result, error)
    except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
        pass


def _close_quietly(connection: sqlite3.Connection | None) -> None:
    if connection is not None:
        try:
            connection.close()
        except sqlite3.Error:
            pass


def _close() -> None:
    """The marker of the last job: ``_run`` closes the connection and ends the thread."""
