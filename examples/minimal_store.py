"""The smallest store that passes threadline's conformance kit: dicts, indexes and one lock.

It implements the required tier and both capability groups as plain methods; the core
derives every other hook (windows, counts, checkpoints with deltas, pruning, erasure) and
``threadline.storekit.sync.SyncStore`` turns each method into its async hook::

    store = threadline.Store(MinimalStore())

Every read goes through an index (a window or an id lookup costs the same in a big store),
and every write checks everything before it changes anything.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from threadline import AgentConfig, ApiCall, Message, ProviderRecord, Session
from threadline.codec import dump_json
from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.ids import utcnow
from threadline.queries import MessageRange, SessionQuery
from threadline.storekit import CheckpointRecord, StaleRecordError
from threadline.storekit.records import RecordRewrite, id_conflict
from threadline.storekit.sync import SyncStore

T = TypeVar("T")


def copy(value: Any, field: str) -> Any:
    """A JSON copy: what the caller mutates later is not stored; non-JSON is refused."""
    return json.loads(dump_json(value, field))


def seq_of(message: Message) -> int:
    return message.seq or 0


class MinimalStore(SyncStore):
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.sessions: dict[str, Session] = {}
        self.messages: dict[str, list[Message]] = {}  # session id -> messages in seq order
        self.last_seq: dict[str, int] = {}  # session id -> highest seq ever given (never reused)
        self.roles: dict[tuple[str, str], list[int]] = {}  # (session id, role) -> seqs
        self.message_at: dict[str, tuple[str, int]] = {}  # message id -> (session id, seq)
        self.records: dict[str, dict[str, CheckpointRecord]] = {}  # session id -> by version
        self.record_session: dict[str, str] = {}  # checkpoint id -> session id
        self.calls: dict[str, dict[str, ApiCall]] = {}  # session id -> calls by id
        self.call_session: dict[str, str] = {}  # api call id -> session id
        self.configs: dict[str, AgentConfig] = {}  # agent id -> config
        self.providers: dict[str, ProviderRecord] = {}

    async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
        with self.lock:  # dicts never block: no thread, one lock for everything
            return operation(*args)

    def session(self, tenant_id: str, session_id: str, *, required: bool = False) -> Any:
        s = self.sessions.get(session_id)
        if (s is None or s.tenant_id != tenant_id) and required:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return s if s is not None and s.tenant_id == tenant_id else None

    def touch(self, session_id: str) -> None:
        s = self.sessions[session_id]  # every write to a session is activity
        self.sessions[session_id] = attrs.evolve(s, updated_at=max(utcnow(), s.updated_at))

    def list_tenants(self) -> list[str]:
        rows: list[Any] = [*self.sessions.values(), *self.providers.values()]
        rows += [c.agent for c in self.configs.values()]
        return sorted({r.tenant_id for r in rows})

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, session: Session) -> Session:
        if (old := self.sessions.get(session.id)) is not None:
            if old.tenant_id != session.tenant_id:
                raise id_conflict("session", session.id)
            return old
        s = self.sessions[session.id] = attrs.evolve(
            session, metadata=copy(session.metadata, "metadata")
        )
        self.messages[s.id], self.records[s.id], self.calls[s.id] = [], {}, {}
        self.last_seq[s.id] = 0
        return s

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        return self.session(tenant_id, session_id)  # type: ignore[no-any-return]

    def list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        return query.page(s for s in self.sessions.values() if s.tenant_id == tenant_id)

    def replace_session(self, session: Session) -> Session:
        s = self.session(session.tenant_id, session.id, required=True)
        metadata = copy(session.metadata, "metadata")
        s = self.sessions[s.id] = attrs.evolve(
            s, title=session.title, updated_at=session.updated_at, metadata=metadata
        )
        return s  # type: ignore[no-any-return]

    def delete_session(self, tenant_id: str, session_id: str) -> bool:
        if self.session(tenant_id, session_id) is None:
            return False
        del self.sessions[session_id], self.last_seq[session_id]
        for m in self.messages.pop(session_id):
            del self.message_at[m.id]
            self.roles.pop((session_id, m.role), None)
        for checkpoint_id in self.records.pop(session_id):
            del self.record_session[checkpoint_id]
        for call_id in self.calls.pop(session_id):
            del self.call_session[call_id]
        return True

    # -- messages -----------------------------------------------------------------------

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        s = self.session(messages[0].tenant_id, messages[0].session_id, required=True)
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        log, out, fresh = self.messages[s.id], [], []  # type: list[Message], list[Message], list[Message]
        for m in messages:  # check everything before writing anything
            if m.id in self.message_at:
                sid, seq = self.message_at[m.id]
                if sid != s.id:
                    raise id_conflict("message", m.id)
                out.append(self.at(sid, seq))  # a retry: the stored message comes back
                continue
            calls = [
                attrs.evolve(c, arguments=copy(c.arguments, "tool arguments")) for c in m.tool_calls
            ]
            seq = self.last_seq[s.id] + len(fresh) + 1
            fresh.append(
                attrs.evolve(m, seq=seq, metadata=copy(m.metadata, "metadata"), tool_calls=calls)
            )
            out.append(fresh[-1])
        for m in fresh:
            log.append(m)
            self.message_at[m.id] = (s.id, m.seq or 0)
            self.roles.setdefault((s.id, m.role), []).append(m.seq or 0)
        if fresh:
            self.last_seq[s.id] = fresh[-1].seq or 0
            self.touch(s.id)
        return out

    def at(self, session_id: str, seq: int) -> Message:  # seqs have gaps after a deletion
        log = self.messages[session_id]
        return log[bisect.bisect_left(log, seq, key=seq_of)]

    def read_messages(self, tenant_id: str, session_id: str, query: MessageRange) -> list[Message]:
        if self.session(tenant_id, session_id) is None:
            return []
        rows: list[Any] = self.messages[session_id]  # in seq order, or a role's seqs
        role, key = query.role, seq_of if query.role is None else None
        if role is not None:
            rows = self.roles.get((session_id, role), [])
        lo, hi = query.bounds(rows, key)
        found = rows[lo:hi] if role is None else [self.at(session_id, n) for n in rows[lo:hi]]
        return found[::-1] if query.newest_first else found

    def rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        new = []
        for m in messages:
            sid, seq = self.message_at.get(m.id, ("", 0))
            if self.session(tenant_id, sid) is None:
                raise NotFoundError(f"message {m.id} not found for this tenant")
            calls = [
                attrs.evolve(c, arguments=copy(c.arguments, "tool arguments")) for c in m.tool_calls
            ]
            old = self.at(sid, seq)
            if only_streaming and old.status != "streaming":
                continue  # finished meanwhile: its ending stays
            new.append(attrs.evolve(
                old, content=m.content, tool_calls=calls, status=m.status, name=m.name,
                metadata=copy(m.metadata, "metadata"), user_id=m.user_id,
            ))  # fmt: skip
        for m in new:
            log = self.messages[m.session_id]
            log[bisect.bisect_left(log, m.seq or 0, key=seq_of)] = m
            if activity:  # erasure's redaction is housekeeping: updated_at stays
                self.touch(m.session_id)
        return len(new)

    def delete_messages(self, tenant_id: str, session_id: str, after_seq: int) -> int:
        if self.session(tenant_id, session_id) is None:
            return 0
        log = self.messages[session_id]
        cut = bisect.bisect_right(log, after_seq, key=seq_of)
        for m in log[cut:]:
            del self.message_at[m.id]
        for role in {m.role for m in log[cut:]}:
            seqs = self.roles[session_id, role]
            del seqs[bisect.bisect_right(seqs, after_seq) :]
        gone, log[cut:] = len(log) - cut, []
        if gone:
            self.touch(session_id)
        return gone

    def count_messages(self, tenant_id: str, session_id: str) -> int:  # derived: for speed
        return len(self.messages[session_id]) if self.session(tenant_id, session_id) else 0

    # -- checkpoint records -------------------------------------------------------------

    def insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        c = record.checkpoint
        s = self.session(c.tenant_id, c.session_id, required=True)
        if (sid := self.record_session.get(c.id)) is not None:
            if sid != s.id:
                raise id_conflict("checkpoint", c.id)
            return self.records[sid][c.id]
        records = self.records[s.id]
        if c.parent_id is not None:
            if (parent := records.get(c.parent_id)) is None:
                raise NotFoundError(f"parent checkpoint {c.parent_id} not found")
            if parent_tag is not None and parent.tag != parent_tag:
                raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten")
        last = next(reversed(records.values()), None)
        version = (last.checkpoint.version or 0) + 1 if last else 1
        c = attrs.evolve(
            c, version=version, input=copy(c.input, "checkpoint input"),
            state=copy(c.state, "checkpoint state"),
            properties=copy(c.properties, "checkpoint properties"),
        )  # fmt: skip
        stored = records[c.id] = attrs.evolve(record, checkpoint=c)
        self.record_session[c.id] = s.id
        self.touch(s.id)
        return stored

    def read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        out: list[CheckpointRecord] = []
        while (sid := self.record_session.get(checkpoint_id)) and self.session(tenant_id, sid):
            out.append(record := self.records[sid][checkpoint_id])
            if not chain or not record.depth:
                break
            checkpoint_id = record.parent_id or ""
        return out

    def list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        if session_id is not None:
            sessions = [s for s in [self.session(tenant_id, session_id)] if s]
        else:
            sessions = sorted(
                (s for s in self.sessions.values() if s.tenant_id == tenant_id),
                key=lambda s: (s.created_at, s.id),
            )
        found = [
            r
            for s in sessions
            for r in self.records[s.id].values()
            if agent_id in (None, r.checkpoint.agent_id)
        ]
        if latest and found:  # the newest record, then its chain
            return self.read_checkpoint_records(tenant_id, found[-1].id, chain=True)
        return found

    def rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        plan: RecordRewrite,
    ) -> int:
        stored = self.records[self.session(tenant_id, session_id, required=True).id]
        plan.check({i: r.tag for i, r in stored.items()}, session_id)  # a write came in between
        for r in plan.records:
            if r.id in stored:
                stored[r.id] = attrs.evolve(stored[r.id], record=r.record, depth=r.depth, tag=r.tag)
        gone = [i for i in dict.fromkeys(plan.delete_ids) if i in stored]
        for checkpoint_id in gone:
            del stored[checkpoint_id], self.record_session[checkpoint_id]
        return len(plan.records) + len(gone)

    # -- API calls ----------------------------------------------------------------------

    def save_api_call(self, api_call: ApiCall) -> ApiCall:
        s = self.session(api_call.tenant_id, api_call.session_id, required=True)
        if (sid := self.call_session.get(api_call.id)) is not None:
            if sid != s.id:
                raise id_conflict("api call", api_call.id)
            return self.calls[sid][api_call.id]
        stored = self.calls[s.id][api_call.id] = attrs.evolve(
            api_call, metadata=copy(api_call.metadata, "metadata")
        )
        self.call_session[api_call.id] = s.id
        self.touch(s.id)
        return stored

    def list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        return list(self.calls[session_id].values()) if self.session(tenant_id, session_id) else []

    def delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        gone = [
            i
            for i in dict.fromkeys(api_call_ids)
            if self.session(tenant_id, self.call_session.get(i, ""))
        ]
        for i in gone:
            del self.calls[self.call_session.pop(i)][i]
        return len(gone)

    # -- agent and provider configs -----------------------------------------------------

    def save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        if (
            old := self.providers.get(provider.id)
        ) is not None and old.tenant_id != provider.tenant_id:
            raise id_conflict("provider", provider.id)
        stored = self.providers[provider.id] = attrs.evolve(
            provider, metadata=copy(provider.metadata, "provider metadata")
        )
        return stored

    def save_agent_config(self, config: AgentConfig) -> AgentConfig:
        agent, provider = config.agent, config.provider
        if (
            old := self.configs.get(agent.id)
        ) is not None and old.agent.tenant_id != agent.tenant_id:
            raise id_conflict("agent", agent.id)
        if (
            taken := self.load_agent_config(agent.tenant_id, agent.code, None)
        ) and taken.agent.id != agent.id:
            raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
        agent = attrs.evolve(
            agent, provider_id=provider.id if provider else agent.provider_id,
            custom_params=copy(agent.custom_params, "custom_params"),
            response_format=copy(agent.response_format, "response_format"),
        )  # fmt: skip
        if provider is not None:
            provider = self.save_provider(provider)
        self.configs[agent.id] = AgentConfig(agent=agent, provider=provider)
        return self.configs[agent.id]

    def load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        for config in self.list_agent_configs(tenant_id):
            if (config.agent.id == agent_id) if agent_id else (config.agent.code == code):
                return config
        return None

    def list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        found = []
        for config in sorted(self.configs.values(), key=lambda c: c.agent.code):
            if config.agent.tenant_id == tenant_id:
                p = self.providers.get(config.agent.provider_id or "")
                found.append(
                    attrs.evolve(config, provider=p if p and p.tenant_id == tenant_id else None)
                )
        return found

    def list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        return sorted(
            (p for p in self.providers.values() if p.tenant_id == tenant_id),
            key=lambda p: (p.name, p.id),
        )
