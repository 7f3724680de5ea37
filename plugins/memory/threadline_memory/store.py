"""The in-memory store: the reference implementation of the store contract.

Every operation runs without awaiting inside, under a lock, so concurrent asyncio
tasks (and threads) see each write whole. Stored values are JSON copies: what a
caller mutates later does not change what is stored, and what other stores would
refuse (values that are not JSON) is refused here too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from threadline.codec import dump_json
from threadline.errors import ConflictError, NotFoundError, ValidationError
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
from threadline.storekit.erasure import redact as redact_message
from threadline.storekit.erasure import redact_history
from threadline.storekit.window import window_start


def _unusable_id(kind: str, record_id: str) -> ConflictError:
    """The one answer to an id held by another row, whichever tenant holds it.

    It never says whether the row is the caller's or another tenant's (see
    :class:`threadline.errors.ConflictError`).
    """
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")


def _copy_json(value: Any, field: str) -> Any:
    return json.loads(dump_json(value, field))


def _frozen_copy(message: Message, **changes: Any) -> Message:
    return attrs.evolve(
        message,
        metadata=_copy_json(message.metadata, "metadata"),
        tool_calls=[
            attrs.evolve(c, arguments=_copy_json(c.arguments, "tool arguments"))
            for c in message.tool_calls
        ],
        **changes,
    )


class MemoryStore:
    """All data in dicts of this object; gone with the process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.closed = False
        self._sessions: dict[str, Session] = {}
        self._messages: dict[str, list[Message]] = {}
        self._system_seqs: dict[str, list[int]] = {}
        self._message_by_id: dict[str, Message] = {}
        self._api_calls: dict[str, list[ApiCall]] = {}
        self._checkpoints: dict[str, list[Checkpoint]] = {}
        self._checkpoint_by_id: dict[str, Checkpoint] = {}
        self._given_history: dict[str, tuple[Message, ...]] = {}  # as callers passed them
        self._agents: dict[str, AgentRecord] = {}
        self._providers: dict[str, ProviderRecord] = {}

    def __repr__(self) -> str:
        return f"<MemoryStore sessions={len(self._sessions)}>"

    # -- lifecycle ----------------------------------------------------------------------

    @hookimpl
    def threadline_migrate(self) -> list[str]:
        return []

    @hookimpl
    async def threadline_list_tenants(self) -> list[str]:
        with self._lock:
            tenants = {s.tenant_id for s in self._sessions.values()}
            tenants.update(a.tenant_id for a in self._agents.values())
            tenants.update(p.tenant_id for p in self._providers.values())
            return sorted(tenants)

    @hookimpl
    def threadline_close(self) -> None:
        self.closed = True

    # -- helpers ------------------------------------------------------------------------

    def _session(self, tenant_id: str, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        return session if session is not None and session.tenant_id == tenant_id else None

    def _require_session(self, tenant_id: str, session_id: str) -> Session:
        session = self._session(tenant_id, session_id)
        if session is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return session

    def _touch(self, session_id: str) -> None:
        """Activity: ``updated_at`` moves to now, never back (it may be set ahead by a copy)."""
        session = self._sessions[session_id]
        now = utcnow()
        if now > session.updated_at:
            self._sessions[session_id] = attrs.evolve(session, updated_at=now)

    # -- sessions -----------------------------------------------------------------------

    @hookimpl
    async def threadline_create_session(self, session: Session) -> Session:
        with self._lock:
            existing = self._sessions.get(session.id)
            if existing is not None:
                if existing.tenant_id != session.tenant_id:
                    raise _unusable_id("session", session.id)
                return existing
            stored = attrs.evolve(session, metadata=_copy_json(session.metadata, "metadata"))
            self._sessions[session.id] = stored
            self._messages[session.id] = []
            self._system_seqs[session.id] = []
            self._api_calls[session.id] = []
            self._checkpoints[session.id] = []
            return stored

    @hookimpl
    async def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        return self._session(tenant_id, session_id)

    @hookimpl
    async def threadline_list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> list[Session]:
        with self._lock:
            found = [
                s
                for s in self._sessions.values()
                if s.tenant_id == tenant_id
                and (user_id is None or s.user_id == user_id)
                and (agent_id is None or s.agent_id == agent_id)
            ]
        found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return found[offset : offset + limit]

    @hookimpl
    async def threadline_update_session(self, session: Session) -> Session:
        with self._lock:
            stored = self._require_session(session.tenant_id, session.id)
            updated = attrs.evolve(
                stored,
                title=session.title,
                metadata=_copy_json(session.metadata, "metadata"),
                updated_at=max(stored.updated_at, utcnow()),
            )
            self._sessions[session.id] = updated
            return updated

    @hookimpl
    async def threadline_set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> Session:
        with self._lock:
            stored = self._require_session(tenant_id, session_id)
            self._sessions[session_id] = updated = attrs.evolve(stored, updated_at=updated_at)
            return updated

    @hookimpl
    async def threadline_delete_session(self, tenant_id: str, session_id: str) -> bool:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return False
            self._drop_session(session_id)
            return True

    # -- messages -----------------------------------------------------------------------

    def _append(self, session: Session, message: Message) -> Message:
        existing = self._message_by_id.get(message.id)
        if existing is not None:
            if existing.session_id != message.session_id or existing.tenant_id != message.tenant_id:
                raise _unusable_id("message", message.id)
            return existing
        log = self._messages[session.id]
        stored = _frozen_copy(message, seq=len(log) + 1)
        log.append(stored)
        if stored.role == "system":
            self._system_seqs[session.id].append(stored.seq or 0)
        self._message_by_id[stored.id] = stored
        return stored

    @hookimpl
    async def threadline_save_message(self, message: Message) -> Message:
        with self._lock:
            session = self._require_session(message.tenant_id, message.session_id)
            stored = self._append(session, message)
            self._touch(session.id)
            return stored

    @hookimpl
    async def threadline_save_messages(self, messages: Sequence[Message]) -> list[Message]:
        with self._lock:
            first = messages[0]
            session = self._require_session(first.tenant_id, first.session_id)
            if len({m.id for m in messages}) != len(messages):
                raise ValidationError("save_messages got the same message id twice")
            for m in messages:  # check everything before writing anything
                existing = self._message_by_id.get(m.id)
                if existing is not None and existing.session_id != m.session_id:
                    raise _unusable_id("message", m.id)
                _frozen_copy(m)
            stored = [self._append(session, m) for m in messages]
            self._touch(session.id)
            return stored

    @hookimpl
    async def threadline_update_message(self, message: Message) -> Message:
        with self._lock:
            existing = self._message_by_id.get(message.id)
            if existing is None or existing.tenant_id != message.tenant_id:
                raise NotFoundError(f"message {message.id} not found for this tenant")
            updated = _frozen_copy(
                existing,
                content=message.content,
                status=message.status,
                name=message.name,
            )
            updated = attrs.evolve(
                updated,
                metadata=_copy_json(message.metadata, "metadata"),
                tool_calls=_frozen_copy(message).tool_calls,
            )
            assert existing.seq is not None
            self._messages[existing.session_id][existing.seq - 1] = updated
            self._message_by_id[updated.id] = updated
            self._touch(existing.session_id)
            return updated

    @hookimpl
    async def threadline_get_messages(
        self, tenant_id: str, session_id: str, after_seq: int, limit: int | None
    ) -> list[Message]:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            log = self._messages[session_id]
            end = None if limit is None else after_seq + limit
            return log[after_seq:end]

    @hookimpl
    async def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            log = self._messages[session_id]
            start = window_start(log, last_rounds)
            systems = [log[seq - 1] for seq in self._system_seqs[session_id] if seq <= start]
            return systems + log[start:]

    @hookimpl
    async def threadline_count_messages(self, tenant_id: str, session_id: str) -> int:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return 0
            return len(self._messages[session_id])

    @hookimpl
    async def threadline_interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return 0
            log = self._messages[session_id]
            changed = 0
            for index, message in enumerate(log):
                if message.status == "streaming":
                    log[index] = attrs.evolve(message, status="interrupted")
                    self._message_by_id[message.id] = log[index]
                    changed += 1
            if changed:
                self._touch(session_id)
            return changed

    # -- API calls ----------------------------------------------------------------------

    @hookimpl
    async def threadline_save_api_call(self, api_call: ApiCall) -> ApiCall:
        with self._lock:
            self._require_session(api_call.tenant_id, api_call.session_id)
            calls = self._api_calls[api_call.session_id]
            for log in self._api_calls.values():
                for existing in log:
                    if existing.id == api_call.id:
                        if existing.session_id != api_call.session_id:
                            raise _unusable_id("api call", api_call.id)
                        return existing
            stored = attrs.evolve(api_call, metadata=_copy_json(api_call.metadata, "metadata"))
            calls.append(stored)
            self._touch(api_call.session_id)
            return stored

    @hookimpl
    async def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            return list(self._api_calls[session_id])

    # -- checkpoints --------------------------------------------------------------------

    @hookimpl
    async def threadline_create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        with self._lock:
            self._require_session(checkpoint.tenant_id, checkpoint.session_id)
            existing = self._checkpoint_by_id.get(checkpoint.id)
            if existing is not None:
                if attrs.evolve(existing, version=None) != attrs.evolve(checkpoint, version=None):
                    raise _unusable_id("checkpoint", checkpoint.id)
                return existing
            shared: tuple[Message, ...] = ()
            if checkpoint.parent_id is not None:
                parent = self._checkpoint_by_id.get(checkpoint.parent_id)
                if parent is None or parent.session_id != checkpoint.session_id:
                    raise NotFoundError(
                        f"parent checkpoint {checkpoint.parent_id} not found in this session"
                    )
                # The parent's copies serve again for the prefix the caller passes unchanged
                # (compared by identity first), so a checkpoint costs what it adds.
                given = self._given_history.get(parent.id, ())
                shared = parent.history[: common_prefix(checkpoint.history, given)]
            log = self._checkpoints[checkpoint.session_id]
            version = log[-1].version + 1 if log and log[-1].version else 1
            stored = attrs.evolve(
                checkpoint,
                version=version,
                input=_copy_json(checkpoint.input, "checkpoint input"),
                state=_copy_json(checkpoint.state, "checkpoint state"),
                properties=_copy_json(checkpoint.properties, "checkpoint properties"),
                history=shared + tuple(_frozen_copy(m) for m in checkpoint.history[len(shared) :]),
            )
            log.append(stored)
            self._checkpoint_by_id[stored.id] = stored
            self._given_history[stored.id] = checkpoint.history
            self._touch(checkpoint.session_id)  # a graph's progress is the session's activity
            return stored

    @hookimpl
    async def threadline_get_checkpoint(
        self, tenant_id: str, checkpoint_id: str
    ) -> Checkpoint | None:
        checkpoint = self._checkpoint_by_id.get(checkpoint_id)
        return checkpoint if checkpoint is not None and checkpoint.tenant_id == tenant_id else None

    @hookimpl
    async def threadline_list_checkpoints(
        self, tenant_id: str, session_id: str | None, agent_id: str | None
    ) -> list[Checkpoint]:
        with self._lock:
            if session_id is not None:
                if self._session(tenant_id, session_id) is None:
                    return []
                candidates = list(self._checkpoints[session_id])
            else:
                candidates = [
                    c
                    for sid, log in self._checkpoints.items()
                    if self._sessions[sid].tenant_id == tenant_id
                    for c in log
                ]
                candidates.sort(
                    key=lambda c: (self._sessions[c.session_id].created_at, c.session_id, c.version)
                )
        return [c for c in candidates if agent_id is None or c.agent_id == agent_id]

    @hookimpl
    async def threadline_get_latest_checkpoint(
        self, tenant_id: str, session_id: str, agent_id: str | None
    ) -> Checkpoint | None:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return None
            for checkpoint in reversed(self._checkpoints[session_id]):
                if agent_id is None or checkpoint.agent_id == agent_id:
                    return checkpoint
            return None

    # -- retention ----------------------------------------------------------------------

    def _drop_session(self, session_id: str) -> None:
        del self._sessions[session_id]
        for message in self._messages.pop(session_id):
            self._message_by_id.pop(message.id, None)
        for checkpoint in self._checkpoints.pop(session_id):
            self._checkpoint_by_id.pop(checkpoint.id, None)
            self._given_history.pop(checkpoint.id, None)
        self._system_seqs.pop(session_id)
        self._api_calls.pop(session_id)

    @hookimpl
    async def threadline_erase_user(
        self, tenant_id: str, user_id: str, dry_run: bool
    ) -> dict[str, int]:
        with self._lock:
            doomed = [
                s.id
                for s in self._sessions.values()
                if s.tenant_id == tenant_id and s.user_id == user_id
            ]
            others = [
                s.id
                for s in self._sessions.values()
                if s.tenant_id == tenant_id and s.user_id != user_id
            ]
            redact = [
                (sid, index)
                for sid in others
                for index, m in enumerate(self._messages[sid])
                if m.user_id == user_id
            ]
            redact_checkpoints = [
                (sid, index, history)
                for sid in others
                for index, c in enumerate(self._checkpoints[sid])
                for history, n in [redact_history(c.history, user_id)]
                if n
            ]
            foreign_calls = {
                sid: [c for c in self._api_calls[sid] if c.user_id == user_id] for sid in others
            }
            counts = {
                "sessions": len(doomed),
                "messages": sum(len(self._messages[sid]) for sid in doomed),
                "messages_redacted": len(redact),
                "api_calls": sum(len(self._api_calls[sid]) for sid in doomed)
                + sum(len(calls) for calls in foreign_calls.values()),
                "checkpoints": sum(len(self._checkpoints[sid]) for sid in doomed),
                "checkpoints_redacted": len(redact_checkpoints),
            }
            if not dry_run:
                for sid in doomed:
                    self._drop_session(sid)
                for sid, index in redact:
                    redacted = redact_message(self._messages[sid][index])
                    self._messages[sid][index] = redacted
                    self._message_by_id[redacted.id] = redacted
                for sid, index, history in redact_checkpoints:
                    checkpoint = attrs.evolve(self._checkpoints[sid][index], history=history)
                    self._checkpoints[sid][index] = checkpoint
                    self._checkpoint_by_id[checkpoint.id] = checkpoint
                    self._given_history[checkpoint.id] = history
                for sid, calls in foreign_calls.items():
                    if calls:
                        self._api_calls[sid] = [
                            c for c in self._api_calls[sid] if c.user_id != user_id
                        ]
            return counts

    @hookimpl
    async def threadline_prune_checkpoints(
        self, tenant_id: str, session_id: str, keep: int, dry_run: bool
    ) -> int:
        # Histories are held whole here: no checkpoint depends on another to be read.
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return 0
            log = self._checkpoints[session_id]
            doomed = log[: max(len(log) - keep, 0)]  # the log is in version order
            if not dry_run and doomed:
                self._checkpoints[session_id] = log[len(doomed) :]
                for checkpoint in doomed:
                    self._checkpoint_by_id.pop(checkpoint.id, None)
                    self._given_history.pop(checkpoint.id, None)
            return len(doomed)

    @hookimpl
    async def threadline_delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        with self._lock:
            doomed = [
                s.id
                for s in self._sessions.values()
                if s.tenant_id == tenant_id
                and s.updated_at < before
                and (user_id is None or s.user_id == user_id)
            ]
            if not dry_run:
                for sid in doomed:
                    self._drop_session(sid)
            return len(doomed)

    # -- agent configs ------------------------------------------------------------------

    @hookimpl
    async def threadline_save_agent_config(self, config: AgentConfig) -> AgentConfig:
        with self._lock:
            agent, provider = config.agent, config.provider
            other = self._agents.get(agent.id)
            if other is not None and other.tenant_id != agent.tenant_id:
                raise _unusable_id("agent", agent.id)
            for a in self._agents.values():
                if a.tenant_id == agent.tenant_id and a.code == agent.code and a.id != agent.id:
                    raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
            if provider is not None:
                p_other = self._providers.get(provider.id)
                if p_other is not None and p_other.tenant_id != provider.tenant_id:
                    raise _unusable_id("provider", provider.id)
                provider = attrs.evolve(
                    provider, metadata=_copy_json(provider.metadata, "provider metadata")
                )
                agent = attrs.evolve(agent, provider_id=provider.id)
            agent = attrs.evolve(
                agent,
                custom_params=_copy_json(agent.custom_params, "custom_params"),
                response_format=_copy_json(agent.response_format, "response_format"),
            )
            if provider is not None:
                self._providers[provider.id] = provider
            self._agents[agent.id] = agent
            return AgentConfig(agent=agent, provider=provider)

    def _config(self, agent: AgentRecord) -> AgentConfig:
        provider = self._providers.get(agent.provider_id) if agent.provider_id else None
        if provider is not None and provider.tenant_id != agent.tenant_id:
            provider = None  # another tenant's row: never joined (as the SQL stores do)
        return AgentConfig(agent=agent, provider=provider)

    @hookimpl
    async def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        with self._lock:
            for agent in self._agents.values():
                if agent.tenant_id == tenant_id and (
                    agent.id == agent_id if agent_id is not None else agent.code == code
                ):
                    return self._config(agent)
            return None

    @hookimpl
    async def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        with self._lock:
            agents = sorted(
                (a for a in self._agents.values() if a.tenant_id == tenant_id),
                key=lambda a: a.code,
            )
            return [self._config(a) for a in agents]

    # -- providers --------------------------------------------------------------------------

    @hookimpl
    async def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        with self._lock:
            other = self._providers.get(provider.id)
            if other is not None and other.tenant_id != provider.tenant_id:
                raise _unusable_id("provider", provider.id)
            provider = attrs.evolve(
                provider, metadata=_copy_json(provider.metadata, "provider metadata")
            )
            self._providers[provider.id] = provider
            return provider

    @hookimpl
    async def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        with self._lock:
            return sorted(
                (p for p in self._providers.values() if p.tenant_id == tenant_id),
                key=lambda p: (p.name, p.id),
            )
