"""The JSON-lines store: the core's reference store, made durable by a write-ahead log.

:class:`threadline.storekit.ReferenceStore` keeps every row in indexed dicts and implements
the required tier, both capability groups and the shortcut hooks; the core derives every
other hook from them (windows, counts, checkpoints with deltas, pruning, erasure). What this
store adds is the file. The reference store checks a write, then hands its whole effect to
:meth:`commit` as a list of changes; here they become one JSON line, appended and fsynced
*before* they are applied, and opening the store replays the lines into the indexes. A line
cut short by a crash was never acknowledged: it is dropped. A write that removes data (a
deletion, a pruned checkpoint, erasure) rewrites the file without it instead
(:meth:`_compact`), so erased data leaves the disk too.

One process, one open store per file: an exclusive ``flock`` refuses a second one (on
POSIX). Writes run in a worker thread (``fsync`` blocks), one at a time; reads are answered
from memory on the event loop's thread and never wait for the disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from threadline.codec import dump_json
from threadline.errors import StoreError, StoreUnavailableError, ThreadlineError
from threadline.hookspecs import PERSISTENCE_HOOKS, hookimpl
from threadline.queries import MessageRange
from threadline.storekit import ReferenceStore
from threadline.storekit.reference import Change

if sys.platform != "win32":
    import fcntl

T = TypeVar("T")

# Hooks that only read (by their names): answered from memory inline, without a thread.
READS = {h for h in PERSISTENCE_HOOKS if h.split("_")[1] in ("get", "list", "read", "load")}


class JsonlStore(ReferenceStore):
    """The reference store's indexes over one append-only file; open it with :meth:`open`."""

    def __init__(self, path: Path, file: BinaryIO, *, fsync: bool) -> None:
        super().__init__()
        self.path = path
        self._file = file
        self._fsync = fsync

    @classmethod
    def open(cls, path: Path, *, fsync: bool = True) -> JsonlStore:
        """Open (or create) the log at ``path``, lock it and replay it into memory."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(path, "a+b")  # noqa: SIM115 - closed by threadline_close
        except OSError as exc:
            raise StoreUnavailableError(f"cannot open {path}: {exc.strerror}") from None
        try:
            _lock_file(file, path)
            store = cls(path, file, fsync=fsync)
            store._replay()
        except BaseException:
            file.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"<JsonlStore {str(self.path)!r}>"

    def _replay(self) -> None:
        self._file.seek(0)
        data = self._file.read()
        end = data.rfind(b"\n") + 1  # after the last complete line
        for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
            try:
                self.apply([Change.from_json(change) for change in json.loads(line)])
            except (ValueError, KeyError, TypeError, AttributeError, ThreadlineError) as exc:
                raise StoreError(f"{self.path}: line {number} is damaged ({exc!r})") from None
        if end < len(data):  # a write torn by a crash: it was never acknowledged, drop it
            self._file.truncate(end)

    # -- the write path: log first, then apply -----------------------------------------

    async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
        """Reads inline (memory); writes in a worker thread, so ``fsync`` never blocks the loop."""
        if hook in READS:
            return operation(*args)
        return await asyncio.to_thread(operation, *args)

    def commit(self, changes: Sequence[Change]) -> None:
        """Write ``changes`` to the file, then apply them (the reference holds the writer lock)."""
        if self._file.closed:
            raise StoreError("the store is closed")
        if self._erases(changes):
            self._compact(changes)
        else:
            self._append(_line(changes))
        super().commit(changes)

    def _append(self, line: bytes) -> None:
        start = self._file.seek(0, os.SEEK_END)
        try:
            self._file.write(line)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            try:
                self._file.truncate(start)  # nothing half-written stays behind
            except OSError:
                pass
            raise StoreError(f"cannot write {self.path}: {exc.strerror}") from None

    def _erases(self, changes: Sequence[Change]) -> bool:
        """Whether a write removes data: a deletion, a rewritten (pruned or redacted)
        checkpoint record, or a message taken from its user (erasure's redaction)."""
        for kind, rows in changes:
            if kind.startswith("drop_") and rows:
                return True
            for r in rows if kind == "records" else ():
                if self.read_checkpoint_records(r.checkpoint.tenant_id, r.id, False):
                    return True
            for m in rows if kind == "messages" else ():
                at = MessageRange((m.seq or 1) - 1, limit=1)
                old = self.read_messages(m.tenant_id, m.session_id, at)
                if old and old[0].user_id is not None and m.user_id is None:
                    return True
        return False

    def _compact(self, changes: Sequence[Change]) -> None:
        """Replace the file by the state after ``changes``: all or nothing.

        The new state is built aside and written to a new file that atomically replaces
        the log; until that rename neither the log nor the memory has changed.
        """
        after = ReferenceStore()
        after.apply(list(self.dump()))
        after.apply(changes)
        tmp = self.path.with_name(self.path.name + ".compact")
        new = None
        try:
            with open(tmp, "wb") as out:
                out.writelines(_line([change]) for change in after.dump() if change.rows)
                out.flush()
                os.fsync(out.fileno())
            new = open(tmp, "a+b")  # noqa: SIM115 - becomes self._file
            _lock_file(new, self.path)
            os.replace(tmp, self.path)  # atomic: a crash leaves the old log or the new one
        except OSError as exc:
            if new is not None:
                new.close()
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot rewrite {self.path}: {exc.strerror}") from None
        self._file.close()
        self._file = new
        _fsync_directory(self.path.parent)

    # -- lifecycle ---------------------------------------------------------------------

    @hookimpl
    def threadline_migrate(self) -> list[str]:
        return []  # no schema: every line carries its own shape

    @hookimpl
    def threadline_close(self) -> None:
        with self._writer:
            self._file.close()  # closing the file releases the flock


def _line(changes: Sequence[Change]) -> bytes:
    """One write as one line (``ValidationError`` before anything is written)."""
    return dump_json([c.to_json() for c in changes if c.rows], "record").encode() + b"\n"


def _lock_file(file: BinaryIO, path: Path) -> None:
    """Take the exclusive lock that keeps a second store (or process) off this log."""
    if sys.platform != "win32":
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreUnavailableError(f"{path} is already open elsewhere") from None


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; best effort)."""
    if sys.platform != "win32":
        try:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
