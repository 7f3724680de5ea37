"""The store contract on files: a local directory or any fsspec file system.

Semantics are those of the reference :class:`threadline_memory.MemoryStore`; the
layout is documented in :mod:`threadline_fsspec.layout` and the README. The ideas
that make it safe without a database:

* **Records are the truth, indexes are checked.** A message lives in a *segment*
  file named by the seq of its first message; a checkpoint in a file named by its
  version; an API call in a file named by its insertion number. Files that point at
  records (the global id indexes, ``head.json``, streaming markers) are written
  *before* the record and verified against it when read, so a crash between the two
  leaves a dangling pointer that counts as absent, never a record that cannot be
  found.
* **Numbers are claimed exclusively.** A new segment, checkpoint or API call is
  created with an exclusive create of its numbered name; a writer that loses (on an
  object store shared by several processes) reads what won and takes the next
  number. On local disks writers of a session also hold an ``flock``, so seqs stay
  contiguous and batches stay whole.
* **Reads follow pointers, not listings.** ``head.json`` names the last segment
  (a hint: the reader probes for newer segments), every segment names the previous
  one and carries the seqs of all system messages so far, so the sliding window
  reads only the segments it returns.

Every operation runs in a worker thread (inline on fsspec's memory file system),
so slow disks and networks never block the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any, TypeVar

import attrs

from threadline.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ThreadlineError,
    ValidationError,
)
from threadline.hookspecs import hookimpl
from threadline.ids import check_id, utcnow
from threadline.models import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
)
from threadline.storekit.delta import (
    SNAPSHOT_EVERY,
    HistoryCache,
    apply_record,
    encode_history,
    load_record,
    new_tag,
)
from threadline.storekit.erasure import redact, redact_history, redact_record
from threadline.storekit.window import orphaned_tool_results, round_start
from threadline_fsspec import layout
from threadline_fsspec.backends import Backend
from threadline_fsspec.records import decode, encode, message_from_dict, parse_time

__all__ = ["FsspecStore"]

T = TypeVar("T")


def _base_of(doc: dict[str, Any]) -> int | None:
    """The version whose history a checkpoint file's history record builds on."""
    if "v" in doc["history"]:
        base: int | None = doc["base"]
        return base
    old: int | None = doc["history"]["base"]  # a file from before the shared record format
    return old


def _unusable_id(kind: str, record_id: str) -> ConflictError:
    """The one answer to an id another row holds: it never says whose row (or tenant) it is."""
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")


