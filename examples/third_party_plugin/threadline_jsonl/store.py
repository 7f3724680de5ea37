"""The JSON-lines store: every write is one line appended to a log file.

The file is the truth; an in-memory index, rebuilt by replaying the file when the store
opens, answers the reads. A write is checked against the index, encoded as one JSON line,
appended (and fsynced), then decoded again and applied by the same ``_apply`` the replay
uses: what this process sees is exactly what the file will give back after a restart.

One process, one open store per file: an exclusive ``flock`` refuses a second one (on
POSIX). Within the process, tasks and threads are serialised by a lock. The retention
hooks rewrite the file without what they remove (``_compact_without``), so erased data
leaves the disk too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import attrs

from threadline.codec import dump_json
from threadline.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from threadline.hookspecs import hookimpl
from threadline.ids import utcnow
from threadline.models import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
)
from threadline.storekit.delta import common_prefix
from threadline.storekit.erasure import redact, redact_history
from threadline.storekit.window import window_start

if sys.platform != "win32":
    import fcntl

T = TypeVar("T")
Record = dict[str, Any]


class JsonlStore:
    """The whole store contract on one append-only file; open it with :meth:`open`."""

    def __init__(self, path: Path, file: BinaryIO, *, fsync: bool) -> None:
        self.path = path
        self._file = file
        self._fsync = fsync
        self._write_lock = threading.Lock()  # one writer at a time: check, append, apply
        self._state_lock = threading.Lock()  # readers never see half an apply
        self._sessions: dict[str, Session] = {}
        self._messages: dict[str, list[Message]] = {}  # session id -> messages; [seq - 1]
        self._systems: dict[str, list[int]] = {}  # session id -> seqs of its system messages
        self._message_by_id: dict[str, Message] = {}
        self._api_calls: dict[str, list[ApiCall]] = {}
        self._api_call_by_id: dict[str, ApiCall] = {}
        self._checkpoints: dict[str, list[Checkpoint]] = {}
        self._checkpoint_by_id: dict[str, Checkpoint] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._providers: dict[str, ProviderRecord] = {}

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
        return f"<JsonlStore {str(self.path)!r} sessions={len(self._sessions)}>"

    # -- the log ---------------------------------------------------------------------------

    def _replay(self) -> None:
        self._file.seek(0)
        data = self._file.read()
        end = data.rfind(b"\n") + 1  # after the last complete line
        for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"{self.path}: line {number} is damaged ({exc})") from None
        if end < len(data):  # a write torn by a crash: it was never acknowledged, drop it
            self._file.truncate(end)

    def _commit(self, record: Record) -> None:
        """Append ``record`` as one line, then apply it. Called holding the write lock."""
        text = dump_json(record, record["op"])  # ValidationError before anything is written
        line = text.encode("utf-8") + b"\n"
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
        with self._state_lock:
            self._apply(json.loads(text))  # exactly what a replay will see

    def _apply(self, r: Record) -> None:
        op = r["op"]
        if op == "session":  # created or updated
            session = Session.from_dict(r["session"])
            self._sessions[session.id] = session
            for table in (self._messages, self._systems, self._api_calls, self._checkpoints):
                table.setdefault(session.id, [])
        elif op == "messages":
            for data in r["messages"]:
                message = Message.from_dict(data)
                self._messages[message.session_id].append(message)
                if message.role == "system":
                    self._systems[message.session_id].append(message.seq or 0)
                self._message_by_id[message.id] = message
            self._touch(r["session_id"], r["updated_at"])
        elif op == "message":  # updated in place; its seq never changes
            message = Message.from_dict(r["message"])
            self._messages[message.session_id][(message.seq or 0) - 1] = message
            self._message_by_id[message.id] = message
            self._touch(message.session_id, r.get("updated_at"))
        elif op == "interrupt":
            log = self._messages[r["session_id"]]
            for index, message in enumerate(log):
                if message.status == "streaming":
                    log[index] = attrs.evolve(message, status="interrupted")
                    self._message_by_id[message.id] = log[index]
            self._touch(r["session_id"], r.get("updated_at"))
        elif op == "api_call":
            call = ApiCall.from_dict(r["api_call"])
            self._api_calls[call.session_id].append(call)
            self._api_call_by_id[call.id] = call
            self._touch(call.session_id, r.get("updated_at"))
        elif op == "checkpoint":  # history = the parent's first `shared` messages + `tail`
            data = r["checkpoint"]
            shared: tuple[Message, ...] = ()
            if r["shared"]:
                shared = self._checkpoint_by_id[data["parent_id"]].history[: r["shared"]]
            tail = tuple(Message.from_dict(m) for m in r["tail"])
            checkpoint = Checkpoint.from_dict({**data, "history": shared + tail})
            self._checkpoints[checkpoint.session_id].append(checkpoint)
            self._checkpoint_by_id[checkpoint.id] = checkpoint
            self._touch(checkpoint.session_id, r.get("updated_at"))
        elif op == "agent_config":
            config = AgentConfig.from_dict(r["config"])
            self._agents[config.agent.id] = config.agent
            if config.provider is not None:
                self._providers[config.provider.id] = config.provider
        elif op == "provider":  # a provider no agent names (written by _snapshot)
            provider = ProviderRecord.from_dict(r["provider"])
            self._providers[provider.id] = provider
        elif op == "delete_sessions":
            for session_id in r["session_ids"]:
                del self._sessions[session_id]
                self._systems.pop(session_id)
                for message in self._messages.pop(session_id):
                    self._message_by_id.pop(message.id, None)
                for call in self._api_calls.pop(session_id):
                    self._api_call_by_id.pop(call.id, None)
                for checkpoint in self._checkpoints.pop(session_id):
                    self._checkpoint_by_id.pop(checkpoint.id, None)
        elif op == "erase_elsewhere":  # a user's rows in other users' sessions of a tenant
            tenant_id, user_id = r["tenant_id"], r["user_id"]
            for sid, session in self._sessions.items():
                if session.tenant_id != tenant_id or session.user_id == user_id:
                    continue  # another tenant, or the user's own session (deleted whole)
                log = self._messages[sid]
                for index, message in enumerate(log):
                    if message.user_id == user_id:
                        log[index] = redact(message)
                        self._message_by_id[message.id] = log[index]
                checkpoints = self._checkpoints[sid]
                for index, checkpoint in enumerate(checkpoints):
                    history, count = redact_history(checkpoint.history, user_id)
                    if count:  # the same checkpoint, its history as the message table shows it
                        checkpoints[index] = attrs.evolve(checkpoint, history=history)
                        self._checkpoint_by_id[checkpoint.id] = checkpoints[index]
                calls = self._api_calls[sid]
                for call in calls:
                    if call.user_id == user_id:
                        self._api_call_by_id.pop(call.id, None)
                self._api_calls[sid] = [c for c in calls if c.user_id != user_id]
        elif op == "prune_checkpoints":
            gone = set(r["checkpoint_ids"])
            kept = [c for c in self._checkpoints[r["session_id"]] if c.id not in gone]
            self._checkpoints[r["session_id"]] = kept
            for checkpoint_id in gone:
                self._checkpoint_by_id.pop(checkpoint_id, None)
        else:
            raise StoreError(f"unknown record {op!r} (written by a newer threadline-jsonl?)")

    def _touch(self, session_id: str, when: str | None) -> None:
        """Activity: a write in the session moves its ``updated_at`` to ``when``, never back.

        Writes record the moment they happened; records without one (older logs, and
        the ones a compaction writes, whose session record carries the time) touch nothing.
        """
        if when is None:
            return
        session = self._sessions[session_id]
        at = datetime.fromisoformat(when)
        if at > session.updated_at:
            self._sessions[session_id] = attrs.evolve(session, updated_at=at)

    def _snapshot(
        self, sessions: set[str], checkpoints: set[str], erase: tuple[str, str] | None = None
    ) -> Iterator[Record]:
        """Records that replay into the current state without these sessions and checkpoints.

        With ``erase`` (a tenant and a user id), that user's messages in the tenant's
        remaining sessions, in their message logs and in their checkpoints' histories, are
        written redacted, and their API calls left out.
        """
        named = {a.provider_id for a in self._agents.values()}
        for provider in self._providers.values():
            if provider.id not in named:
                yield {"op": "provider", "provider": provider.to_dict()}
        for agent in self._agents.values():
            yield {"op": "agent_config", "config": self._config(agent).to_dict()}
        for sid, session in self._sessions.items():
            if sid in sessions:
                continue
            yield {"op": "session", "session": session.to_dict()}
            erased = None  # the user erased from this session, if any (not their own ones)
            if erase is not None and erase[0] == session.tenant_id and session.user_id != erase[1]:
                erased = erase[1]
            if self._messages[sid]:
                messages = [m.to_dict() for m in _redacted(self._messages[sid], erased)]
                now = session.updated_at.isoformat()
                yield {"op": "messages", "session_id": sid, "updated_at": now, "messages": messages}
            for call in self._api_calls[sid]:
                if erased is None or call.user_id != erased:
                    yield {"op": "api_call", "api_call": call.to_dict()}
            kept = {c.id: c for c in self._checkpoints[sid] if c.id not in checkpoints}
            if erased is not None:  # every history as it will replay, so deltas are taken on those
                kept = {
                    cid: attrs.evolve(c, history=_redacted(c.history, erased))
                    for cid, c in kept.items()
                }
            for checkpoint in kept.values():  # a parent comes before its child
                parent = kept.get(checkpoint.parent_id or "")  # None: pruned, or none
                shared = common_prefix(checkpoint.history, parent.history) if parent else 0
                yield self._checkpoint_record(checkpoint, shared)

    def _compact_without(self, record: Record, sessions: set[str], checkpoints: set[str]) -> None:
        """Apply a deletion by rewriting the log without the deleted data: all or nothing.

        Appending the deletion would leave the data in the file; instead the current state,
        less what goes, is written to a new file that atomically replaces the log. Until that
        rename neither the log nor the memory has changed.
        """
        tmp = self.path.with_name(self.path.name + ".compact")
        new = None
        try:
            with open(tmp, "wb") as out:
                erase = (
                    (record["tenant_id"], record["user_id"])
                    if record["op"] == "erase_elsewhere"
                    else None
                )
                for line in self._snapshot(sessions, checkpoints, erase):
                    out.write(dump_json(line, line["op"]).encode("utf-8") + b"\n")
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
        with self._state_lock:
            self._apply(record)
        if sys.platform != "win32":  # make the rename itself durable (best effort)
            try:
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
            except OSError:
                pass

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write in a worker thread, holding the write lock (the loop never blocks)."""

        def locked() -> T:
            with self._write_lock:
                if self._file.closed:
                    raise StoreError("the store is closed")
                return fn(*args)

        return await asyncio.to_thread(locked)

    def _session(self, tenant_id: str, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        return session if session is not None and session.tenant_id == tenant_id else None

    def _require_session(self, tenant_id: str, session_id: str) -> Session:
        session = self._session(tenant_id, session_id)
        if session is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return session

    # -- lifecycle -------------------------------------------------------------------------

    @hookimpl
    def threadline_migrate(self) -> list[str]:
        return []  # no schema: every line carries its own shape

    @hookimpl
    def threadline_list_tenants(self) -> list[str]:
        with self._state_lock:
            tenants = {s.tenant_id for s in self._sessions.values()}
            tenants.update(a.tenant_id for a in self._agents.values())
            tenants.update(p.tenant_id for p in self._providers.values())
        return sorted(tenants)

    @hookimpl
    def threadline_close(self) -> None:
        with self._write_lock:
            self._file.close()  # closing the file releases the flock

    # -- sessions --------------------------------------------------------------------------

    def _create_session(self, session: Session) -> Session:
        existing = self._sessions.get(session.id)
        if existing is not None:
            if existing.tenant_id != session.tenant_id:
                raise ConflictError(f"session id {session.id} cannot be used here: use a new id")
            return existing
        self._commit({"op": "session", "session": session.to_dict()})
        return self._sessions[session.id]

    @hookimpl
    async def threadline_create_session(self, session: Session) -> Session:
        return await self._write(self._create_session, session)

    @hookimpl
    def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        with self._state_lock:
            return self._session(tenant_id, session_id)

    @hookimpl
    def threadline_list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> list[Session]:
        with self._state_lock:
            found = [
                s
                for s in self._sessions.values()
                if s.tenant_id == tenant_id
                and (user_id is None or s.user_id == user_id)
                and (agent_id is None or s.agent_id == agent_id)
            ]
        found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return found[offset : offset + limit]

    def _update_session(self, session: Session) -> Session:
        stored = self._require_session(session.tenant_id, session.id)
        updated = attrs.evolve(
            stored,
            title=session.title,
            metadata=session.metadata,
            updated_at=max(stored.updated_at, utcnow()),
        )
        self._commit({"op": "session", "session": updated.to_dict()})
        return self._sessions[session.id]

    @hookimpl
    async def threadline_update_session(self, session: Session) -> Session:
        return await self._write(self._update_session, session)

    def _set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> Session:
        # The same "session" record as an update: it carries updated_at, and replays as is.
        stored = self._require_session(tenant_id, session_id)
        updated = attrs.evolve(stored, updated_at=updated_at)
        self._commit({"op": "session", "session": updated.to_dict()})
        return self._sessions[session_id]

    @hookimpl
    async def threadline_set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> Session:
        return await self._write(self._set_session_updated_at, tenant_id, session_id, updated_at)

    def _delete_session(self, tenant_id: str, session_id: str) -> bool:
        if self._session(tenant_id, session_id) is None:
            return False
        self._commit({"op": "delete_sessions", "session_ids": [session_id]})
        return True

    @hookimpl
    async def threadline_delete_session(self, tenant_id: str, session_id: str) -> bool:
        return await self._write(self._delete_session, tenant_id, session_id)

    # -- messages --------------------------------------------------------------------------

    def _save_messages(self, messages: Sequence[Message]) -> list[Message]:
        session = self._require_session(messages[0].tenant_id, messages[0].session_id)
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        seq = len(self._messages[session.id])
        new = []
        for message in messages:
            if (message.tenant_id, message.session_id) != (session.tenant_id, session.id):
                raise ValidationError("save_messages takes the messages of one session")
            existing = self._message_by_id.get(message.id)
            if existing is not None:
                if existing.session_id != message.session_id:
                    raise ConflictError(
                        f"message id {message.id} cannot be used here: use a new id"
                    )
                continue  # an idempotent retry: the stored message comes back
            seq += 1  # the next seq: safe, the write lock is held
            new.append(attrs.evolve(message, seq=seq).to_dict())
        if new:
            now = utcnow().isoformat()
            self._commit(
                {"op": "messages", "session_id": session.id, "updated_at": now, "messages": new}
            )
        return [self._message_by_id[m.id] for m in messages]

    @hookimpl
    async def threadline_save_message(self, message: Message) -> Message:
        [stored] = await self._write(self._save_messages, [message])
        return stored

    @hookimpl
    async def threadline_save_messages(self, messages: Sequence[Message]) -> list[Message]:
        return await self._write(self._save_messages, messages)

    def _update_message(self, message: Message) -> Message:
        existing = self._message_by_id.get(message.id)
        if existing is None or existing.tenant_id != message.tenant_id:
            raise NotFoundError(f"message {message.id} not found for this tenant")
        updated = attrs.evolve(
            existing,
            content=message.content,
            tool_calls=message.tool_calls,
            status=message.status,
            name=message.name,
            metadata=message.metadata,
        )
        now = utcnow().isoformat()
        self._commit({"op": "message", "message": updated.to_dict(), "updated_at": now})
        return self._message_by_id[message.id]

    @hookimpl
    async def threadline_update_message(self, message: Message) -> Message:
        return await self._write(self._update_message, message)

    @hookimpl
    def threadline_get_messages(
        self, tenant_id: str, session_id: str, after_seq: int, limit: int | None
    ) -> list[Message]:
        with self._state_lock:
            if self._session(tenant_id, session_id) is None:
                return []
            end = None if limit is None else after_seq + limit
            return self._messages[session_id][after_seq:end]  # seq n sits at index n - 1

    @hookimpl
    def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        with self._state_lock:
            if self._session(tenant_id, session_id) is None:
                return []
            log = self._messages[session_id]
            start = window_start(log, last_rounds)  # scans back from the end only
            systems = [log[seq - 1] for seq in self._systems[session_id] if seq <= start]
            return systems + log[start:]

    @hookimpl
    def threadline_count_messages(self, tenant_id: str, session_id: str) -> int:
        with self._state_lock:
            if self._session(tenant_id, session_id) is None:
                return 0
            return len(self._messages[session_id])

    def _interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        if self._session(tenant_id, session_id) is None:
            return 0
        changed = sum(m.status == "streaming" for m in self._messages[session_id])
        if changed:
            now = utcnow().isoformat()
            self._commit({"op": "interrupt", "session_id": session_id, "updated_at": now})
        return changed

    @hookimpl
    async def threadline_interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        return await self._write(self._interrupt_streaming, tenant_id, session_id)

    # -- API calls -------------------------------------------------------------------------

    def _save_api_call(self, api_call: ApiCall) -> ApiCall:
        self._require_session(api_call.tenant_id, api_call.session_id)
        existing = self._api_call_by_id.get(api_call.id)
        if existing is not None:
            if existing.session_id != api_call.session_id:
                raise ConflictError(f"api call id {api_call.id} cannot be used here: use a new id")
            return existing
        now = utcnow().isoformat()
        self._commit({"op": "api_call", "api_call": api_call.to_dict(), "updated_at": now})
        return self._api_call_by_id[api_call.id]

    @hookimpl
    async def threadline_save_api_call(self, api_call: ApiCall) -> ApiCall:
        return await self._write(self._save_api_call, api_call)

    @hookimpl
    def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        with self._state_lock:
            if self._session(tenant_id, session_id) is None:
                return []
            return list(self._api_calls[session_id])

    # -- checkpoints -----------------------------------------------------------------------

    def _create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        self._require_session(checkpoint.tenant_id, checkpoint.session_id)
        existing = self._checkpoint_by_id.get(checkpoint.id)
        if existing is not None:
            if attrs.evolve(existing, version=None) != attrs.evolve(checkpoint, version=None):
                raise ConflictError(
                    f"checkpoint id {checkpoint.id} cannot be used here: use a new id"
                )
            return existing
        shared = 0
        if checkpoint.parent_id is not None:
            parent = self._checkpoint_by_id.get(checkpoint.parent_id)
            if parent is None or parent.session_id != checkpoint.session_id:
                raise NotFoundError(f"parent checkpoint {checkpoint.parent_id} not found")
            shared = common_prefix(checkpoint.history, parent.history)  # a delta, not a copy
        log = self._checkpoints[checkpoint.session_id]
        version = (log[-1].version or 0) + 1 if log else 1
        record = self._checkpoint_record(attrs.evolve(checkpoint, version=version), shared)
        self._commit({**record, "updated_at": utcnow().isoformat()})  # a graph's activity
        return self._checkpoint_by_id[checkpoint.id]

    @staticmethod
    def _checkpoint_record(checkpoint: Checkpoint, shared: int) -> Record:
        """The history as the parent's first ``shared`` messages plus the rest, in full."""
        return {
            "op": "checkpoint",
            "checkpoint": attrs.evolve(checkpoint, history=()).to_dict(),
            "shared": shared,
            "tail": [m.to_dict() for m in checkpoint.history[shared:]],
        }

    @hookimpl
    async def threadline_create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        return await self._write(self._create_checkpoint, checkpoint)

    @hookimpl
    def threadline_get_checkpoint(self, tenant_id: str, checkpoint_id: str) -> Checkpoint | None:
        with self._state_lock:
            checkpoint = self._checkpoint_by_id.get(checkpoint_id)
        return checkpoint if checkpoint is not None and checkpoint.tenant_id == tenant_id else None

    @hookimpl
    def threadline_list_checkpoints(
        self, tenant_id: str, session_id: str | None, agent_id: str | None
    ) -> list[Checkpoint]:
        with self._state_lock:
            if session_id is not None:
                if self._session(tenant_id, session_id) is None:
                    return []
                found = list(self._checkpoints[session_id])
            else:
                sessions = sorted(
                    (s for s in self._sessions.values() if s.tenant_id == tenant_id),
                    key=lambda s: (s.created_at, s.id),
                )
                found = [c for s in sessions for c in self._checkpoints[s.id]]
        return [c for c in found if agent_id is None or c.agent_id == agent_id]

    @hookimpl
    def threadline_get_latest_checkpoint(
        self, tenant_id: str, session_id: str, agent_id: str | None
    ) -> Checkpoint | None:
        with self._state_lock:
            if self._session(tenant_id, session_id) is None:
                return None
            for checkpoint in reversed(self._checkpoints[session_id]):
                if agent_id is None or checkpoint.agent_id == agent_id:
                    return checkpoint
        return None

    # -- retention -------------------------------------------------------------------------

    def _delete_sessions(self, doomed: list[str], dry_run: bool) -> None:
        if doomed and not dry_run:
            self._compact_without(
                {"op": "delete_sessions", "session_ids": doomed}, set(doomed), set()
            )

    def _erase_user(self, tenant_id: str, user_id: str, dry_run: bool) -> dict[str, int]:
        doomed = [
            s.id
            for s in self._sessions.values()
            if (s.tenant_id, s.user_id) == (tenant_id, user_id)
        ]
        counts = {
            "sessions": len(doomed),
            "messages": sum(len(self._messages[sid]) for sid in doomed),
            "api_calls": sum(len(self._api_calls[sid]) for sid in doomed),
            "checkpoints": sum(len(self._checkpoints[sid]) for sid in doomed),
        }
        self._delete_sessions(doomed, dry_run)
        return counts

    def _erase_elsewhere(self, tenant_id: str, user_id: str, dry_run: bool) -> dict[str, int]:
        """The user's rows in other users' sessions of the tenant, by one log rewrite.

        Messages are redacted with ``threadline.storekit.erasure.redact`` (id, role, seq, status
        kept), in the message logs and in every checkpoint history holding one, and API
        calls deleted. The rewritten log holds the redacted histories, so no new record
        kind is needed and a reopened store replays exactly what this one now shows.
        """
        others = [
            sid
            for sid, s in self._sessions.items()
            if s.tenant_id == tenant_id and s.user_id != user_id
        ]
        redacted = sum(m.user_id == user_id for sid in others for m in self._messages[sid])
        calls = sum(c.user_id == user_id for sid in others for c in self._api_calls[sid])
        checkpoints = sum(
            any(m.user_id == user_id for m in c.history)
            for sid in others
            for c in self._checkpoints[sid]
        )
        if not dry_run and (redacted or calls or checkpoints):
            record = {"op": "erase_elsewhere", "tenant_id": tenant_id, "user_id": user_id}
            self._compact_without(record, set(), set())
        return {
            "messages_redacted": redacted,
            "api_calls": calls,
            "checkpoints_redacted": checkpoints,
        }

    def _erase_everywhere(self, tenant_id: str, user_id: str, dry_run: bool) -> dict[str, int]:
        # Two rewrites under the one write lock; a crash between them leaves the rows
        # elsewhere erased and the user's sessions in place, which a rerun finishes.
        elsewhere = self._erase_elsewhere(tenant_id, user_id, dry_run)
        counts = self._erase_user(tenant_id, user_id, dry_run)
        return {
            **counts,
            "messages_redacted": elsewhere["messages_redacted"],
            "api_calls": counts["api_calls"] + elsewhere["api_calls"],
            "checkpoints_redacted": elsewhere["checkpoints_redacted"],
        }

    @hookimpl
    async def threadline_erase_user(
        self, tenant_id: str, user_id: str, dry_run: bool
    ) -> dict[str, int]:
        return await self._write(self._erase_everywhere, tenant_id, user_id, dry_run)

    def _prune_checkpoints(self, tenant_id: str, session_id: str, keep: int, dry_run: bool) -> int:
        # Every checkpoint is held whole in memory, so none needs its parent to be read.
        if self._session(tenant_id, session_id) is None:
            return 0
        log = self._checkpoints[session_id]  # in version order
        doomed = [c.id for c in log[: max(len(log) - keep, 0)]]
        if doomed and not dry_run:
            record = {"op": "prune_checkpoints", "session_id": session_id, "checkpoint_ids": doomed}
            self._compact_without(record, set(), set(doomed))
        return len(doomed)

    @hookimpl
    async def threadline_prune_checkpoints(
        self, tenant_id: str, session_id: str, keep: int, dry_run: bool
    ) -> int:
        return await self._write(self._prune_checkpoints, tenant_id, session_id, keep, dry_run)

    def _delete_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        doomed = [
            s.id
            for s in self._sessions.values()
            if s.tenant_id == tenant_id
            and s.updated_at < before
            and (user_id is None or s.user_id == user_id)
        ]
        self._delete_sessions(doomed, dry_run)
        return len(doomed)

    @hookimpl
    async def threadline_delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        return await self._write(self._delete_before, tenant_id, before, user_id, dry_run)

    # -- agent configs ---------------------------------------------------------------------

    def _save_agent_config(self, config: AgentConfig) -> AgentConfig:
        agent, provider = config.agent, config.provider
        other = self._agents.get(agent.id)
        if other is not None and other.tenant_id != agent.tenant_id:
            raise ConflictError(f"agent id {agent.id} cannot be used here: use a new id")
        for a in self._agents.values():
            if a.tenant_id == agent.tenant_id and a.code == agent.code and a.id != agent.id:
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
        if provider is not None:
            taken = self._providers.get(provider.id)
            if taken is not None and taken.tenant_id != provider.tenant_id:
                raise ConflictError(f"provider id {provider.id} cannot be used here: use a new id")
            agent = attrs.evolve(agent, provider_id=provider.id)
        stored = AgentConfig(agent=agent, provider=provider)
        self._commit({"op": "agent_config", "config": stored.to_dict()})
        return self._config(self._agents[agent.id])

    @hookimpl
    async def threadline_save_agent_config(self, config: AgentConfig) -> AgentConfig:
        return await self._write(self._save_agent_config, config)

    def _config(self, agent: AgentRecord) -> AgentConfig:
        provider = self._providers.get(agent.provider_id) if agent.provider_id else None
        if provider is not None and provider.tenant_id != agent.tenant_id:
            provider = None  # another tenant's provider is never joined
        return AgentConfig(agent=agent, provider=provider)

    @hookimpl
    def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        with self._state_lock:
            for agent in self._agents.values():
                if agent.tenant_id == tenant_id and (
                    agent.id == agent_id if agent_id is not None else agent.code == code
                ):
                    return self._config(agent)
        return None

    @hookimpl
    def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        with self._state_lock:
            agents = sorted(
                (a for a in self._agents.values() if a.tenant_id == tenant_id),
                key=lambda a: a.code,
            )
            return [self._config(a) for a in agents]

    # -- providers ---------------------------------------------------------------------------

    def _save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        taken = self._providers.get(provider.id)
        if taken is not None and taken.tenant_id != provider.tenant_id:
            raise ConflictError(f"provider id {provider.id} cannot be used here: use a new id")
        self._commit({"op": "provider", "provider": provider.to_dict()})
        return self._providers[provider.id]

    @hookimpl
    async def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        return await self._write(self._save_provider, provider)

    @hookimpl
    def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        with self._state_lock:
            return sorted(
                (p for p in self._providers.values() if p.tenant_id == tenant_id),
                key=lambda p: (p.name, p.id),
            )


def _lock_file(file: BinaryIO, path: Path) -> None:
    """Take the exclusive lock that keeps a second store (or process) off this log."""
    if sys.platform != "win32":
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreUnavailableError(f"{path} is already open elsewhere") from None


def _redacted(history: Sequence[Message], user_id: str | None) -> Sequence[Message]:
    """``history`` with ``user_id``'s messages redacted (``history`` itself for ``None``)."""
    return history if user_id is None else redact_history(history, user_id)[0]
