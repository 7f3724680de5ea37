"""The reference store: the required tier and both capability groups over dicts and a lock.

Everything else (windows, counts, checkpoints with deltas, pruning, erasure, retention)
comes from the core's defaults (:mod:`threadline.storekit.defaults`). It is the smallest
complete store, the core's reference for the contract and the model for a new store::

    store = threadline.Store(ReferenceStore())

Every hook runs without awaiting, under one lock. Stored values are JSON copies, so a
caller mutating a value later changes nothing stored, and non-JSON values are refused.
Messages are indexed by session (a list in seq order) and by id; checkpoint records by
id and by session.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import attrs

from threadline.codec import dump_json
from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.ids import utcnow
from threadline.models import AgentConfig, AgentRecord, ApiCall, Message, ProviderRecord, Session
from threadline.storekit.records import CheckpointRecord, StaleRecordError, id_conflict

__all__ = ["ReferenceStore"]


def _json(value: Any, field: str) -> Any:
    return json.loads(dump_json(value, field))


def _copy(message: Message, **changes: Any) -> Message:
    calls = [
        attrs.evolve(c, arguments=_json(c.arguments, "tool arguments"))
        for c in changes.pop("tool_calls", message.tool_calls)
    ]
    metadata = _json(changes.pop("metadata", message.metadata), "metadata")
    return attrs.evolve(message, metadata=metadata, tool_calls=calls, **changes)


class ReferenceStore:
    """All data in dicts of this object; gone with the process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._messages: dict[str, list[Message]] = {}  # by session, in seq order
        self._message_session: dict[str, str] = {}  # message id -> session id
        self._records: dict[str, list[CheckpointRecord]] = {}  # by session, in version order
        self._record_by_id: dict[str, CheckpointRecord] = {}
        self._calls: dict[str, ApiCall] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._providers: dict[str, ProviderRecord] = {}

    def _session(self, tenant_id: str, session_id: str) -> Session | None:
        s = self._sessions.get(session_id)
        return s if s is not None and s.tenant_id == tenant_id else None

    def _require(self, tenant_id: str, session_id: str) -> Session:
        s = self._session(tenant_id, session_id)
        if s is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return s

    def _touch(self, session: Session) -> None:
        """Every write to a session is activity: ``updated_at`` moves to now, never back."""
        now = max(utcnow(), session.updated_at)
        self._sessions[session.id] = attrs.evolve(session, updated_at=now)

    @hookimpl
    def threadline_list_tenants(self) -> list[str]:
        with self._lock:
            rows: list[Any] = [
                *self._sessions.values(),
                *self._agents.values(),
                *self._providers.values(),
            ]
            return sorted({r.tenant_id for r in rows})

    # -- sessions -------------------------------------------------------------------------

    @hookimpl
    def threadline_create_session(self, session: Session) -> Session:
        with self._lock:
            existing = self._sessions.get(session.id)
            if existing is not None:
                if existing.tenant_id != session.tenant_id:
                    raise id_conflict("session", session.id)
                return existing
            stored = attrs.evolve(session, metadata=_json(session.metadata, "metadata"))
            self._sessions[session.id] = stored
            self._messages[session.id], self._records[session.id] = [], []
            return stored

    @hookimpl
    def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        with self._lock:
            return self._session(tenant_id, session_id)

    @hookimpl
    def threadline_list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> list[Session]:
        with self._lock:
            found = [
                s
                for s in self._sessions.values()
                if s.tenant_id == tenant_id
                and user_id in (None, s.user_id)
                and agent_id in (None, s.agent_id)
            ]
        found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return found[offset : offset + limit]

    @hookimpl
    def threadline_replace_session(self, session: Session) -> Session:
        with self._lock:
            stored = self._require(session.tenant_id, session.id)
            stored = attrs.evolve(
                stored,
                title=session.title,
                updated_at=session.updated_at,
                metadata=_json(session.metadata, "metadata"),
            )
            self._sessions[session.id] = stored
            return stored

    @hookimpl
    def threadline_delete_session(self, tenant_id: str, session_id: str) -> bool:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return False
            del self._sessions[session_id]
            for m in self._messages.pop(session_id):
                del self._message_session[m.id]
            for r in self._records.pop(session_id):
                del self._record_by_id[r.id]
            for c in [c for c in self._calls.values() if c.session_id == session_id]:
                del self._calls[c.id]
            return True

    # -- messages -------------------------------------------------------------------------

    @hookimpl
    def threadline_save_messages(self, messages: Sequence[Message]) -> list[Message]:
        with self._lock:
            first = messages[0]
            session = self._require(first.tenant_id, first.session_id)
            if len({m.id for m in messages}) != len(messages):
                raise ValidationError("save_messages got the same message id twice")
            log = self._messages[session.id]
            out: list[Message] = []
            fresh: list[Message] = []
            for m in messages:  # check everything before writing anything
                where = self._message_session.get(m.id)
                if where is not None and where != m.session_id:
                    raise id_conflict("message", m.id)
                if where is not None:
                    out.append(next(x for x in log if x.id == m.id))
                else:
                    out.append(_copy(m, seq=len(log) + len(fresh) + 1))
                    fresh.append(out[-1])
            log.extend(fresh)
            self._message_session.update((m.id, session.id) for m in fresh)
            self._touch(session)
            return out

    @hookimpl
    def threadline_read_messages(
        self,
        tenant_id: str,
        session_id: str,
        after_seq: int,
        before_seq: int | None,
        limit: int | None,
        newest_first: bool,
        role: str | None,
    ) -> list[Message]:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            log = self._messages[session_id]  # seq n is at index n - 1
            found = log[after_seq : len(log) if before_seq is None else max(before_seq - 1, 0)]
        if newest_first:
            found.reverse()
        if role is not None:  # a store with a role index reads only those
            found = [m for m in found if m.role == role]
        return found if limit is None else found[:limit]

    @hookimpl
    def threadline_rewrite_messages(self, tenant_id: str, messages: Sequence[Message]) -> int:
        with self._lock:
            changes = []
            for m in messages:
                sid = self._message_session.get(m.id)
                if sid is None or self._sessions[sid].tenant_id != tenant_id != m.tenant_id:
                    raise NotFoundError(f"message {m.id} not found for this tenant")
                log = self._messages[sid]
                index = next(i for i in range(len(log) - 1, -1, -1) if log[i].id == m.id)
                changes.append(
                    (
                        log,
                        index,
                        _copy(
                            log[index],
                            content=m.content,
                            tool_calls=m.tool_calls,
                            status=m.status,
                            name=m.name,
                            metadata=m.metadata,
                            user_id=m.user_id,
                        ),
                    )
                )
            for log, index, message in changes:
                log[index] = message
                self._touch(self._sessions[message.session_id])
            return len(changes)

    # -- checkpoint records ---------------------------------------------------------------

    @hookimpl
    def threadline_insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        c = record.checkpoint
        with self._lock:
            session = self._require(c.tenant_id, c.session_id)
            existing = self._record_by_id.get(c.id)
            if existing is not None:
                if existing.checkpoint.session_id != c.session_id:
                    raise id_conflict("checkpoint", c.id)
                return existing
            if c.parent_id is not None:
                parent = self._record_by_id.get(c.parent_id)
                if parent is None or parent.checkpoint.session_id != c.session_id:
                    raise NotFoundError(f"parent checkpoint {c.parent_id} not found")
                if parent_tag is not None and parent.tag != parent_tag:
                    raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten")
            log = self._records[c.session_id]
            checkpoint = attrs.evolve(
                c,
                version=(log[-1].checkpoint.version or 0) + 1 if log else 1,
                input=_json(c.input, "checkpoint input"),
                state=_json(c.state, "checkpoint state"),
                properties=_json(c.properties, "checkpoint properties"),
            )
            stored = attrs.evolve(record, checkpoint=checkpoint)
            log.append(stored)
            self._record_by_id[c.id] = stored
            self._touch(session)
            return stored

    @hookimpl
    def threadline_read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        with self._lock:
            out = []
            record = self._record_by_id.get(checkpoint_id)
            while record is not None and record.checkpoint.tenant_id == tenant_id:
                out.append(record)
                if not chain or not record.depth:
                    break
                record = self._record_by_id.get(record.parent_id or "")
            return out

    @hookimpl
    def threadline_list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        with self._lock:
            if session_id is not None:
                sessions = [s for s in [self._session(tenant_id, session_id)] if s]
            else:
                sessions = sorted(
                    (s for s in self._sessions.values() if s.tenant_id == tenant_id),
                    key=lambda s: (s.created_at, s.id),
                )
            found = [
                r
                for s in sessions
                for r in self._records[s.id]
                if agent_id in (None, r.checkpoint.agent_id)
            ]
        return found[-1:] if latest else found

    @hookimpl
    def threadline_rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        records: Sequence[CheckpointRecord],
        delete_ids: Sequence[str],
    ) -> int:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                raise NotFoundError(f"session {session_id} not found for this tenant")
            new = {r.id: r for r in records}
            gone = set(delete_ids)
            log = self._records[session_id]
            kept = []
            for r in log:
                if r.id in gone:
                    del self._record_by_id[r.id]
                    continue
                if r.id in new:
                    n = new[r.id]
                    r = self._record_by_id[r.id] = attrs.evolve(
                        r, record=n.record, depth=n.depth, tag=n.tag
                    )
                kept.append(r)
            changed = len(log) - len(kept) + len(new)
            self._records[session_id] = kept
            return changed

    # -- API calls (capability group) -----------------------------------------------------

    @hookimpl
    def threadline_save_api_call(self, api_call: ApiCall) -> ApiCall:
        with self._lock:
            session = self._require(api_call.tenant_id, api_call.session_id)
            existing = self._calls.get(api_call.id)
            if existing is not None:
                if existing.session_id != api_call.session_id:
                    raise id_conflict("api call", api_call.id)
                return existing
            stored = attrs.evolve(api_call, metadata=_json(api_call.metadata, "metadata"))
            self._calls[api_call.id] = stored
            self._touch(session)
            return stored

    @hookimpl
    def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            return [c for c in self._calls.values() if c.session_id == session_id]

    @hookimpl
    def threadline_delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        with self._lock:
            doomed = [
                i
                for i in api_call_ids
                if i in self._calls and self._calls[i].tenant_id == tenant_id
            ]
            for i in doomed:
                del self._calls[i]
            return len(doomed)

    # -- agent and provider configs (capability group) ------------------------------------

    def _provider(self, provider: ProviderRecord) -> ProviderRecord:
        other = self._providers.get(provider.id)
        if other is not None and other.tenant_id != provider.tenant_id:
            raise id_conflict("provider", provider.id)
        return attrs.evolve(provider, metadata=_json(provider.metadata, "provider metadata"))

    @hookimpl
    def threadline_save_agent_config(self, config: AgentConfig) -> AgentConfig:
        with self._lock:
            agent, provider = config.agent, config.provider
            other = self._agents.get(agent.id)
            if other is not None and other.tenant_id != agent.tenant_id:
                raise id_conflict("agent", agent.id)
            if any(
                a.tenant_id == agent.tenant_id and a.code == agent.code and a.id != agent.id
                for a in self._agents.values()
            ):
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
            if provider is not None:
                provider = self._provider(provider)
                agent = attrs.evolve(agent, provider_id=provider.id)
            agent = attrs.evolve(
                agent,
                custom_params=_json(agent.custom_params, "custom_params"),
                response_format=_json(agent.response_format, "response_format"),
            )
            if provider is not None:
                self._providers[provider.id] = provider
            self._agents[agent.id] = agent
            return AgentConfig(agent=agent, provider=provider)

    def _config(self, agent: AgentRecord) -> AgentConfig:
        p = self._providers.get(agent.provider_id or "")
        return AgentConfig(
            agent=agent, provider=p if p and p.tenant_id == agent.tenant_id else None
        )

    @hookimpl
    def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        with self._lock:
            for a in self._agents.values():
                if a.tenant_id == tenant_id and (a.id == agent_id if agent_id else a.code == code):
                    return self._config(a)
            return None

    @hookimpl
    def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        with self._lock:
            agents = [a for a in self._agents.values() if a.tenant_id == tenant_id]
            return [self._config(a) for a in sorted(agents, key=lambda a: a.code)]

    @hookimpl
    def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        with self._lock:
            self._providers[provider.id] = stored = self._provider(provider)
            return stored

    @hookimpl
    def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        with self._lock:
            found = [p for p in self._providers.values() if p.tenant_id == tenant_id]
            return sorted(found, key=lambda p: (p.name, p.id))
