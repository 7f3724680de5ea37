"""Small indexed reads on the event loop's own thread, where they cost less than a hand-off.

A window of 20 messages or a session's counter takes SQLite 15-40 µs; handing it to the
reader thread and back costs 30-100 µs on a 2-vCPU VM (two thread wake-ups) and lets
the worker's Python contend for the GIL with the loop. :class:`InlineReader` runs such
reads directly, on a ``query_only`` connection opened on the loop's thread, when

* the hook is one of :data:`INLINE_HOOKS` and its read is bounded (a window of at most
  :data:`MAX_INLINE_ROUNDS` rounds, not a whole session; a ``read_messages`` or
  ``read_message_rows`` of at most :data:`MAX_INLINE_ROWS` rows). One without a limit runs
  inline with the limit :data:`MAX_INLINE_ROWS` + 1 (:meth:`InlineReader.read`): a session that
  holds more is remembered as long and read on the reader thread, now and later;
* the session was read or written through this store lately (:meth:`InlineReader.seen`):
  its pages are then in the OS page cache, so the read does not wait on the disk. The
  first read of any other session goes to the reader thread, which warms it;
* the call comes from the thread that opened the connection (SQLite connections stay on
  their thread).

WAL readers never wait for the writer. ``busy_timeout`` is 0 on this connection: in the
rare case SQLite still reports the database busy (a WAL being recovered after a crash),
the read is handed to the reader thread instead of sleeping on the loop. Measured in
``benchmarks/bench_sqlite.py`` (loop-lag probe, p99 stall < 1 ms).

Appends of up to :data:`MAX_INLINE_WRITE_ROWS` messages to such a session run inline too
(:class:`InlineWriter`), at ``synchronous=normal`` or ``off`` only (a commit then writes
the WAL without an fsync), while the writer thread is idle and the write lock is free;
so do the checkpoint writes of such a session (a record of at most
:data:`MAX_INLINE_WRITE_BYTES`, encoded first to know its size, and appends to the state of
a record this store wrote lately that stays under that size): a LangGraph chat step
makes four or five.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from threadline.codec import dump_json
from threadline.queries import MessageRange
from threadline.storekit.records import CheckpointRecord
from threadline_sqlite.checkpoints import CheckpointHooks
from threadline_sqlite.errors import map_error
from threadline_sqlite.rows import CHECKPOINT_COLUMNS, record_row
from threadline_sqlite.worker import Worker, bind, connection

__all__ = [
    "BUSY",
    "INLINE_HOOKS",
    "MAX_INLINE_ROUNDS",
    "MAX_INLINE_ROWS",
    "MAX_INLINE_WRITE_BYTES",
    "MAX_INLINE_WRITE_ROWS",
    "InlineReader",
    "InlineWriter",
]

T = TypeVar("T")

_READ_MESSAGES = "threadline_read_messages"
_RANGE_READS = frozenset({_READ_MESSAGES, "threadline_read_message_rows"})
"""Reads of a ``MessageRange`` (third argument): inline up to :data:`MAX_INLINE_ROWS` rows."""
INLINE_HOOKS = frozenset(
    {"threadline_load_window", "threadline_count_messages", "threadline_get_session",
     *_RANGE_READS}
)  # fmt: skip
"""Reads that touch a handful of pages found by index, whatever the session's length."""
MAX_INLINE_ROUNDS = 50
"""A window of more rounds (or the whole session) is read on the reader thread."""
MAX_INLINE_ROWS = 128
"""A ``read_messages`` of more rows is read on the reader thread: 256 rows of 400 bytes
measured 0.65 ms at p50 and 1.2 ms at p99 on the loop (2 vCPUs, the other one busy),
over the loop-stall budget of 1 ms; 128 take half."""
_REMEMBERED = 4096  # sessions whose pages count as recently used


class _Busy:
    """The marker :meth:`InlineReader.run` returns when SQLite reported the file busy."""


BUSY = _Busy()


def _remember(recent: OrderedDict[str, None], session_id: str) -> None:
    recent[session_id] = None
    recent.move_to_end(session_id)
    if len(recent) > _REMEMBERED:
        recent.popitem(last=False)


