"""Running the async store from LangGraph's sync API: one event loop per saver, in a thread.

threadline stores are async and bound to the event loop they were opened on (a PostgreSQL
pool, say). LangGraph calls a checkpointer's sync methods (``put``, ``get_tuple``) from
``graph.invoke`` and from its own worker threads, so a saver hands each call to the loop
that owns its store and waits for the result. :class:`LoopThread` is that loop when the
saver opened the store itself (:meth:`ThreadlineSaver.from_conn_string`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from threadline.errors import ConfigurationError

__all__ = ["LoopThread", "call_on_loop", "run_on_loop"]

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "threadline-langgraph") -> None:
        self.loop = asyncio.new_event_loop()
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        # Returns once the loop runs: a call handed over before (a busy machine may start
        # the thread late) would find it not running and be refused.
        self._running.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._running.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result (from any other thread)."""
        return run_on_loop(self.loop, coro)

    def stop(self) -> None:
        """Stop the loop and wait for its thread; the loop is closed."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Block until ``coro`` ran on ``loop``; refuse (instead of deadlocking) on that loop."""
    if _running_loop() is loop:
        coro.close()
        raise ConfigurationError(
            "a sync checkpointer method was called on the event loop that runs the store: "
            "use the async graph API (ainvoke, astream), or a saver from "
            "ThreadlineSaver.from_conn_string(), which runs its store in a thread of its own"
        )
    if loop.is_closed() or not loop.is_running():
        coro.close()
        raise ConfigurationError("the event loop that runs this saver's store is not running")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


async def call_on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on ``loop``: directly when it is the running loop, else handed over."""
    if _running_loop() is loop:
        return await coro
    if loop.is_closed() or not loop.is_running():
        coro.close()
        raise ConfigurationError("the event loop that runs this saver's store is not running")
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
