"""What every part of the fsspec store shares: its thread, JSON files, locks and sessions.

:class:`StoreFiles` is the base of the store's parts (messages, checkpoints, configs,
:class:`threadline_fsspec.store.FsspecStore`). It is a
:class:`threadline.storekit.sync.SyncStore`: each plain method named after a hook
becomes that async hook and runs through :meth:`StoreFiles.run_sync`, in a worker
thread (inline on fsspec's memory file system), with OS and network errors typed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import attrs

from threadline.errors import (
    ConfigurationError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ThreadlineError,
    ValidationError,
)
from threadline.hookspecs import hookimpl
from threadline.ids import utcnow
from threadline.models import Session
from threadline.storekit.sync import SyncStore
from threadline_fsspec import layout
from threadline_fsspec.backends import Backend
from threadline_fsspec.records import decode, encode, parse_time

__all__ = ["StoreFiles"]

T = TypeVar("T")


class StoreFiles(SyncStore):
    """The backend, the worker threads and the helpers every part of the store uses."""

    def __init__(self, backend: Backend, *, lock_timeout: float = 30.0) -> None:
        self.backend = backend
        self.lock_timeout = lock_timeout
        self.closed = False
        self._executor: ThreadPoolExecutor | None = (
            None
            if backend.inline
            else ThreadPoolExecutor(max_workers=8, thread_name_prefix="threadline-fsspec")
        )

    def __repr__(self) -> str:
        return f"<FsspecStore {self.backend.describe()}>"

    # -- running operations --------------------------------------------------------------

    async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation`` in the store's threads (inline on the memory file system),
        its OS and network errors typed (see :meth:`_guard`)."""
        if self.closed:
            raise ConfigurationError(f"{self!r} is closed")
        call = functools.partial(self._guard, operation, *args)
        if self._executor is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _guard(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except ThreadlineError:
            raise
        except (ConnectionError, TimeoutError) as exc:
            raise StoreUnavailableError(f"{self.backend.describe()} unreachable: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"file store operation failed: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:  # a file of unexpected shape
            raise StoreError(
                f"unexpected data in {self.backend.describe()} ({type(exc).__name__}: {exc}); "
                "the store may be damaged"
            ) from exc

    # -- files ---------------------------------------------------------------------------

    def _json(self, path: str) -> Any:
        data = self.backend.read(path)
        return None if data is None else decode(data, path)

    def _hint(self, path: str) -> Any:
        """A file that may be missing, stale or damaged after a crash: ``None`` then."""
        data = self.backend.read(path)
        if data is None:
            return None
        try:
            return decode(data, path)
        except StoreError:
            return None

    def _numbers(self, folder: str) -> list[int]:
        numbers = (layout.decode_seq_name(n) for n in self.backend.listdir(folder))
        return sorted(n for n in numbers if n is not None)

    @contextmanager
    def _locked(self, sd: str, missing: str) -> Iterator[None]:
        """Hold the session folder's lock; ``NotFoundError(missing)`` if the folder is gone."""
        with ExitStack() as stack:
            try:
                stack.enter_context(self.backend.lock(f"{sd}/lock", self.lock_timeout))
            except FileNotFoundError:
                raise NotFoundError(missing) from None
            yield

    def _entry(self, kind: str, record_id: str) -> tuple[str, dict[str, Any]] | None:
        """(session folder, entry) of an id index entry whose session exists."""
        entry = self._hint(layout.id_file(kind, record_id))
        if not isinstance(entry, dict):
            return None
        try:
            sd = layout.session_dir(entry["tenant_id"], entry["session_id"])
        except (KeyError, TypeError, ValueError, ValidationError):
            return None
        return (sd, entry) if self._session_doc(sd) is not None else None

    def _drop_index(
        self, kind: str, record_id: str, tenant_id: str, session_id: str | None
    ) -> None:
        path = layout.id_file(kind, record_id)
        entry = self._hint(path)
        if (
            isinstance(entry, dict)
            and entry.get("tenant_id") == tenant_id
            and (session_id is None or entry.get("session_id") == session_id)
        ):
            self.backend.delete(path)

    # -- sessions ------------------------------------------------------------------------

    def _session_doc(self, sd: str) -> dict[str, Any] | None:
        doc = self._json(f"{sd}/session.json")
        return doc if isinstance(doc, dict) else None

    def _session(self, tenant_id: str, session_id: str) -> Session | None:
        sd = layout.session_dir(tenant_id, session_id)
        doc = self._session_doc(sd)
        if doc is None or doc.get("tenant_id") != tenant_id:
            return None
        session = Session.from_dict(doc)
        head = self._hint(f"{sd}/head.json")
        touched = head.get("updated_at") if isinstance(head, dict) else None
        if isinstance(touched, str):
            when = parse_time(touched)
            if when > session.updated_at:
                session = attrs.evolve(session, updated_at=when)
        return session

    def _require_session(self, tenant_id: str, session_id: str) -> str:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return sd

    def _touch(self, sd: str) -> None:
        """Record activity: every write that belongs to a session moves its ``updated_at``.

        Called holding the session's lock, before the record is written (so a record
        that can be read is never older than its session's activity). ``head.json``
        carries it; a session's ``updated_at`` is the later of that and ``session.json``'s,
        so it never moves back.
        """
        head = self._hint(f"{sd}/head.json")
        head = dict(head) if isinstance(head, dict) else {}
        head["updated_at"] = utcnow().isoformat()
        self.backend.write(f"{sd}/head.json", encode(head, "head"), durable=False)

    # -- lifecycle -----------------------------------------------------------------------

    def check_format(self) -> int | None:
        """The layout version stored at the root (``None`` if none yet); refuse newer ones."""
        doc = self._json(layout.FORMAT_FILE)
        if doc is None:
            return None
        version = doc.get("format") if isinstance(doc, dict) else None
        if not isinstance(version, int):
            raise StoreError(f"{layout.FORMAT_FILE} is damaged")
        if version > layout.FORMAT_VERSION:
            raise ConfigurationError(
                f"{self.backend.describe()} holds layout version {version}; this "
                f"threadline-fsspec reads version {layout.FORMAT_VERSION}: upgrade it"
            )
        return version

    def migrate(self) -> list[str]:
        marker = {"format": layout.FORMAT_VERSION, "created_at": utcnow().isoformat()}
        if self.backend.create(layout.FORMAT_FILE, encode(marker, "format")):
            return [f"{layout.FORMAT_VERSION:04d}_layout"]
        self.check_format()
        return []

    @hookimpl
    async def threadline_close(self) -> None:
        self.closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.backend.close()