class InlineReader:
    """A ``query_only`` connection used on the event loop's thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA busy_timeout = 0")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()  # load the schema
        self.connection = connection
        self.thread = threading.get_ident()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._long: OrderedDict[str, None] = OrderedDict()  # more than MAX_INLINE_ROWS

    def seen(self, session_id: object) -> None:
        """Remember that ``session_id``'s pages were just read or written."""
        if isinstance(session_id, str):
            _remember(self._recent, session_id)

    def takes(self, hook: str, args: tuple[Any, ...]) -> bool:
        """Whether this call runs inline (see the module's conditions)."""
        if hook not in INLINE_HOOKS or len(args) < 2 or args[1] not in self._recent:
            return False
        if hook == "threadline_load_window":
            rounds = args[2] if len(args) > 2 else None
            if rounds is None or rounds > MAX_INLINE_ROUNDS:
                return False
        elif hook in _RANGE_READS:
            query = args[2] if len(args) > 2 else None
            if not isinstance(query, MessageRange):
                return False
            if query.limit is None:
                if args[1] in self._long:
                    return False
            elif query.limit > MAX_INLINE_ROWS:
                return False
        return threading.get_ident() == self.thread

    def read(self, hook: str, operation: Callable[..., T], args: tuple[Any, ...]) -> T | _Busy:
        """:meth:`run` a call :meth:`takes`; a range read without a limit reads at
        most :data:`MAX_INLINE_ROWS` + 1 rows: more, and the session is remembered as long
        and the call answered :data:`BUSY` (the caller reads it on the reader thread)."""
        if hook not in _RANGE_READS or args[2].limit is not None:
            return self.run(operation, args)
        tenant_id, session_id, query, *rest = args
        capped = MessageRange(
            query.after_seq, query.before_seq, MAX_INLINE_ROWS + 1, query.newest_first, query.role
        )
        result = self.run(operation, (tenant_id, session_id, capped, *rest))
        if result is not BUSY and len(result) > MAX_INLINE_ROWS:  # type: ignore[arg-type]
            _remember(self._long, session_id)
            return BUSY
        return result

    def run(self, operation: Callable[..., T], args: tuple[Any, ...]) -> T | _Busy:
        """``operation(*args)`` on this connection, or :data:`BUSY`; errors mapped as the
        worker maps them."""
        return _run(self.connection, operation, args)

    def close(self) -> None:
        try:
            self.connection.close()
        except sqlite3.Error:  # pragma: no cover - closing a read-only connection
            pass


def _run(
    connection: sqlite3.Connection, operation: Callable[..., T], args: tuple[Any, ...]
) -> T | _Busy:
    """``operation(*args)`` with ``connection`` bound, or :data:`BUSY` when SQLite reported
    the file busy or locked (any transaction rolled back first); errors mapped as the
    worker maps them."""
    with bind(connection) as db:
        try:
            return operation(*args)
        except sqlite3.OperationalError as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if "locked" in str(exc) or "busy" in str(exc):
                return BUSY
            raise map_error(exc, getattr(operation, "__name__", "call")) from exc
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            mapped = map_error(exc, getattr(operation, "__name__", "call"))
            if mapped is exc:
                raise
            raise mapped from exc


MAX_INLINE_WRITE_ROWS = 10
"""A ``save_messages`` of more messages is written on the writer thread: on the loop, 20
measured 0.76-0.87 ms (p10-p50) at load 10 on 2 vCPUs, 10 took 0.46-0.58 ms, one 0.18-0.23
ms (about 4x an idle machine's); a turn with its tool calls fits in 10."""
_CHECKPOINT_PAGES = 1000
"""WAL pages (estimated) written inline between two checkpoints on the writer thread:
SQLite's own ``wal_autocheckpoint`` default."""


def _checkpoint() -> None:
    connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _pages(args: tuple[Any, ...]) -> int:
    """WAL pages an append writes, roughly: its rows' leaf pages and index entries."""
    first = args[0]
    if isinstance(first, (list, tuple)):
        return 4 + len(first) // 4
    return 4


MAX_INLINE_WRITE_BYTES = 16384
"""A checkpoint record (its text columns) of more bytes, or an append that would take a
state past it, is written on the writer thread; a LangGraph chat step's records are 1-3 kB."""
_INSERT_CHECKPOINT = "threadline_insert_checkpoint_record"
_APPEND_STATE = "threadline_append_checkpoint_state"
CHECKPOINT_WRITES = frozenset({_INSERT_CHECKPOINT, _APPEND_STATE})
"""The checkpoint hooks :meth:`InlineWriter.prepare` may run inline."""


_STATE = [n.strip() for n in CHECKPOINT_COLUMNS.split(",")].index("state")


def _text_bytes(row: list[Any]) -> int:
    return sum(len(v) for v in row if isinstance(v, str))