def _header(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's fields but its history, as JSON values (its history is a record)."""
    header = attrs.asdict(checkpoint, recurse=False)
    del header["history"]
    header["created_at"] = checkpoint.created_at.isoformat()
    return header


class _Segment:
    """One messages file: consecutive messages from seq ``start``."""

    __slots__ = ("messages", "prev", "start", "systems")

    def __init__(
        self, start: int, prev: int, systems: list[list[int]], messages: list[dict[str, Any]]
    ) -> None:
        self.start = start
        self.prev = prev  # start of the previous segment (0: this is the first)
        self.systems = systems  # [seq, segment start] of every system message up to here
        self.messages = messages

    @property
    def end(self) -> int:
        return self.start + len(self.messages) - 1

    def to_bytes(self) -> bytes:
        return encode(
            {
                "start": self.start,
                "prev": self.prev,
                "systems": self.systems,
                "messages": self.messages,
            },
            "message",
        )

    @classmethod
    def from_doc(cls, doc: Any, where: str) -> _Segment:
        try:
            return cls(doc["start"], doc["prev"], doc["systems"], doc["messages"])
        except (KeyError, TypeError):
            raise StoreError(f"{where} is not a message segment; the store is damaged") from None


@attrs.frozen
class _Tail:
    start: int  # first seq of the last segment (0: no messages)
    end: int  # last seq
    systems: list[list[int]]


@attrs.frozen
class _Found:
    """A message located through the id index and verified against its segment."""

    session_dir: str
    segment: _Segment
    index: int

    @property
    def data(self) -> dict[str, Any]:
        return self.segment.messages[self.index]


class _Suffix:
    """The last messages of a session, read segment by segment from the end."""

    def __init__(self, store: FsspecStore, sd: str, tail: _Tail, last: _Segment | None) -> None:
        self.store, self.sd, self.last = store, sd, last
        self.messages: list[Message] = []
        self.first = tail.end + 1  # seq of messages[0]
        self.prev = tail.start  # start of the next segment to read (0: none left)

    def extend(self) -> list[Message] | None:
        """Read one more segment backwards; ``None`` at the start of the session."""
        if not self.prev:
            return None
        if self.last is not None and self.last.start == self.prev:
            segment = self.last
        else:
            segment = self.store._need_segment(self.sd, self.prev)
        chunk = [message_from_dict(d) for d in segment.messages]
        self.messages[:0] = chunk
        self.first, self.prev = segment.start, segment.prev
        return chunk

    def reach(self, seq: int) -> None:
        """Read backwards until ``seq`` is loaded."""
        while self.first > seq and self.extend() is not None:
            pass

    def at(self, seq: int) -> Message:
        return self.messages[seq - self.first]

    def system(self, seq: int, segment_start: int) -> Message:
        """A system message, from the suffix or from its own segment."""
        if seq >= self.first:
            return self.at(seq)
        segment = self.store._need_segment(self.sd, segment_start)
        return message_from_dict(segment.messages[seq - segment.start])


class FsspecStore:
    """The threadline store contract on a :class:`~threadline_fsspec.backends.Backend`.

    Open one with ``threadline.connect("file:///dir")`` (or ``s3://bucket/prefix``,
    ``fsspec+memory://name``, ...) or, for any fsspec file system object, with
    :meth:`from_filesystem`.
    """

    def __init__(self, backend: Backend, *, lock_timeout: float = 30.0) -> None:
        self.backend = backend
        self.lock_timeout = lock_timeout
        self.snapshot_every = SNAPSHOT_EVERY
        """Longest chain of history records (see :mod:`threadline.storekit.delta`)."""
        self._histories = HistoryCache()
        self.closed = False
        self._executor: ThreadPoolExecutor | None = (
            None
            if backend.inline
            else ThreadPoolExecutor(max_workers=8, thread_name_prefix="threadline-fsspec")
        )

    @classmethod
    def from_filesystem(cls, fs: Any, root: str, *, lock_timeout: float = 30.0) -> FsspecStore:
        """A store on any fsspec file system object, under folder ``root``."""
        from threadline_fsspec.backends import FsspecBackend, LocalBackend

        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        if "file" in protocols or "local" in protocols:
            return cls(LocalBackend(root), lock_timeout=lock_timeout)
        return cls(FsspecBackend(fs, root), lock_timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"<FsspecStore {self.backend.describe()}>"

    # -- running operations --------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.closed:
            raise ConfigurationError(f"{self!r} is closed")
        call = functools.partial(self._guard, fn, *args)
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
    def _locked(self, path: str, missing: str) -> Iterator[None]:
        with ExitStack() as stack:
            try:
                stack.enter_context(self.backend.lock(path, self.lock_timeout))
            except FileNotFoundError:
                raise NotFoundError(missing) from None
            yield

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

    def _migrate(self) -> list[str]:
        marker = {"format": layout.FORMAT_VERSION, "created_at": utcnow().isoformat()}
        if self.backend.create(layout.FORMAT_FILE, encode(marker, "format")):
            return [f"{layout.FORMAT_VERSION:04d}_layout"]
        self.check_format()
        return []

    @hookimpl
    async def threadline_migrate(self) -> list[str]:
        return await self._run(self._migrate)

    @hookimpl
    async def threadline_close(self) -> None:
        self.closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.backend.close()

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

    def _require_session(self, tenant_id: str, session_id: str) -> str:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return sd

    def _session_owner(self, session_id: str) -> str | None:
        """The tenant whose session holds ``session_id`` now (a claim is checked)."""
        claim = self._hint(layout.id_file("sessions", session_id))
        owner = claim.get("tenant_id") if isinstance(claim, dict) else None
        if not isinstance(owner, str):
            return None
        if self._session_doc(layout.session_dir(owner, session_id)) is None:
            return None  # left by a deletion that did not finish
        return owner

    def _create_session(self, session: Session) -> Session:
        data = encode(session.to_dict(), "session")
        claim_path = layout.id_file("sessions", session.id)
        claim = encode({"tenant_id": session.tenant_id}, "claim")
        if not self.backend.create(claim_path, claim):
            owner = self._session_owner(session.id)
            if owner is not None and owner != session.tenant_id:
                raise _unusable_id("session", session.id)
            self.backend.write(claim_path, claim)
        sd = layout.session_dir(session.tenant_id, session.id)
        lock = self.backend.lock(f"{sd}/lock", self.lock_timeout, create_parent=True)
        with lock:
            existing = self._session(session.tenant_id, session.id)
            if existing is not None:
                return existing
            for name in self.backend.listdir(sd):  # left by a deletion cut short
                if name.endswith(".json"):
                    self.backend.delete(f"{sd}/{name}")
                elif name != "lock":
                    self.backend.rmtree(f"{sd}/{name}")
            self.backend.write(f"{sd}/session.json", data)
        return Session.from_dict(decode(data, "session"))

    @hookimpl
    async def threadline_create_session(self, session: Session) -> Session:
        return await self._run(self._create_session, session)

    @hookimpl
    async def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        return await self._run(self._session, tenant_id, session_id)

    def _list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> list[Session]:
        found = []
        for name in self.backend.listdir(layout.sessions_dir(tenant_id)):
            try:
                layout.safe_id(name, "session_id")
            except ValidationError:
                continue
            session = self._session(tenant_id, name)
            if (
                session is not None
                and (user_id is None or session.user_id == user_id)
                and (agent_id is None or session.agent_id == agent_id)
            ):
                found.append(session)
        found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return found[offset : offset + limit]

    @hookimpl
    async def threadline_list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> list[Session]:
        return await self._run(self._list_sessions, tenant_id, user_id, agent_id, limit, offset)

    def _update_session(self, session: Session) -> Session:
        sd = self._require_session(session.tenant_id, session.id)
        missing = f"session {session.id} not found for this tenant"
        with self._locked(f"{sd}/lock", missing):
            stored = self._session(session.tenant_id, session.id)
            if stored is None:
                raise NotFoundError(missing)
            updated = attrs.evolve(
                stored,
                title=session.title,
                metadata=session.metadata,
                updated_at=max(stored.updated_at, utcnow()),
            )
            data = encode(updated.to_dict(), "session")
            self.backend.write(f"{sd}/session.json", data)
            return Session.from_dict(decode(data, "session"))

    @hookimpl
    async def threadline_update_session(self, session: Session) -> Session:
        return await self._run(self._update_session, session)

    def _set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> Session:
        sd = self._require_session(tenant_id, session_id)
        missing = f"session {session_id} not found for this tenant"
        with self._locked(f"{sd}/lock", missing):
            stored = self._session(tenant_id, session_id)
            if stored is None:
                raise NotFoundError(missing)
            data = encode(attrs.evolve(stored, updated_at=updated_at).to_dict(), "session")
            head = self._hint(f"{sd}/head.json")
            if isinstance(head, dict) and "updated_at" in head:  # the later of the two is read
                head = {**head, "updated_at": updated_at.isoformat()}
                self.backend.write(f"{sd}/head.json", encode(head, "head"))
            self.backend.write(f"{sd}/session.json", data)
            return Session.from_dict(decode(data, "session"))

    @hookimpl
    async def threadline_set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> Session:
        return await self._run(self._set_session_updated_at, tenant_id, session_id, updated_at)

    def _delete_session(
        self, tenant_id: str, session_id: str, idle_before: datetime | None = None
    ) -> bool:
        """Delete a session; with ``idle_before``, only if it is still idle under the lock.

        (A writer may have touched it since the caller looked at its ``updated_at``.)
        """
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return False
        try:
            with self._locked(f"{sd}/lock", "gone"):
                if self._session_doc(sd) is None:
                    return False
                if idle_before is not None:
                    now = self._session(tenant_id, session_id)
                    if now is None or now.updated_at >= idle_before:
                        return False
                self._delete_locked(sd, tenant_id, session_id)
        except NotFoundError:
            return False
        self._drop_index("sessions", session_id, tenant_id, None)
        return True

    def _delete_locked(self, sd: str, tenant_id: str, session_id: str) -> None:
        # Gone for every reader from here on; the rest only frees space.
        self.backend.delete(f"{sd}/session.json")
        for start in self._numbers(f"{sd}/messages"):
            segment = self._segment(sd, start)
            for message in segment.messages if segment else ():
                self._drop_index("messages", message["id"], tenant_id, session_id)
        for n in self._numbers(f"{sd}/api-calls"):
            doc = self._json(f"{sd}/api-calls/{layout.numbered(n)}")
            if isinstance(doc, dict):
                self._drop_index("api-calls", doc["id"], tenant_id, session_id)
        for version in self._numbers(layout.checkpoints_dir(sd)):
            doc = self._json(layout.checkpoint_file(sd, version))
            if isinstance(doc, dict):
                self._drop_index("checkpoints", doc["checkpoint"]["id"], tenant_id, session_id)
        self.backend.rmtree(sd)

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

    @hookimpl
    async def threadline_delete_session(self, tenant_id: str, session_id: str) -> bool:
        return await self._run(self._delete_session, tenant_id, session_id)

    # -- messages: reading segments ------------------------------------------------------

    def _segment(self, sd: str, start: int) -> _Segment | None:
        path = layout.segment_file(sd, start)
        data = self.backend.read(path)
        if data is None:
            return None
        return _Segment.from_doc(decode(data, path), path)

    def _need_segment(self, sd: str, start: int) -> _Segment:
        segment = self._segment(sd, start)
        if segment is None:
            raise StoreError(f"message segment {start} of {sd} is missing; the store is damaged")
        return segment

    def _tail(self, sd: str) -> tuple[_Tail, _Segment | None]:
        """The last segment's extent, from the ``head.json`` hint plus probing for newer ones.

        Also returns the last segment when it had to be read anyway.
        """
        head = self._hint(f"{sd}/head.json")
        last: _Segment | None = None
        if (
            isinstance(head, dict)
            and isinstance(head.get("start"), int)
            and isinstance(head.get("end"), int)
            and isinstance(head.get("systems"), list)
        ):
            tail = _Tail(head["start"], head["end"], head["systems"])
        else:  # no hint (or a damaged one): the listing is the truth
            starts = self._numbers(f"{sd}/messages")
            if not starts:
                tail = _Tail(0, 0, [])
            else:
                last = self._need_segment(sd, starts[-1])
                tail = _Tail(last.start, last.end, last.systems)
        while True:  # segments written after the hint (a crash, or a racing process)
            newer = self._segment(sd, tail.end + 1)
            if newer is None:
                return tail, last
            last = newer
            tail = _Tail(newer.start, newer.end, newer.systems)

    def _segments_back(self, sd: str, tail: _Tail, down_to: int) -> list[_Segment]:
        """Segments from the last one back to the one holding seq ``down_to``, oldest first."""
        out: list[_Segment] = []
        start = tail.start
        while start:
            segment = self._need_segment(sd, start)
            out.append(segment)
            if segment.start <= down_to:
                break
            start = segment.prev
        out.reverse()
        return out

    def _read_range(self, sd: str, tail: _Tail, after: int, stop: int) -> list[dict[str, Any]]:
        """Message dicts with ``after < seq <= stop``."""
        if stop <= after:
            return []
        if tail.end - after <= 4 * (stop - after) + 64:  # near the end: walk back
            segments = self._segments_back(sd, tail, after + 1)
        else:  # far from the end: find the first segment through the listing
            starts = [s for s in self._numbers(f"{sd}/messages") if s <= stop]
            first = max((i for i, s in enumerate(starts) if s <= after + 1), default=0)
            segments = [self._need_segment(sd, s) for s in starts[first:]]
        out: list[dict[str, Any]] = []
        for segment in segments:
            for offset, data in enumerate(segment.messages):
                if after < segment.start + offset <= stop:
                    out.append(data)
        return out

    def _get_messages(
        self, tenant_id: str, session_id: str, after_seq: int, limit: int | None
    ) -> list[Message]:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return []
        tail, _ = self._tail(sd)
        stop = tail.end if limit is None else min(tail.end, after_seq + limit)
        return [message_from_dict(d) for d in self._read_range(sd, tail, after_seq, stop)]

    @hookimpl
    async def threadline_get_messages(
        self, tenant_id: str, session_id: str, after_seq: int, limit: int | None
    ) -> list[Message]:
        return await self._run(self._get_messages, tenant_id, session_id, after_seq, limit)

    def _load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        if last_rounds is None:
            return self._get_messages(tenant_id, session_id, 0, None)
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return []
        tail, last = self._tail(sd)
        if tail.end == 0:
            return []
        # window.window_start, computed on a suffix read backwards from the end: enough
        # segments for the rounds, then (rarely) back to the nearest earlier call of
        # each tool result whose call lies before the window. calls/ tells which ids
        # were called before at all, so a result without any call costs no scan.
        suffix = _Suffix(self, sd, tail, last)
        start = tail.end + 1
        if last_rounds > 0:
            users = 0
            while True:
                chunk = suffix.extend()
                if chunk is None:
                    break
                users += sum(1 for m in chunk if m.role == "user")
                if users >= last_rounds:
                    break
            start = suffix.first + round_start(suffix.messages, last_rounds)
        while start > 1:
            orphans = orphaned_tool_results(suffix.messages[start - suffix.first :])
            wanted = set()
            for call_id in orphans:
                first = self._first_call(sd, call_id)
                if first is not None and first < start:
                    wanted.add(call_id)
            earliest = None
            seq = start - 1
            while wanted and seq >= 1:
                suffix.reach(seq)
                found = {c.id for c in suffix.at(seq).tool_calls} & wanted
                if found:
                    earliest = seq
                    wanted -= found
                seq -= 1
            if earliest is None:
                break
            start = earliest
            while start > 1 and suffix.at(start).role != "user":  # back to its round's start
                start -= 1
                suffix.reach(start)
        window = suffix.messages[start - suffix.first :] if start <= tail.end else []
        # System messages before the window, wherever they are (their seqs ride along).
        head: list[Message] = []
        for seq, segment_start in tail.systems:
            if seq >= start:
                break
            head.append(suffix.system(seq, segment_start))
        return head + window

    @hookimpl
    async def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        return await self._run(self._load_window, tenant_id, session_id, last_rounds)

    def _count_messages(self, tenant_id: str, session_id: str) -> int:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return 0
        return self._tail(sd)[0].end

    @hookimpl
    async def threadline_count_messages(self, tenant_id: str, session_id: str) -> int:
        return await self._run(self._count_messages, tenant_id, session_id)

    # -- messages: writing ---------------------------------------------------------------

    def _find_message(self, message_id: str) -> _Found | None:
        """Where the id index says a message is, if its segment agrees."""
        entry = self._hint(layout.id_file("messages", message_id))
        if not isinstance(entry, dict):
            return None
        try:
            sd = layout.session_dir(entry["tenant_id"], entry["session_id"])
            seq, start = int(entry["seq"]), int(entry["segment"])
        except (KeyError, TypeError, ValueError, ValidationError):
            return None
        if self._session_doc(sd) is None:
            return None
        segment = self._segment(sd, start)
        index = seq - start
        if segment is None or not 0 <= index < len(segment.messages):
            return None
        if segment.messages[index].get("id") != message_id:
            return None
        return _Found(sd, segment, index)

    def _call_file(self, sd: str, call_id: str) -> str:
        return f"{sd}/calls/c-{layout.encode_name(call_id, 'tool call id', allow_empty=True)}.json"

    def _first_call(self, sd: str, call_id: str, *, exact: bool = False) -> int | None:
        """The seq of the first message that called ``call_id``; ``None``: never called.

        The entry is written before the message, so a missing one means no call. One the
        segment does not confirm (a crash, an update that changed the calls) could be
        anywhere: 1 then, unless ``exact``, which gives ``None`` for it.
        """
        entry = self._hint(self._call_file(sd, call_id))
        if entry is None:
            return None
        try:
            seq, start = int(entry["seq"]), int(entry["segment"])
        except (KeyError, TypeError, ValueError):
            return None if exact else 1
        segment = self._segment(sd, start)
        index = seq - start
        if segment is not None and 0 <= index < len(segment.messages):
            calls = segment.messages[index].get("tool_calls") or ()
            if any(c.get("id") == call_id for c in calls):
                return seq
        return None if exact else 1

    def _index_calls(self, sd: str, start: int, dicts: Sequence[dict[str, Any]]) -> None:
        """Record the first message that calls each tool-call id (kept: an earlier one)."""
        seen: set[str] = set()
        for d in dicts:
            for call in d["tool_calls"]:
                call_id = call["id"]
                if call_id in seen:
                    continue
                first = self._first_call(sd, call_id, exact=True)
                if first is not None and first < d["seq"]:
                    continue
                seen.add(call_id)
                entry = encode({"seq": d["seq"], "segment": start}, "call index")
                self.backend.write(self._call_file(sd, call_id), entry)

    def _marker(self, sd: str, seq: int, message_id: str) -> str:
        return f"{sd}/streaming/{layout.numbered(seq)[:-5]}-{message_id}.json"

    def _save_messages(self, messages: Sequence[Message]) -> list[Message]:
        if not messages:
            return []
        first = messages[0]
        tenant_id, session_id = first.tenant_id, first.session_id
        sd = self._require_session(tenant_id, session_id)
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        missing = f"session {session_id} not found for this tenant"
        with self._locked(f"{sd}/lock", missing):
            self._require_session(tenant_id, session_id)
            stored: dict[str, Message] = {}
            for m in messages:  # check everything before writing anything
                found = self._find_message(m.id)
                if found is None:
                    continue
                data = found.data
                if data["session_id"] != m.session_id or data["tenant_id"] != m.tenant_id:
                    raise _unusable_id("message", m.id)
                stored[m.id] = message_from_dict(data)
            new = [m for m in messages if m.id not in stored]
            dicts = [m.to_dict() for m in new]
            while True:
                tail, _ = self._tail(sd)
                segment = _Segment(tail.end + 1, tail.start, list(tail.systems), dicts)
                for offset, (m, d) in enumerate(zip(new, dicts)):
                    d["seq"] = segment.start + offset
                    if m.role == "system":
                        segment.systems.append([d["seq"], segment.start])
                if not new:
                    break
                payload = segment.to_bytes()  # refuses what is not JSON before any write
                markers = []
                for d in dicts:
                    index = {
                        "tenant_id": tenant_id,
                        "session_id": session_id,
                        "seq": d["seq"],
                        "segment": segment.start,
                    }
                    self.backend.write(layout.id_file("messages", d["id"]), encode(index, "index"))
                    if d["status"] == "streaming":
                        marker = self._marker(sd, d["seq"], d["id"])
                        self.backend.write(marker, encode({"segment": segment.start}, "marker"))
                        markers.append(marker)
                self._index_calls(sd, segment.start, dicts)
                if self.backend.create(layout.segment_file(sd, segment.start), payload):
                    written = _Segment.from_doc(decode(payload, "segment"), "segment")
                    for d in written.messages:
                        stored[d["id"]] = message_from_dict(d)
                    break
                for marker in markers:  # another writer took these seqs: try the next ones
                    self.backend.delete(marker)
            head = {
                "start": segment.start if new else tail.start,
                "end": segment.end if new else tail.end,
                "systems": segment.systems,
                "updated_at": utcnow().isoformat(),
            }
            self.backend.write(f"{sd}/head.json", encode(head, "head"), durable=False)
        return [stored[m.id] for m in messages]

    @hookimpl
    async def threadline_save_message(self, message: Message) -> Message:
        [stored] = await self._run(self._save_messages, [message])
        return stored

    @hookimpl
    async def threadline_save_messages(self, messages: Sequence[Message]) -> list[Message]:
        return await self._run(self._save_messages, list(messages))

    def _update_message(self, message: Message) -> Message:
        missing = f"message {message.id} not found for this tenant"
        found = self._find_message(message.id)
        if found is None or found.data["tenant_id"] != message.tenant_id:
            raise NotFoundError(missing)
        with self._locked(f"{found.session_dir}/lock", missing):
            found = self._find_message(message.id)  # again, under the lock
            if found is None or found.data["tenant_id"] != message.tenant_id:
                raise NotFoundError(missing)
            old = found.data
            new = dict(old)
            new.update(
                content=message.content,
                status=message.status,
                name=message.name,
                metadata=message.metadata,
                tool_calls=[c.to_dict() for c in message.tool_calls],
            )
            segment = found.segment
            segment.messages[found.index] = new
            data = segment.to_bytes()
            marker = self._marker(found.session_dir, old["seq"], old["id"])
            if new["status"] == "streaming":
                self.backend.write(marker, encode({"segment": segment.start}, "marker"))
            self._index_calls(found.session_dir, segment.start, [new])
            self._touch(found.session_dir)
            self.backend.write(layout.segment_file(found.session_dir, segment.start), data)
            if new["status"] != "streaming":
                self.backend.delete(marker)
        written = _Segment.from_doc(decode(data, "segment"), "segment")
        return message_from_dict(written.messages[found.index])

    @hookimpl
    async def threadline_update_message(self, message: Message) -> Message:
        return await self._run(self._update_message, message)

    def _interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None or not self.backend.listdir(f"{sd}/streaming"):
            return 0
        try:
            with self._locked(f"{sd}/lock", "gone"):
                if self._session_doc(sd) is None:
                    return 0
                self.backend.sweep_temporary(sd)  # what the crashed writer left half-written
                return self._interrupt_locked(sd)
        except NotFoundError:
            return 0

    def _interrupt_locked(self, sd: str) -> int:
        changed = 0
        names = self.backend.listdir(f"{sd}/streaming")
        dirty: dict[int, _Segment] = {}
        for name in names:
            seq_text, _, rest = name.partition("-")
            doc = self._hint(f"{sd}/streaming/{name}")
            if not seq_text.isdigit() or not isinstance(doc, dict):
                continue
            start = int(doc.get("segment", 0))
            segment = dirty.get(start) or self._segment(sd, start)
            index = int(seq_text) - start
            if segment is None or not 0 <= index < len(segment.messages):
                continue
            data = segment.messages[index]
            if data["id"] == rest[:-5] and data["status"] == "streaming":
                segment.messages[index] = {**data, "status": "interrupted"}
                dirty[start] = segment
                changed += 1
        if dirty:
            self._touch(sd)
        for start, segment in dirty.items():
            self.backend.write(layout.segment_file(sd, start), segment.to_bytes())
        for name in names:
            self.backend.delete(f"{sd}/streaming/{name}")
        return changed

    @hookimpl
    async def threadline_interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        return await self._run(self._interrupt_streaming, tenant_id, session_id)

    # -- API calls -----------------------------------------------------------------------

    def _find_api_call(self, call_id: str) -> ApiCall | None:
        entry = self._hint(layout.id_file("api-calls", call_id))
        if not isinstance(entry, dict):
            return None
        try:
            sd = layout.session_dir(entry["tenant_id"], entry["session_id"])
            path = f"{sd}/api-calls/{layout.numbered(int(entry['n']))}"
        except (KeyError, TypeError, ValueError, ValidationError):
            return None
        if self._session_doc(sd) is None:
            return None
        doc = self._json(path)
        if not isinstance(doc, dict) or doc.get("id") != call_id:
            return None
        return ApiCall.from_dict(doc)

    def _save_api_call(self, api_call: ApiCall) -> ApiCall:
        tenant_id, session_id = api_call.tenant_id, api_call.session_id
        sd = self._require_session(tenant_id, session_id)
        data = encode(api_call.to_dict(), "api call")
        missing = f"session {session_id} not found for this tenant"
        with self._locked(f"{sd}/lock", missing):
            self._require_session(tenant_id, session_id)
            existing = self._find_api_call(api_call.id)
            if existing is not None:
                if existing.session_id != session_id or existing.tenant_id != tenant_id:
                    raise _unusable_id("api call", api_call.id)
                return existing
            self._touch(sd)
            while True:
                n = max(self._numbers(f"{sd}/api-calls"), default=0) + 1
                index = {"tenant_id": tenant_id, "session_id": session_id, "n": n}
                self.backend.write(layout.id_file("api-calls", api_call.id), encode(index, "index"))
                if self.backend.create(f"{sd}/api-calls/{layout.numbered(n)}", data):
                    break
        return ApiCall.from_dict(decode(data, "api call"))

    @hookimpl
    async def threadline_save_api_call(self, api_call: ApiCall) -> ApiCall:
        return await self._run(self._save_api_call, api_call)

    def _list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return []
        calls = []
        for n in self._numbers(f"{sd}/api-calls"):
            doc = self._json(f"{sd}/api-calls/{layout.numbered(n)}")
            if isinstance(doc, dict):
                calls.append(ApiCall.from_dict(doc))
        return calls

    @hookimpl
    async def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        return await self._run(self._list_api_calls, tenant_id, session_id)

    # -- checkpoints ---------------------------------------------------------------------

    def _checkpoint_doc(self, sd: str, version: int) -> dict[str, Any] | None:
        doc = self._json(layout.checkpoint_file(sd, version))
        return doc if isinstance(doc, dict) else None

    def _history(
        self,
        sd: str,
        version: int,
        docs: dict[int, dict[str, Any]],
        histories: dict[int, tuple[Message, ...]] | None = None,
    ) -> tuple[Message, ...]:
        """The whole history of a checkpoint: its chain's snapshot plus the deltas after it.

        ``docs`` and ``histories`` (by version) are filled in and reused, so listing a
        session decodes each record once.
        """
        histories = {} if histories is None else histories
        chain: list[tuple[int, dict[str, Any]]] = []
        current: int | None = version
        while current is not None and current not in histories:
            doc = docs.get(current) or self._checkpoint_doc(sd, current)
            if doc is None:
                raise StoreError(f"checkpoint {current} of {sd} is missing; the store is damaged")
            docs[current] = doc
            chain.append((current, doc))
            current = _base_of(doc)
        history: tuple[Message, ...] = histories[current] if current is not None else ()
        for number, doc in reversed(chain):
            built = list(history)
            record = doc["history"]
            header = doc["checkpoint"]
            if "v" in record:
                apply_record(built, record, tenant_id=header["tenant_id"],
                             session_id=header["session_id"])  # fmt: skip
            else:  # written before the shared record format: the messages after the base's
                built.extend(message_from_dict(d) for d in record["messages"])
            history = histories[number] = tuple(built)
        return history

    def _checkpoint(
        self,
        sd: str,
        version: int,
        docs: dict[int, dict[str, Any]],
        histories: dict[int, tuple[Message, ...]] | None = None,
    ) -> Checkpoint:
        doc = docs.get(version) or self._checkpoint_doc(sd, version)
        if doc is None:
            raise StoreError(f"checkpoint {version} of {sd} is missing; the store is damaged")
        docs[version] = doc
        history = self._history(sd, version, docs, histories)
        checkpoint = Checkpoint.from_dict({**doc["checkpoint"], "history": history})
        self._histories.put(checkpoint.id, doc.get("tag"), doc.get("depth"), history)
        return checkpoint

    def _locate_checkpoint(self, checkpoint_id: str) -> tuple[str, int, dict[str, Any]] | None:
        """(session folder, version, file) of a checkpoint, if the index and the file agree."""
        entry = self._hint(layout.id_file("checkpoints", checkpoint_id))
        if not isinstance(entry, dict):
            return None
        try:
            sd = layout.session_dir(entry["tenant_id"], entry["session_id"])
            version = int(entry["version"])
        except (KeyError, TypeError, ValueError, ValidationError):
            return None
        if self._session_doc(sd) is None:
            return None
        doc = self._checkpoint_doc(sd, version)
        if doc is None or doc["checkpoint"].get("id") != checkpoint_id:
            return None
        return sd, version, doc

    def _create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        tenant_id, session_id = checkpoint.tenant_id, checkpoint.session_id
        sd = self._require_session(tenant_id, session_id)
        header = _header(checkpoint)
        encode(header, "checkpoint")  # refuse unserialisable input/state before writing
        missing = f"session {session_id} not found for this tenant"
        with self._locked(f"{sd}/lock", missing):
            self._require_session(tenant_id, session_id)
            located = self._locate_checkpoint(checkpoint.id)
            if located is not None:
                existing = self._checkpoint(located[0], located[1], {located[1]: located[2]})
                if attrs.evolve(existing, version=None) != attrs.evolve(checkpoint, version=None):
                    raise _unusable_id("checkpoint", checkpoint.id)
                return existing
            base: int | None = None
            parent_history: tuple[Message, ...] | None = None
            parent_depth = 0
            if checkpoint.parent_id is not None:
                parent = self._locate_checkpoint(checkpoint.parent_id)
                if parent is None or parent[0] != sd:
                    raise NotFoundError(
                        f"parent checkpoint {checkpoint.parent_id} not found in this session"
                    )
                _, base, parent_doc = parent
                parent_depth = parent_doc.get("depth", 0)
                cached = self._histories.get(checkpoint.parent_id)
                if cached is not None and cached.tag == parent_doc.get("tag"):
                    parent_history = cached.history
                else:
                    parent_history = self._history(sd, base, {base: parent_doc})
                    self._histories.put(checkpoint.parent_id, parent_doc.get("tag"),
                                        parent_depth, parent_history)  # fmt: skip
            encoded = encode_history(
                checkpoint.history, tenant_id=tenant_id, session_id=session_id,
                parent=parent_history, parent_depth=parent_depth,
                snapshot_every=self.snapshot_every,
            )  # fmt: skip
            tag = new_tag()
            self._touch(sd)  # a graph's progress is the session's activity
            while True:
                version = max(self._numbers(layout.checkpoints_dir(sd)), default=0) + 1
                header["version"] = version
                doc = {
                    "checkpoint": header,
                    "history": encoded.record,
                    "base": None if encoded.is_snapshot else base,
                    "depth": encoded.depth,
                    "tag": tag,
                }
                data = encode(doc, "checkpoint")
                index = {"tenant_id": tenant_id, "session_id": session_id, "version": version}
                self.backend.write(
                    layout.id_file("checkpoints", checkpoint.id), encode(index, "index")
                )
                if self.backend.create(layout.checkpoint_file(sd, version), data):
                    break
        self._histories.put(checkpoint.id, tag, encoded.depth, checkpoint.history)
        stored = decode(encode(header, "checkpoint"), "checkpoint")
        return Checkpoint.from_dict({**stored, "history": checkpoint.history})

    @hookimpl
    async def threadline_create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        return await self._run(self._create_checkpoint, checkpoint)

    def _get_checkpoint(self, tenant_id: str, checkpoint_id: str) -> Checkpoint | None:
        located = self._locate_checkpoint(checkpoint_id)
        if located is None or located[2]["checkpoint"].get("tenant_id") != tenant_id:
            return None
        sd, version, doc = located
        return self._checkpoint(sd, version, {version: doc})

    @hookimpl
    async def threadline_get_checkpoint(
        self, tenant_id: str, checkpoint_id: str
    ) -> Checkpoint | None:
        return await self._run(self._get_checkpoint, tenant_id, checkpoint_id)

    def _session_checkpoints(self, sd: str, agent_id: str | None) -> list[Checkpoint]:
        docs: dict[int, dict[str, Any]] = {}
        histories: dict[int, tuple[Message, ...]] = {}
        out = []
        for version in self._numbers(layout.checkpoints_dir(sd)):
            checkpoint = self._checkpoint(sd, version, docs, histories)
            if agent_id is None or checkpoint.agent_id == agent_id:
                out.append(checkpoint)
        return out

    def _list_checkpoints(
        self, tenant_id: str, session_id: str | None, agent_id: str | None
    ) -> list[Checkpoint]:
        if session_id is not None:
            sd = layout.session_dir(tenant_id, session_id)
            if self._session_doc(sd) is None:
                return []
            return self._session_checkpoints(sd, agent_id)
        sessions = []
        for name in self.backend.listdir(layout.sessions_dir(tenant_id)):
            try:
                layout.safe_id(name, "session_id")
            except ValidationError:
                continue
            doc = self._session_doc(layout.session_dir(tenant_id, name))
            if doc is not None:
                sessions.append((parse_time(doc["created_at"]), name))
        out = []
        for _, name in sorted(sessions):
            out.extend(self._session_checkpoints(layout.session_dir(tenant_id, name), agent_id))
        return out

    @hookimpl
    async def threadline_list_checkpoints(
        self, tenant_id: str, session_id: str | None, agent_id: str | None
    ) -> list[Checkpoint]:
        return await self._run(self._list_checkpoints, tenant_id, session_id, agent_id)

    def _get_latest_checkpoint(
        self, tenant_id: str, session_id: str, agent_id: str | None
    ) -> Checkpoint | None:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return None
        docs: dict[int, dict[str, Any]] = {}
        for version in reversed(self._numbers(layout.checkpoints_dir(sd))):
            doc = self._checkpoint_doc(sd, version)
            if doc is None:
                continue
            if agent_id is None or doc["checkpoint"].get("agent_id") == agent_id:
                docs[version] = doc
                return self._checkpoint(sd, version, docs)
        return None

    @hookimpl
    async def threadline_get_latest_checkpoint(
        self, tenant_id: str, session_id: str, agent_id: str | None
    ) -> Checkpoint | None:
        return await self._run(self._get_latest_checkpoint, tenant_id, session_id, agent_id)

    # -- retention -----------------------------------------------------------------------

    def _erase_user(self, tenant_id: str, user_id: str, dry_run: bool) -> dict[str, int]:
        counts = {"sessions": 0, "messages": 0, "messages_redacted": 0, "api_calls": 0,
                  "checkpoints": 0, "checkpoints_redacted": 0}  # fmt: skip
        for session in self._list_sessions(tenant_id, None, None, 2**62, 0):
            if session.user_id == user_id:
                continue
            redacted, calls, checkpoints = self._erase_elsewhere(
                tenant_id, session.id, user_id, dry_run
            )
            counts["messages_redacted"] += redacted
            counts["api_calls"] += calls
            counts["checkpoints_redacted"] += checkpoints
        for session in self._list_sessions(tenant_id, user_id, None, 2**62, 0):
            sd = layout.session_dir(tenant_id, session.id)
            messages = self._count_messages(tenant_id, session.id)
            calls = len(self._numbers(f"{sd}/api-calls"))
            checkpoints = len(self._numbers(layout.checkpoints_dir(sd)))
            if dry_run or self._delete_session(tenant_id, session.id):
                counts["sessions"] += 1
                counts["messages"] += messages
                counts["api_calls"] += calls
                counts["checkpoints"] += checkpoints
        return counts

    def _erase_elsewhere(
        self, tenant_id: str, session_id: str, user_id: str, dry_run: bool
    ) -> tuple[int, int, int]:
        """Redact the user's messages in another user's session and delete their API calls.

        Messages are redacted with :func:`threadline.storekit.erasure.redact` (id, role, seq, status
        and tool_call_id stay); the ``calls/`` index entries of redacted tool calls are left
        (a stale entry only costs the window a scan). Checkpoint histories are redacted by
        :meth:`_redact_checkpoints`. Returns ``(messages redacted, API calls deleted,
        checkpoints redacted)``.
        """
        sd = layout.session_dir(tenant_id, session_id)
        try:
            with self._locked(f"{sd}/lock", "gone"):
                if self._session_doc(sd) is None:
                    return 0, 0, 0
                redacted = 0
                for start in self._numbers(f"{sd}/messages"):
                    segment = self._need_segment(sd, start)
                    hits = [
                        i for i, d in enumerate(segment.messages) if d.get("user_id") == user_id
                    ]
                    redacted += len(hits)
                    if dry_run or not hits:
                        continue
                    for i in hits:
                        segment.messages[i] = redact(
                            message_from_dict(segment.messages[i])
                        ).to_dict()
                    self.backend.write(layout.segment_file(sd, start), segment.to_bytes())
                calls = 0
                for n in self._numbers(f"{sd}/api-calls"):
                    path = f"{sd}/api-calls/{layout.numbered(n)}"
                    doc = self._json(path)
                    if not isinstance(doc, dict) or doc.get("user_id") != user_id:
                        continue
                    calls += 1
                    if not dry_run:
                        self.backend.delete(path)
                        self._drop_index("api-calls", doc["id"], tenant_id, session_id)
                checkpoints = self._redact_checkpoints(sd, user_id, dry_run)
                return redacted, calls, checkpoints
        except NotFoundError:
            return 0, 0, 0

    def _redact_checkpoints(self, sd: str, user_id: str, dry_run: bool) -> int:
        """Redact the user's messages in a session's checkpoint histories (under its lock).

        Returns how many checkpoints held one. Each of them is rewritten (atomically, as
        prune does) with a new write tag, so that no cache serves its old history; its
        history record is replaced by :func:`threadline.storekit.erasure.redact_record` (same
        kind, ``keep``, base and depth, so every delta on it stays valid) only when its
        own messages hold the user's. Files are rewritten newest first, so a delta is
        rewritten before its base, and a rewritten delta names the ``user_id`` of its
        first message even where the format could leave it out: every record reads the
        same whether or not its base is rewritten yet, so a crash part way leaves every
        checkpoint readable and what still holds the user's messages for a second run.
        A session none of whose files holds the user id is skipped undecoded: a
        message's ``user_id`` is left out of a record only after a message of the same
        user in the same history, and so in the same session.
        """
        needle = encode(user_id, "user id")
        files: dict[int, bytes] = {}
        for version in self._numbers(layout.checkpoints_dir(sd)):
            data = self.backend.read(layout.checkpoint_file(sd, version))
            if data is not None:
                files[version] = data
        if not any(needle in data for data in files.values()):
            return 0
        docs: dict[int, dict[str, Any]] = {}
        for version, data in files.items():
            doc = decode(data, layout.checkpoint_file(sd, version))
            if isinstance(doc, dict):
                docs[version] = doc
        histories: dict[int, tuple[Message, ...]] = {}
        held = [
            version
            for version in list(docs)
            if any(m.user_id == user_id for m in self._history(sd, version, docs, histories))
        ]
        if dry_run:
            return len(held)
        for version in reversed(held):
            doc = docs[version]
            header = doc["checkpoint"]
            history = histories[version]
            redacted, _ = redact_history(history, user_id)
            record = doc["history"]
            if "v" in record:
                keep, _ = load_record(record)
                encoded = redact_record(
                    history, keep, user_id, tenant_id=header["tenant_id"],
                    session_id=header["session_id"], depth=doc.get("depth", 0),
                )  # fmt: skip
                if encoded is not None:
                    record = encoded.record
                    items = record["messages"]
                    if keep and items and "user_id" not in items[0]:
                        first = {**items[0], "user_id": redacted[keep].user_id}
                        record = {**record, "messages": [first, *items[1:]]}
            else:  # written before the shared record format: the messages after the base's
                record = {**record, "messages": [
                    redact(message_from_dict(d)).to_dict() if d.get("user_id") == user_id else d
                    for d in record["messages"]
                ]}  # fmt: skip
            tag = new_tag()
            rewritten = {**doc, "history": record, "tag": tag}
            self.backend.write(layout.checkpoint_file(sd, version), encode(rewritten, "checkpoint"))
            self._histories.put(header["id"], tag, doc.get("depth"), redacted)
        return len(held)

    @hookimpl
    async def threadline_erase_user(
        self, tenant_id: str, user_id: str, dry_run: bool
    ) -> dict[str, int]:
        return await self._run(self._erase_user, tenant_id, user_id, dry_run)

    def _delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        gone = 0
        for session in self._list_sessions(tenant_id, user_id, None, 2**62, 0):
            if session.updated_at < before and (
                dry_run or self._delete_session(tenant_id, session.id, before)
            ):
                gone += 1
        return gone

    @hookimpl
    async def threadline_delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        return await self._run(self._delete_sessions_before, tenant_id, before, user_id, dry_run)

    def _prune_checkpoints(self, tenant_id: str, session_id: str, keep: int, dry_run: bool) -> int:
        """Delete all but the newest ``keep`` versions.

        A kept checkpoint whose history record is a delta on one that goes is first
        rewritten (atomically) as a snapshot of its whole history, with a new write tag;
        only then are the old files deleted, each before its id index, so a crash part
        way leaves every kept checkpoint readable.
        """
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return 0
        try:
            with self._locked(f"{sd}/lock", "gone"):
                if self._session_doc(sd) is None:
                    return 0
                versions = self._numbers(layout.checkpoints_dir(sd))
                doomed = versions[: max(len(versions) - keep, 0)]
                if dry_run or not doomed:
                    return len(doomed)
                gone = set(doomed)
                for version in versions[len(doomed) :]:
                    doc = self._checkpoint_doc(sd, version)
                    if doc is None or _base_of(doc) not in gone:
                        continue
                    history = self._history(sd, version, {version: doc})
                    encoded = encode_history(history, tenant_id=tenant_id, session_id=session_id)
                    rewritten = {**doc, "history": encoded.record, "base": None, "depth": 0,
                                 "tag": new_tag()}  # fmt: skip
                    self.backend.write(
                        layout.checkpoint_file(sd, version), encode(rewritten, "checkpoint")
                    )
                for version in doomed:
                    doc = self._checkpoint_doc(sd, version)
                    self.backend.delete(layout.checkpoint_file(sd, version))
                    if doc is not None:
                        checkpoint_id = doc["checkpoint"]["id"]
                        self._drop_index("checkpoints", checkpoint_id, tenant_id, session_id)
                return len(doomed)
        except NotFoundError:
            return 0

    @hookimpl
    async def threadline_prune_checkpoints(
        self, tenant_id: str, session_id: str, keep: int, dry_run: bool
    ) -> int:
        return await self._run(self._prune_checkpoints, tenant_id, session_id, keep, dry_run)

    # -- agent configs -------------------------------------------------------------------

    def _claim_owner(self, kind: str, record_id: str) -> dict[str, Any] | None:
        entry = self._hint(layout.id_file(kind, record_id))
        return (
            entry if isinstance(entry, dict) and isinstance(entry.get("tenant_id"), str) else None
        )

    def _agent_at(self, tenant_id: str, code: str) -> AgentRecord | None:
        doc = self._json(layout.agent_file(tenant_id, code))
        if not isinstance(doc, dict) or doc.get("code") != code:
            return None
        return AgentRecord.from_dict(doc)

    def _agent_by_id(self, tenant_id: str, agent_id: str) -> AgentRecord | None:
        entry = self._claim_owner("agents", agent_id)
        if entry is None or entry["tenant_id"] != tenant_id:
            return None
        code = entry.get("code")
        agent = self._agent_at(tenant_id, code) if isinstance(code, str) else None
        if agent is not None and agent.id == agent_id:
            return agent
        for candidate in self._agents(tenant_id):  # the index lags a rename cut short
            if candidate.id == agent_id:
                return candidate
        return None

    def _agents(self, tenant_id: str) -> list[AgentRecord]:
        folder = layout.agents_dir(tenant_id)
        out = []
        for name in self.backend.listdir(folder):
            if name.endswith(".json"):
                doc = self._json(f"{folder}/{name}")
                if isinstance(doc, dict):
                    out.append(AgentRecord.from_dict(doc))
        return out

    def _provider(self, tenant_id: str, provider_id: str) -> ProviderRecord | None:
        doc = self._json(layout.provider_file(tenant_id, provider_id))
        return ProviderRecord.from_dict(doc) if isinstance(doc, dict) else None

    def _config(self, agent: AgentRecord) -> AgentConfig:
        provider = self._provider(agent.tenant_id, agent.provider_id) if agent.provider_id else None
        return AgentConfig(agent=agent, provider=provider)

    def _save_agent_config(self, config: AgentConfig) -> AgentConfig:
        agent, provider = config.agent, config.provider
        tenant_id = agent.tenant_id
        if provider is not None:
            agent = attrs.evolve(agent, provider_id=provider.id)
        agent_data = encode(agent.to_dict(), "agent")
        provider_data = None if provider is None else encode(provider.to_dict(), "provider")
        agent_path = layout.agent_file(tenant_id, agent.code)
        lock = f"{layout.tenant_dir(tenant_id)}/agents.lock"
        with ExitStack() as stack:
            stack.enter_context(self.backend.lock(lock, self.lock_timeout, create_parent=True))
            claim = self._claim_owner("agents", agent.id)
            if claim is not None and claim["tenant_id"] != tenant_id:
                if self._agent_by_id(claim["tenant_id"], agent.id) is not None:
                    raise _unusable_id("agent", agent.id)
                claim = None
            holder = self._agent_at(tenant_id, agent.code)
            if holder is not None and holder.id != agent.id:
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
            if provider is not None:
                owner = self._claim_owner("providers", provider.id)
                if (
                    owner is not None
                    and owner["tenant_id"] != tenant_id
                    and self._provider(owner["tenant_id"], provider.id) is not None
                ):
                    raise _unusable_id("provider", provider.id)
            old_code = claim.get("code") if claim is not None else None
            self.backend.write(
                layout.id_file("agents", agent.id),
                encode({"tenant_id": tenant_id, "code": agent.code}, "index"),
            )
            if provider is not None and provider_data is not None:
                self.backend.write(
                    layout.id_file("providers", provider.id),
                    encode({"tenant_id": tenant_id}, "index"),
                )
                self.backend.write(layout.provider_file(tenant_id, provider.id), provider_data)
            self.backend.write(agent_path, agent_data)
            if isinstance(old_code, str) and old_code != agent.code:  # renamed: drop the old file
                previous = self._agent_at(tenant_id, old_code)
                if previous is not None and previous.id == agent.id:
                    self.backend.delete(layout.agent_file(tenant_id, old_code))
        return AgentConfig(
            agent=AgentRecord.from_dict(decode(agent_data, "agent")),
            provider=None
            if provider_data is None
            else ProviderRecord.from_dict(decode(provider_data, "provider")),
        )

    @hookimpl
    async def threadline_save_agent_config(self, config: AgentConfig) -> AgentConfig:
        return await self._run(self._save_agent_config, config)

    def _load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        if agent_id is not None:
            agent = self._agent_by_id(tenant_id, agent_id)
        elif code is not None:
            agent = self._agent_at(tenant_id, code)
        else:
            return None
        return None if agent is None else self._config(agent)

    @hookimpl
    async def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        return await self._run(self._load_agent_config, tenant_id, code, agent_id)

    def _list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        agents = sorted(self._agents(tenant_id), key=lambda a: (a.code, a.id))
        return [self._config(a) for a in agents]

    @hookimpl
    async def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        return await self._run(self._list_agent_configs, tenant_id)

    def _save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        tenant_id = provider.tenant_id
        data = encode(provider.to_dict(), "provider")
        path = layout.provider_file(tenant_id, provider.id)
        lock = f"{layout.tenant_dir(tenant_id)}/agents.lock"
        with self.backend.lock(lock, self.lock_timeout, create_parent=True):
            owner = self._claim_owner("providers", provider.id)
            if (
                owner is not None
                and owner["tenant_id"] != tenant_id
                and self._provider(owner["tenant_id"], provider.id) is not None
            ):
                raise _unusable_id("provider", provider.id)
            self.backend.write(
                layout.id_file("providers", provider.id), encode({"tenant_id": tenant_id}, "index")
            )
            self.backend.write(path, data)
        return ProviderRecord.from_dict(decode(data, "provider"))

    @hookimpl
    async def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        return await self._run(self._save_provider, provider)

    def _list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        folder = f"{layout.tenant_dir(tenant_id)}/providers"
        out = []
        for name in self.backend.listdir(folder):
            if name.endswith(".json"):
                doc = self._json(f"{folder}/{name}")
                if isinstance(doc, dict):
                    out.append(ProviderRecord.from_dict(doc))
        return sorted(out, key=lambda p: (p.name, p.id))

    @hookimpl
    async def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        return await self._run(self._list_providers, tenant_id)

    def _list_tenants(self) -> list[str]:
        tenants = []
        for name in self.backend.listdir("tenants"):
            try:
                tenant = check_id(name, "tenant_id")
            except ValidationError:
                continue  # not a tenant folder
            has_rows = any(
                self.backend.listdir(f"{layout.tenant_dir(tenant)}/{kind}")
                for kind in ("sessions", "agents", "providers")
            )
            if has_rows:
                tenants.append(tenant)
        return sorted(tenants)

    @hookimpl
    async def threadline_list_tenants(self) -> list[str]:
        return await self._run(self._list_tenants)
