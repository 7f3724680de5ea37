"""The reference store: the required tier, both capability groups and the two shortcut
hooks over indexed dicts.

Everything else (windows, counts, checkpoints with deltas, pruning, erasure, retention)
comes from the core's defaults (:mod:`threadline.storekit.defaults`). It is the core's
reference for the contract, what ``threadline-memory`` is built on, and a base for a
store that keeps its data in memory and persists a log of it::

    store = threadline.Store(ReferenceStore())

**Indexes**: messages by session in seq order with their seqs (found by bisection: seqs
have gaps once messages were deleted) and the seqs of each role, and by id; checkpoint
records by id and by session in version order; API calls by session and by id; sessions by
tenant; agents by tenant and code. No read scans rows it
does not return, so a window or an id lookup costs the same in a small store as in a big one.

**Writes** check everything first, then hand their whole effect to :meth:`commit` as a
list of :class:`Change` (rows to put, ids to drop), which :meth:`apply` makes. A store that
persists overrides :meth:`commit` to write the changes before applying them, replays them
into :meth:`apply` when it opens, and rewrites its log from :meth:`dump`.

**Threads**: each hook is a plain method (a :class:`~threadline.storekit.sync.SyncStore`),
run on the event loop's thread (nothing here blocks). Writers are serialised by one lock;
:meth:`apply` and the reads hold another, so a reader waits for an apply, never for the
I/O of a subclass's :meth:`commit`. Stored values are JSON copies: a caller mutating a value
later changes nothing stored, and non-JSON values are refused.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import attrs

from threadline.codec import dump_json
from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.ids import utcnow
from threadline.models import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    trusted,
)
from threadline.queries import MessageRange, SessionQuery
from threadline.storekit.records import (
    CheckpointRecord,
    RecordRewrite,
    StaleRecordError,
    id_conflict,
)
from threadline.storekit.sync import SyncStore

__all__ = ["Change", "ReferenceStore"]

T = TypeVar("T")
R = TypeVar("R", bound=attrs.AttrsInstance)


def _json(value: Any, field: str) -> Any:
    return json.loads(dump_json(value, field))


def _with(row: R, **changes: Any) -> R:
    """``row`` with ``changes`` (values already valid): ``attrs.evolve`` without validators,
    which cost more than the rest of an append."""
    values = {f.name: getattr(row, f.name) for f in attrs.fields(type(row))}
    return trusted(type(row), **{**values, **changes})


def _copy(message: Message, **changes: Any) -> Message:
    calls = tuple(
        _with(c, arguments=_json(c.arguments, "tool arguments"))
        for c in changes.pop("tool_calls", message.tool_calls)
    )
    metadata = _json(changes.pop("metadata", message.metadata), "metadata")
    return _with(message, metadata=metadata, tool_calls=calls, **changes)


def _record_dict(r: CheckpointRecord) -> dict[str, Any]:
    return {
        "checkpoint": r.checkpoint.to_dict(),
        "record": r.record,
        "depth": r.depth,
        "tag": r.tag,
    }


def _record(d: dict[str, Any]) -> CheckpointRecord:
    return CheckpointRecord(
        Checkpoint.from_dict(d["checkpoint"]), d["record"], d["depth"], d["tag"]
    )


_ROWS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "sessions": (Session.to_dict, Session.from_dict),
    "messages": (Message.to_dict, Message.from_dict),
    "records": (_record_dict, _record),
    "calls": (ApiCall.to_dict, ApiCall.from_dict),
    "agents": (AgentRecord.to_dict, AgentRecord.from_dict),
    "providers": (ProviderRecord.to_dict, ProviderRecord.from_dict),
    **dict.fromkeys(("drop_sessions", "drop_records", "drop_calls"), (str, str)),
    "drop_messages": (list, tuple),  # (session id, after_seq, highest seq ever assigned)
}


class Change(NamedTuple):
    """One part of a write's effect: rows to put (``sessions``, ``messages``, ``records``,
    ``calls``, ``agents``, ``providers``) or ids to drop (``drop_sessions``, ...)."""

    kind: str
    rows: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        """The change as JSON values (for a log)."""
        encode = _ROWS[self.kind][0]
        return {"op": self.kind, "rows": [encode(r) for r in self.rows]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        """A change from :meth:`to_json`; ``KeyError``/``ValueError`` for a damaged one."""
        decode = _ROWS[data["op"]][1]
        return cls(data["op"], tuple(decode(r) for r in data["rows"]))


class ReferenceStore(SyncStore):
    """All data in indexed dicts of this object."""

    blocking = False  # dict operations: the hooks run inline (see run_sync)

    def __init__(self) -> None:
        self._writer = threading.RLock()  # one writer at a time: check, then commit
        self._lock = threading.RLock()  # apply and reads
        self._sessions: dict[str, Session] = {}
        self._tenant_sessions: dict[str, dict[str, None]] = {}  # tenant -> session ids
        self._messages: dict[str, list[Message]] = {}  # by session, in seq order
        self._seqs: dict[str, list[int]] = {}  # by session: the seqs of _messages
        self._last_seq: dict[str, int] = {}  # by session: the highest seq ever assigned
        self._roles: dict[str, dict[str, list[int]]] = {}  # session -> role -> seqs
        self._message_at: dict[str, tuple[str, int]] = {}  # message id -> (session id, seq)
        self._records: dict[str, dict[str, CheckpointRecord]] = {}  # by session, by version
        self._record_session: dict[str, str] = {}  # checkpoint id -> session id
        self._calls: dict[str, dict[str, ApiCall]] = {}  # by session
        self._call_session: dict[str, str] = {}  # api call id -> session id
        self._agents: dict[str, AgentRecord] = {}
        self._agent_codes: dict[tuple[str, str], str] = {}  # (tenant, code) -> agent id
        self._providers: dict[str, ProviderRecord] = {}
        self._puts = {kind: getattr(self, "_put_" + kind) for kind in _ROWS}

    async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
        """Inline: dict operations never block, a thread hand-off would cost more."""
        return operation(*args)

    # -- the write path -------------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> None:
        """Make a checked write's effect; called holding the writer lock. Override to
        persist ``changes`` first (then call this), so a failed write changes nothing."""
        self.apply(changes)

    def apply(self, changes: Sequence[Change]) -> None:
        """Put and drop the rows of ``changes`` in the indexes (also a log's replay)."""
        with self._lock:
            for kind, rows in changes:
                put = self._puts[kind]
                for row in rows:
                    put(row)

    def _put_sessions(self, s: Session) -> None:
        if s.id not in self._sessions:
            self._tenant_sessions.setdefault(s.tenant_id, {})[s.id] = None
            self._messages[s.id], self._seqs[s.id], self._roles[s.id] = [], [], {}
            self._last_seq[s.id] = 0
            self._records[s.id], self._calls[s.id] = {}, {}
        self._sessions[s.id] = s

    def _put_messages(self, m: Message) -> None:
        sid, seq = m.session_id, m.seq or 0
        log, seqs = self._messages[sid], self._seqs[sid]
        if seqs and seq <= seqs[-1]:  # a rewrite
            log[bisect.bisect_left(seqs, seq)] = m
            return
        log.append(m)
        seqs.append(seq)
        self._roles[sid].setdefault(m.role, []).append(seq)
        self._message_at[m.id] = (sid, seq)
        self._last_seq[sid] = max(self._last_seq[sid], seq)

    def _put_drop_messages(self, row: tuple[str, int, int]) -> None:
        sid, after_seq, last_seq = row
        seqs = self._seqs[sid]
        cut = bisect.bisect_right(seqs, after_seq)
        for m in self._messages[sid][cut:]:
            del self._message_at[m.id]
        del self._messages[sid][cut:], seqs[cut:]
        for role_seqs in self._roles[sid].values():
            del role_seqs[bisect.bisect_right(role_seqs, after_seq) :]
        self._last_seq[sid] = max(self._last_seq[sid], last_seq)

    def _put_records(self, r: CheckpointRecord) -> None:
        self._records[r.checkpoint.session_id][r.id] = r
        self._record_session[r.id] = r.checkpoint.session_id

    def _put_calls(self, c: ApiCall) -> None:
        self._calls[c.session_id][c.id] = c
        self._call_session[c.id] = c.session_id

    def _put_agents(self, a: AgentRecord) -> None:
        old = self._agents.get(a.id)
        if old is not None:
            self._agent_codes.pop((old.tenant_id, old.code), None)
        self._agents[a.id] = a
        self._agent_codes[a.tenant_id, a.code] = a.id

    def _put_providers(self, p: ProviderRecord) -> None:
        self._providers[p.id] = p

    def _put_drop_sessions(self, session_id: str) -> None:
        s = self._sessions.pop(session_id)
        del self._tenant_sessions[s.tenant_id][session_id]
        del self._roles[session_id], self._seqs[session_id], self._last_seq[session_id]
        for m in self._messages.pop(session_id):
            del self._message_at[m.id]
        for r in self._records.pop(session_id):
            del self._record_session[r]
        for c in self._calls.pop(session_id):
            del self._call_session[c]

    def _put_drop_records(self, checkpoint_id: str) -> None:
        del self._records[self._record_session.pop(checkpoint_id)][checkpoint_id]

    def _put_drop_calls(self, api_call_id: str) -> None:
        del self._calls[self._call_session.pop(api_call_id)][api_call_id]

    def dump(self) -> Iterator[Change]:
        """Changes that rebuild the present state into an empty store (a log's compaction)."""
        with self._lock:
            yield Change("providers", tuple(self._providers.values()))
            yield Change("agents", tuple(self._agents.values()))
            for sid, session in self._sessions.items():
                yield Change("sessions", (session,))
                yield Change("messages", tuple(self._messages[sid]))
                seqs, last = self._seqs[sid], self._last_seq[sid]
                if last > (seqs[-1] if seqs else 0):  # deleted seqs are never given again
                    yield Change("drop_messages", ((sid, last, last),))
                yield Change("calls", tuple(self._calls[sid].values()))
                yield Change("records", tuple(self._records[sid].values()))

    # -- helpers --------------------------------------------------------------------------

    def _session(self, tenant_id: str, session_id: str) -> Session | None:
        s = self._sessions.get(session_id)
        return s if s is not None and s.tenant_id == tenant_id else None

    def _require(self, tenant_id: str, session_id: str) -> Session:
        s = self._session(tenant_id, session_id)
        if s is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        return s

    @staticmethod
    def _touched(session: Session) -> Change:
        """Every write to a session is activity: ``updated_at`` moves to now, never back."""
        now = utcnow()
        rows = (_with(session, updated_at=now),) if now > session.updated_at else ()
        return Change("sessions", rows)

    def list_tenants(self) -> list[str]:
        with self._lock:
            tenants = {t for t, ids in self._tenant_sessions.items() if ids}
            tenants.update(a.tenant_id for a in self._agents.values())
            tenants.update(p.tenant_id for p in self._providers.values())
            return sorted(tenants)

    # -- sessions -------------------------------------------------------------------------

    def create_session(self, session: Session) -> Session:
        with self._writer:
            existing = self._sessions.get(session.id)
            if existing is not None:
                if existing.tenant_id != session.tenant_id:
                    raise id_conflict("session", session.id)
                return existing
            stored = attrs.evolve(session, metadata=_json(session.metadata, "metadata"))
            self.commit([Change("sessions", (stored,))])
            return stored

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        with self._lock:
            return self._session(tenant_id, session_id)

    def list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        with self._lock:
            found = list(map(self._sessions.__getitem__, self._tenant_sessions.get(tenant_id, ())))
        return query.page(found)

    def replace_session(self, session: Session) -> Session:
        with self._writer:
            stored = attrs.evolve(
                self._require(session.tenant_id, session.id),
                title=session.title,
                updated_at=session.updated_at,
                metadata=_json(session.metadata, "metadata"),
            )
            self.commit([Change("sessions", (stored,))])
            return stored

    def delete_session(self, tenant_id: str, session_id: str) -> bool:
        with self._writer:
            if self._session(tenant_id, session_id) is None:
                return False
            self.commit([Change("drop_sessions", (session_id,))])
            return True

    # -- messages -------------------------------------------------------------------------

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        with self._writer:
            session = self._require(messages[0].tenant_id, messages[0].session_id)
            if len({m.id for m in messages}) != len(messages):
                raise ValidationError("save_messages got the same message id twice")
            last = self._last_seq[session.id]
            out: list[Message] = []
            fresh: list[Message] = []
            for m in messages:  # check everything before writing anything
                where = self._message_at.get(m.id, (None,))[0]
                if where is not None and where != m.session_id:
                    raise id_conflict("message", m.id)
                if where is not None:
                    out.append(self._stored(m.id))
                else:
                    out.append(_copy(m, seq=last + len(fresh) + 1))
                    fresh.append(out[-1])
            if fresh:
                self.commit([Change("messages", tuple(fresh)), self._touched(session)])
            return out

    def _stored(self, message_id: str) -> Message:
        """The stored message with this id, through the id index (never a scan)."""
        return self._at(*self._message_at[message_id])

    def _at(self, session_id: str, seq: int) -> Message:
        """The stored message at ``seq`` (present) of a session, by bisection."""
        return self._messages[session_id][bisect.bisect_left(self._seqs[session_id], seq)]

    def read_messages(self, tenant_id: str, session_id: str, query: MessageRange) -> list[Message]:
        role = query.role
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            seqs = self._seqs[session_id] if role is None else self._roles[session_id].get(role, [])
            lo, hi = query.bounds(seqs)
            if role is None:
                found = self._messages[session_id][lo:hi]
            else:  # the role's seqs, each found by bisection
                found = [self._at(session_id, seq) for seq in seqs[lo:hi]]
        if query.newest_first:
            found.reverse()
        return found

    def rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        with self._writer:
            rows: list[Message] = []
            touched: dict[str, Change] = {}
            for m in messages:
                sid = self._message_at.get(m.id, (None,))[0]
                if sid is None or self._sessions[sid].tenant_id != tenant_id:
                    raise NotFoundError(f"message {m.id} not found for this tenant")
                stored = self._stored(m.id)
                if only_streaming and stored.status != "streaming":
                    continue  # finished meanwhile: its ending stays
                rows.append(
                    _copy(
                        stored,
                        content=m.content,
                        tool_calls=m.tool_calls,
                        status=m.status,
                        name=m.name,
                        metadata=m.metadata,
                        user_id=m.user_id,
                    )  # fmt: skip
                )
                if activity:
                    touched[sid] = self._touched(self._sessions[sid])
            if rows:
                self.commit([Change("messages", tuple(rows)), *touched.values()])
            return len(rows)

    def delete_messages(self, tenant_id: str, session_id: str, after_seq: int) -> int:
        with self._writer:
            session = self._session(tenant_id, session_id)
            if session is None:
                return 0
            seqs = self._seqs[session_id]
            gone = len(seqs) - bisect.bisect_right(seqs, after_seq)
            if gone:
                row = (session_id, after_seq, self._last_seq[session_id])
                self.commit([Change("drop_messages", (row,)), self._touched(session)])
            return gone

    # Derived, kept: the length of the session's list (the default reads every message).
    def count_messages(self, tenant_id: str, session_id: str) -> int:
        with self._lock:
            return len(self._messages[session_id]) if self._session(tenant_id, session_id) else 0

    # -- checkpoint records ---------------------------------------------------------------

    def insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        c = record.checkpoint
        with self._writer:
            session = self._require(c.tenant_id, c.session_id)
            existing = self._find_record(c.id)
            if existing is not None:
                if existing.checkpoint.session_id != c.session_id:
                    raise id_conflict("checkpoint", c.id)
                return existing
            if c.parent_id is not None:
                parent = self._records[c.session_id].get(c.parent_id)
                if parent is None:
                    raise NotFoundError(f"parent checkpoint {c.parent_id} not found")
                if parent_tag is not None and parent.tag != parent_tag:
                    raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten")
            last = next(reversed(self._records[c.session_id].values()), None)
            checkpoint = attrs.evolve(
                c,
                version=(last.checkpoint.version or 0) + 1 if last else 1,
                input=_json(c.input, "checkpoint input"),
                state=_json(c.state, "checkpoint state"),
                properties=_json(c.properties, "checkpoint properties"),
            )
            stored = attrs.evolve(record, checkpoint=checkpoint)
            self.commit([Change("records", (stored,)), self._touched(session)])
            return stored

    def _find_record(self, checkpoint_id: str) -> CheckpointRecord | None:
        sid = self._record_session.get(checkpoint_id)
        return None if sid is None else self._records[sid][checkpoint_id]

    def read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        with self._lock:
            return self._chain(tenant_id, self._find_record(checkpoint_id), chain)

    def _chain(
        self, tenant_id: str, record: CheckpointRecord | None, chain: bool
    ) -> list[CheckpointRecord]:
        out = []
        while record is not None and record.checkpoint.tenant_id == tenant_id:
            out.append(record)
            if not chain or not record.depth:
                break
            record = self._find_record(record.parent_id or "")
        return out

    def list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        with self._lock:
            if session_id is not None:
                sessions = [s for s in [self._session(tenant_id, session_id)] if s]
            else:
                ids = self._tenant_sessions.get(tenant_id, ())
                sessions = sorted(
                    map(self._sessions.__getitem__, ids), key=lambda s: (s.created_at, s.id)
                )
            found = [
                r
                for s in sessions
                for r in (
                    reversed(self._records[s.id].values())
                    if latest
                    else self._records[s.id].values()
                )
                if agent_id in (None, r.checkpoint.agent_id)
            ]
            return self._chain(tenant_id, found[0], True) if latest and found else found

    def read_checkpoint_head(
        self,
        tenant_id: str,
        checkpoint_id: str | None,
        session_id: str | None,
        agent_id: str | None,
    ) -> CheckpointRecord | None:
        """The optional shortcut: the head of the chain read with the same arguments."""
        if checkpoint_id is not None:
            found = self.read_checkpoint_records(tenant_id, checkpoint_id, False)
        else:
            found = self.list_checkpoint_records(tenant_id, session_id, agent_id, True)
        return found[0] if found else None

    def append_checkpoint_state(
        self, tenant_id: str, checkpoint_id: str, key: str, item: Any
    ) -> bool:
        """The optional shortcut: ``item`` appended to the list ``state[key]``."""
        if not key.isidentifier():
            raise ValidationError(f"state key {key!r}: an identifier is needed")
        value = _json(item, "checkpoint state")
        with self._writer:
            record = self._find_record(checkpoint_id)
            if record is None or record.checkpoint.tenant_id != tenant_id:
                return False
            state = record.checkpoint.state
            if not isinstance(state.get(key), list):
                return False
            grown = _with(record.checkpoint, state={**state, key: [*state[key], value]})
            self.commit([Change("records", (attrs.evolve(record, checkpoint=grown),))])
            return True

    def rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        plan: RecordRewrite,
    ) -> int:
        with self._writer:
            self._require(tenant_id, session_id)
            stored = self._records[session_id]
            plan.check({i: r.tag for i, r in stored.items()}, session_id)
            rows = tuple(
                attrs.evolve(stored[r.id], record=r.record, depth=r.depth, tag=r.tag)
                for r in plan.records
                if r.id in stored
            )
            gone = tuple(i for i in dict.fromkeys(plan.delete_ids) if i in stored)
            if rows or gone:
                self.commit([Change("records", rows), Change("drop_records", gone)])
            return len(rows) + len(gone)

    # -- API calls (capability group) -----------------------------------------------------

    def save_api_call(self, api_call: ApiCall) -> ApiCall:
        with self._writer:
            session = self._require(api_call.tenant_id, api_call.session_id)
            where = self._call_session.get(api_call.id)
            if where is not None:
                if where != api_call.session_id:
                    raise id_conflict("api call", api_call.id)
                return self._calls[where][api_call.id]
            stored = attrs.evolve(api_call, metadata=_json(api_call.metadata, "metadata"))
            self.commit([Change("calls", (stored,)), self._touched(session)])
            return stored

    def list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        with self._lock:
            if self._session(tenant_id, session_id) is None:
                return []
            return list(self._calls[session_id].values())

    def delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        with self._writer:
            doomed = tuple(
                i
                for i in dict.fromkeys(api_call_ids)
                if i in self._call_session
                and self._sessions[self._call_session[i]].tenant_id == tenant_id
            )
            if doomed:
                self.commit([Change("drop_calls", doomed)])
            return len(doomed)

    # -- agent and provider configs (capability group) ------------------------------------

    def _provider(self, provider: ProviderRecord) -> ProviderRecord:
        other = self._providers.get(provider.id)
        if other is not None and other.tenant_id != provider.tenant_id:
            raise id_conflict("provider", provider.id)
        return attrs.evolve(provider, metadata=_json(provider.metadata, "provider metadata"))

    def save_agent_config(self, config: AgentConfig) -> AgentConfig:
        with self._writer:
            agent, provider = config.agent, config.provider
            other = self._agents.get(agent.id)
            if other is not None and other.tenant_id != agent.tenant_id:
                raise id_conflict("agent", agent.id)
            if self._agent_codes.get((agent.tenant_id, agent.code), agent.id) != agent.id:
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
            if provider is not None:
                provider = self._provider(provider)
                agent = attrs.evolve(agent, provider_id=provider.id)
            agent = attrs.evolve(
                agent,
                custom_params=_json(agent.custom_params, "custom_params"),
                response_format=_json(agent.response_format, "response_format"),
            )
            providers = () if provider is None else (provider,)
            self.commit([Change("providers", providers), Change("agents", (agent,))])
            return AgentConfig(agent=agent, provider=provider)

    def _config(self, agent: AgentRecord) -> AgentConfig:
        p = self._providers.get(agent.provider_id or "")
        return AgentConfig(
            agent=agent, provider=p if p and p.tenant_id == agent.tenant_id else None
        )

    def load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        with self._lock:
            if agent_id is None:
                agent_id = self._agent_codes.get((tenant_id, code or ""))
            agent = self._agents.get(agent_id or "")
            return self._config(agent) if agent and agent.tenant_id == tenant_id else None

    def list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        with self._lock:
            agents = [a for a in self._agents.values() if a.tenant_id == tenant_id]
            return [self._config(a) for a in sorted(agents, key=lambda a: a.code)]

    def save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        with self._writer:
            stored = self._provider(provider)
            self.commit([Change("providers", (stored,))])
            return stored

    def list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        with self._lock:
            found = [p for p in self._providers.values() if p.tenant_id == tenant_id]
            return sorted(found, key=lambda p: (p.name, p.id))
