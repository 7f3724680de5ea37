"""The SQLite store: the whole threadline store contract in one database file.

The store implements the required tier and both capability groups, and the derived
hooks where it is faster or atomic where the core's default would not be (each says
why); the core does the rest (:mod:`threadline.storekit`). Each concern is a module:
:mod:`~threadline_sqlite.sessions`, :mod:`~threadline_sqlite.messages`,
:mod:`~threadline_sqlite.window`, :mod:`~threadline_sqlite.checkpoints`,
:mod:`~threadline_sqlite.api_calls`, :mod:`~threadline_sqlite.configs` and
:mod:`~threadline_sqlite.retention`, each a :class:`~threadline.storekit.sync.SyncStore`
whose plain methods become the hooks. Design, and why:

* **Off the event loop unless cheaper on it.** SQLite calls run on a :class:`~threadline_sqlite.
  worker.Worker` thread (:meth:`SQLiteStore.run_sync` picks it). Writes go to one writer
  thread (one connection), reads to a reader thread with its own connection: in WAL
  mode readers never block the writer and the writer never blocks readers. Small reads
  and appends of a recently used session run on the loop's thread instead, where that
  costs less than the hand-off (:mod:`~threadline_sqlite.inline`); they never wait
  there for a lock or an fsync.
* **Every write that belongs to a session** (messages, checkpoints, API calls, updates)
  moves its ``updated_at`` forward in its transaction, so retention never takes a
  session in use for an idle one.
* **Deleted means gone from the file.** Deletions, rewrites and erasures run with
  ``secure_delete`` and end with a ``TRUNCATE`` checkpoint of the WAL
  (:func:`~threadline_sqlite.sql.forgetting`).
* **Typed errors, nothing half-written.** Values are encoded (and refused with
  :class:`~threadline.errors.ValidationError`) before the transaction starts; any
  failure rolls the transaction back; ``sqlite3`` errors become
  :class:`~threadline.errors.StoreUnavailableError` (locked, cannot open) or
  :class:`~threadline.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from threadline.errors import StoreError
from threadline.hookspecs import hookimpl
from threadline_sqlite import migrations
from threadline_sqlite.api_calls import ApiCallHooks
from threadline_sqlite.checkpoints import CheckpointHooks
from threadline_sqlite.configs import ConfigHooks
from threadline_sqlite.forks import ForkHooks
from threadline_sqlite.inline import BUSY, CHECKPOINT_WRITES, InlineReader, InlineWriter
from threadline_sqlite.message_rows import MessageRowHooks
from threadline_sqlite.messages import MessageHooks
from threadline_sqlite.options import SQLiteOptions
from threadline_sqlite.retention import RetentionHooks
from threadline_sqlite.sessions import SessionHooks
from threadline_sqlite.usage import UsageHooks
from threadline_sqlite.window import WindowHooks
from threadline_sqlite.worker import Worker, connection

__all__ = ["SQLiteStore", "open_connection"]

T = TypeVar("T")
Connection = sqlite3.Connection

_READS = frozenset(
    "threadline_" + name
    for name in (
        "get_session", "list_sessions", "list_tenants", "read_messages", "count_messages",
        "load_window", "read_checkpoint_records", "read_checkpoint_head",
        "list_checkpoint_records", "list_api_calls",
        "load_agent_config", "list_agent_configs", "list_providers", "summarize_usage",
        "read_message_rows",
    )
)  # fmt: skip
"""Hooks that only read: they run on the reader thread (its own ``query_only`` connection)."""


def _switch_to_wal(connection: Connection, options: SQLiteOptions) -> None:
    """Put the database in WAL mode, retrying while another process holds the file.

    Switching the journal mode takes an exclusive lock and SQLite may report
    ``database is locked`` at once instead of calling the busy handler (seen when several
    processes open a new file together): retried for up to ``busy_timeout``.
    """
    deadline = time.monotonic() + options.busy_timeout_ms / 1000
    pause = 0.001
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    if str(mode).lower() != "wal":
        raise StoreError(f"could not switch {options.path} to WAL (journal_mode={mode})")


def open_connection(options: SQLiteOptions, *, reader: bool = False) -> Connection:
    """Open and configure a connection (on the thread that will use it).

    The writer creates the parent directory and the file if needed and switches the
    database to WAL; every connection gets ``busy_timeout``, ``synchronous`` and
    foreign keys; a reader is ``query_only``. Autocommit mode (``isolation_level=None``):
    transactions are explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``.
    """
    if not options.in_memory and not reader:
        os.makedirs(os.path.dirname(options.path), exist_ok=True)
    connection = sqlite3.connect(
        options.path,
        timeout=options.busy_timeout_ms / 1000,
        isolation_level=None,
        cached_statements=256,
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout_ms)}")
        if not options.in_memory and not reader:
            _switch_to_wal(connection, options)
        connection.execute(f"PRAGMA synchronous = {options.synchronous}")
        connection.execute("PRAGMA foreign_keys = ON")
        if reader:
            connection.execute("PRAGMA query_only = ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _ping() -> None:
    connection().execute("SELECT 1").fetchone()


def _on_connection(fn: Callable[..., T], *args: Any) -> T:
    return fn(connection(), *args)


def _stop(*workers: Worker) -> None:
    for worker in workers:
        worker.close_nowait()


_WRITES_TO_A_SESSION = frozenset({"threadline_save_message", "threadline_save_messages"})
_INLINE_SLICE = 0.0005
"""Seconds of inline calls after which the next one first yields to the loop."""
_NO_FSYNC_ON_COMMIT = ("normal", "off")
"""``synchronous`` levels at which a WAL commit does not fsync: appends may run inline."""


class SQLiteStore(
    SessionHooks, MessageHooks, WindowHooks, CheckpointHooks, ApiCallHooks, ConfigHooks,
    RetentionHooks, UsageHooks, ForkHooks, MessageRowHooks,
):  # fmt: skip
    """A threadline store in one SQLite file (or ``:memory:``), served by worker threads.

    Open it with ``await threadline.connect("sqlite:///chat.db")`` or
    :meth:`SQLiteStore.open`.
    """

    def __init__(self, options: SQLiteOptions) -> None:
        """Start the writer thread (use :meth:`open`, which also waits for the connection)."""
        self.options = options
        self._writer = Worker("threadline-sqlite-writer", lambda: open_connection(options))
        self._reader = self._writer
        self._inline: InlineReader | None = None
        self._inline_writer: InlineWriter | None = None
        self._inline_time = 0.0  # seconds of inline calls since the loop last ran others
        self._finalizer = weakref.finalize(self, _stop, self._writer)

    @classmethod
    async def open(cls, options: SQLiteOptions) -> SQLiteStore:
        """Start the threads and open their connections; raise if the file cannot be used."""
        store = cls(options)
        try:
            await store._writer.submit(_ping)
            if not options.in_memory:
                reader = Worker(
                    "threadline-sqlite-reader", lambda: open_connection(options, reader=True)
                )
                store._reader = reader
                store._finalizer.detach()
                store._finalizer = weakref.finalize(store, _stop, store._writer, reader)
                await reader.submit(_ping)
                # Small indexed reads on this (the loop's) thread: threadline_sqlite.inline.
                store._inline = InlineReader(open_connection(options, reader=True))
                if options.synchronous in _NO_FSYNC_ON_COMMIT:  # appends: .inline
                    store._inline_writer = InlineWriter(
                        open_connection(options), store._inline, store._writer
                    )
        except BaseException:
            await store.aclose()
            raise
        return store

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.options.path} synchronous={self.options.synchronous}>"

    @property
    def closed(self) -> bool:
        """True once the store was closed."""
        return self._writer.closed

    async def aclose(self) -> None:
        """Finish queued work, close both connections and stop the threads."""
        self._finalizer.detach()
        if self._inline_writer is not None:
            self._inline_writer.close()
            self._inline_writer = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

    async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
        """Run a hook's operation on the reader thread if it only reads, else the writer's;
        a small indexed read of a recently used session inline (:mod:`.inline`)."""
        inline = self._inline
        if inline is None:
            worker = self._reader if hook in _READS else self._writer
            return await worker.submit(operation, *args)
        if inline.takes(hook, args) and not self._writer.closed:
            await self._share_the_loop()
            started = time.perf_counter()
            result = inline.read(hook, operation, args)
            self._inline_time += time.perf_counter() - started
            if result is not BUSY:
                return result  # type: ignore[return-value]
        if hook in _WRITES_TO_A_SESSION:
            writer = self._inline_writer
            if writer is not None and writer.takes(args):
                await self._share_the_loop()
                started = time.perf_counter()
                result = writer.write(operation, args)
                self._inline_time += time.perf_counter() - started
                if result is not BUSY:
                    return result  # type: ignore[return-value]
        elif hook in CHECKPOINT_WRITES and self._inline_writer is not None:
            return await self._write_checkpoint(self._inline_writer, hook, operation, args)
        elif hook in _READS:
            result = await self._reader.submit(operation, *args)
            if len(args) > 1:
                inline.seen(args[1])
            return result
        result = await self._writer.submit(operation, *args)
        if hook in _WRITES_TO_A_SESSION and args:
            first = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
            inline.seen(getattr(first, "session_id", None))
        return result

    async def _write_checkpoint(
        self, writer: InlineWriter, hook: str, operation: Callable[..., T], args: tuple[Any, ...]
    ) -> T:
        """A checkpoint record or an append to its state: inline when small and its session
        was used lately (:meth:`InlineWriter.prepare`), else on the writer thread."""
        call, args, pages = writer.prepare(hook, operation, args)
        if pages:
            await self._share_the_loop()
            if writer.free():  # still: nothing was queued while the loop ran others
                started = time.perf_counter()
                done = writer.write(call, args, pages)
                self._inline_time += time.perf_counter() - started
                if done is not BUSY:
                    writer.wrote(hook, args, done)
                    return done  # type: ignore[return-value]
        result: T = await self._writer.submit(call, *args)
        writer.wrote(hook, args, result)
        return result

    async def _share_the_loop(self) -> None:
        """Let the loop's other tasks run once inline calls took :data:`_INLINE_SLICE`
        since the last time: a task making call after call inline never waits on the loop
        otherwise. Before the call, so a task cancelled here has written nothing."""
        if self._inline_time >= _INLINE_SLICE:
            self._inline_time = 0.0
            await asyncio.sleep(0)

    def run_write(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(connection, *args)`` on the writer thread (tests, tools, extensions)."""
        return self._writer.submit(_on_connection, fn, *args)

    def run_read(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(connection, *args)`` on the reader thread (a ``query_only`` connection)."""
        return self._reader.submit(_on_connection, fn, *args)

    # -- lifecycle --------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        return migrations.migrate(connection())

    @hookimpl
    async def threadline_close(self) -> None:
        await self.aclose()