class InlineWriter:
    """Appends of a recently used session on the event loop's thread (``synchronous``
    ``normal`` or ``off`` only: a commit then writes the WAL without an fsync).

    The connection has ``busy_timeout`` 0 and no automatic checkpoint: ``BEGIN
    IMMEDIATE`` fails at once when another connection (this store's writer thread or
    another process) holds the write lock, and the call goes to the writer thread, which
    waits for it; checkpoints (an fsync) run on the writer thread every
    :data:`_CHECKPOINT_PAGES` pages or so. An append runs here only while the writer
    thread is idle (:attr:`~threadline_sqlite.worker.Worker.idle`), so the store's writes
    keep their order, and appends made during a checkpoint queue behind it: the first
    write after it then finds the WAL wholly copied and starts it again from the top
    (a checkpoint that writes kept racing would never finish, and the WAL would grow).

    Checkpoint records go the same way (:meth:`prepare`): the records this store wrote
    lately are remembered with their state's size, so an append to one's state (an
    ``UPDATE`` that rewrites the state) runs here while it stays small.
    """

    def __init__(
        self, connection: sqlite3.Connection, reader: InlineReader, writer: Worker
    ) -> None:
        connection.execute("PRAGMA busy_timeout = 0")
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()  # load the schema
        self.connection = connection
        self.thread = threading.get_ident()
        self._reader = reader
        self._writer = writer
        self._pages = 0
        self._checkpointing = False
        self._records: OrderedDict[str, int] = OrderedDict()  # checkpoint id -> state bytes

    def free(self) -> bool:
        """The writer thread idle and open, and this the loop's thread."""
        return (
            self._writer.idle and not self._writer.closed and threading.get_ident() == self.thread
        )

    def takes(self, args: tuple[Any, ...]) -> bool:
        """Whether this append runs inline: a session read or written lately, at most
        :data:`MAX_INLINE_WRITE_ROWS` messages, the writer thread idle, the loop's thread."""
        if not args:
            return False
        first = args[0]
        if isinstance(first, (list, tuple)):
            if not first or len(first) > MAX_INLINE_WRITE_ROWS:
                return False
            first = first[0]
        return getattr(first, "session_id", None) in self._reader._recent and self.free()

    def prepare(
        self, hook: str, operation: Callable[..., Any], args: tuple[Any, ...]
    ) -> tuple[Callable[..., Any], tuple[Any, ...], int]:
        """A checkpoint write (:data:`CHECKPOINT_WRITES`) as the call to make and the WAL
        pages it may write inline (0: on the writer thread). When it may run inline, the
        values are encoded here first (and refused, as the writer thread would) to size
        it; the call returned then takes them encoded, wherever it runs."""
        target: Any = getattr(operation, "__self__", None)
        if hook == _INSERT_CHECKPOINT and len(args) == 2:
            record = args[0]
            if (
                getattr(operation, "__func__", None) is not CheckpointHooks.insert_checkpoint_record
                or not isinstance(record, CheckpointRecord)
                or record.checkpoint.session_id not in self._reader._recent
                or threading.get_ident() != self.thread
            ):
                return operation, args, 0
            row = record_row(record)
            size = _text_bytes(row)
            call = target.insert_checkpoint_row
            small = size <= MAX_INLINE_WRITE_BYTES and self.free()
            return call, (record, row, args[1]), 4 + size // 4000 if small else 0
        if hook == _APPEND_STATE and len(args) == 4:
            state = self._records.get(args[1])
            own = CheckpointHooks.append_checkpoint_state
            if state is None or getattr(operation, "__func__", None) is not own or not self.free():
                return operation, args, 0
            text = dump_json(args[3], "checkpoint state")
            size = state + len(text)
            call = target.append_checkpoint_text
            pages = 2 + size // 4000 if size <= MAX_INLINE_WRITE_BYTES else 0
            return call, (*args[:3], text), pages
        return operation, args, 0

    def wrote(self, hook: str, args: tuple[Any, ...], result: Any) -> None:
        """Remember a checkpoint record written (wherever), with its state's size, so an
        append to its state may run inline; an append grows it."""
        if hook == _INSERT_CHECKPOINT and isinstance(result, CheckpointRecord):
            c = result.checkpoint
            self._reader.seen(c.session_id)
            if len(args) != 3:  # not encoded here: its size is unknown
                return
            self._records[c.id] = len(args[1][_STATE])
            self._records.move_to_end(c.id)
            if len(self._records) > _REMEMBERED:
                self._records.popitem(last=False)
        elif hook == _APPEND_STATE and result and args[1] in self._records:
            last = args[3]
            self._records[args[1]] += len(last) if isinstance(last, str) else 256

    def write(
        self, operation: Callable[..., T], args: tuple[Any, ...], pages: int | None = None
    ) -> T | _Busy:
        """``operation(*args)`` here, or :data:`BUSY` (nothing written: the caller hands
        it to the writer thread); a checkpoint queued when enough pages were written."""
        result = _run(self.connection, operation, args)
        if result is not BUSY:
            self._pages += _pages(args) if pages is None else pages
            if self._pages >= _CHECKPOINT_PAGES and not self._checkpointing:
                self._pages = 0
                self._checkpointing = True
                self._writer.submit(_checkpoint).add_done_callback(self._checkpointed)
        return result

    def _checkpointed(self, future: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not future.cancelled():
            future.exception()  # a failed checkpoint is retried by the next one

    def close(self) -> None:
        try:
            self.connection.close()
        except sqlite3.Error:  # pragma: no cover
            pass
