"""The Redis store: threadline's store contract on redis-py's asyncio client.

It implements the required tier, the API-call and config groups and the lifecycle hooks;
the core derives the rest (:mod:`threadline.storekit.defaults`). Every write is one Lua
script (:mod:`threadline_redis.scripts`), so it is atomic and numbers seqs and versions
without gaps or collisions across processes; every read is one command or one read-only
script whose cost follows what it returns, not the session's length. The key layout is in
the README ("Data layout").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import attrs

from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.ids import check_id
from threadline.models import AgentConfig, ApiCall, Message, ProviderRecord, Session
from threadline.queries import MessageRange, SessionQuery, fork_parent
from threadline.storekit.defaults import DEFAULTS
from threadline.storekit.delta import SNAPSHOT_EVERY
from threadline.storekit.records import (
    CheckpointRecord,
    RecordRewrite,
    StaleRecordError,
    ancestor,
    id_conflict,
)
from threadline.storekit.window import orphaned_tool_results
from threadline_redis.client import Client
from threadline_redis.codec import (
    SESSION_FIELDS,
    decode_agent,
    decode_call,
    decode_checkpoint,
    decode_message,
    decode_provider,
    decode_session,
    encode_agent,
    encode_call,
    encode_checkpoint,
    encode_message,
    encode_provider,
    message_tail,
    session_row,
    time_key,
)
from threadline_redis.config import RedisConfig
from threadline_redis.live import LiveReplies

__all__ = ["MIGRATIONS", "RedisStore"]

MIGRATIONS = ("0001_redis_layout", "0002_fork_index")
"""The layouts a store at a prefix has been brought to (the ``schema`` field of ``meta``)."""

_FAST_ROUNDS = 64  # load_window reads larger windows through the core's default
_ROLE_AT = 41  # a member starts '["<36-char id>","<role>"'
_NO_LIMIT = 2**53  # a larger limit reads everything (a sorted set holds fewer members)
_SWEEP = 100  # expired sessions removed per sweep
_SWEEP_EVERY = 60.0  # seconds between the sweeps session creation runs


def _records(values: Sequence[Any], tenant_id: str, session_id: str) -> list[CheckpointRecord]:
    """Records from ``[header, id, fields, record] * n`` (a header is ``depth tag parent
    version agent``); a chain's ancestors come without fields and are built as such."""
    out = []
    for i in range(0, len(values), 4):
        header, checkpoint_id, body, record = values[i : i + 4]
        depth, tag, parent, version, _agent = header.split(" ")
        if body:
            checkpoint = decode_checkpoint(body, version)
            out.append(CheckpointRecord(checkpoint, record, int(depth), int(tag)))
        else:
            out.append(
                ancestor(
                    checkpoint_id,
                    None if parent == "-" else parent,
                    tenant_id,
                    session_id,
                    record,
                    int(depth),
                    int(tag),
                )  # fmt: skip
            )
    return out


class _Reads:
    """The store's ``read_messages`` as the core's defaults call hooks (for the window)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.state: dict[str, Any] = {}

    def has(self, hook: str) -> bool:
        return hook == "threadline_read_messages"

    async def call(self, hook: str, **kwargs: Any) -> Any:
        assert hook == "threadline_read_messages", hook
        return await self.store.threadline_read_messages(**kwargs)


class RedisStore(LiveReplies):
    """A threadline store on one Redis server (database ``db``, keys under ``prefix``).

    Open one with :meth:`open` or ``threadline.connect("redis://host:6379/0")``.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.config: RedisConfig = client.config
        self.snapshot_every = SNAPSHOT_EVERY
        """Longest chain of history records (see :mod:`threadline.storekit.delta`)."""
        self._swept = 0.0
        self.persistence: str | None = None
        """What the server keeps on disk, in words (read by ``migrate``)."""

    @classmethod
    async def open(cls, config: RedisConfig) -> RedisStore:
        """The store on ``config``'s server; the first command connects."""
        return cls(Client(config))

    async def exists(self) -> bool:
        """True when the prefix holds threadline data (its ``meta`` key)."""
        c = self.client
        return bool(await c.command("open", c.redis.exists(c.key("meta"))))

    def _ttl(self) -> str:
        return str(self.config.ttl * 1000) if self.config.ttl else ""

    # -- lifecycle --------------------------------------------------------------------------

    @hookimpl
    async def threadline_migrate(self) -> list[str]:
        """Mark the prefix as a threadline store, report persistence, sweep expired sessions.

        Layout 1 to 2 (``0002_fork_index``): every session is given its forks index entry
        from the ``forked_from`` its metadata records (idempotent: migrators may race)."""
        c = self.client
        self.persistence = await c.persistence()
        created = await c.command("migrate", c.redis.hsetnx(c.key("meta"), "schema", "2"))
        await c.script("sweep", _SWEEP)
        if created:
            return list(MIGRATIONS)
        if await c.command("migrate", c.redis.hget(c.key("meta"), "schema")) != "1":
            return []
        cursor: int = 0
        while True:
            scan = c.redis.scan(cursor, match=c.key("s", "*"), count=1000)
            cursor, keys = await c.command("migrate", scan)
            for key in keys:
                await c.script("index_fork", str(key).rsplit(":", 1)[-1])
            if not cursor:
                break
        await c.command("migrate", c.redis.hset(c.key("meta"), "schema", "2"))
        return ["0002_fork_index"]

    @hookimpl
    async def threadline_close(self) -> None:
        await self.close_live()
        await self.client.close()

    @hookimpl
    async def threadline_list_tenants(self) -> list[str]:
        await self.client.script("sweep", _SWEEP)
        return sorted(await self.client.script("list_tenants"))

    # -- sessions ---------------------------------------------------------------------------

    @hookimpl
    async def threadline_create_session(self, session: Session) -> Session:
        """Create (or find, same tenant) the session; another tenant's id conflicts."""
        if time.monotonic() - self._swept > _SWEEP_EVERY:  # expired sessions go now and then
            self._swept = time.monotonic()
            await self.client.script("sweep", _SWEEP)
        found = await self.client.script(
            "create_session", session.tenant_id, session.id, session.user_id or "",
            session.agent_id or "", session_row(session), time_key(session.created_at),
            time_key(session.updated_at), self._ttl(), _fork_parent(session),
        )  # fmt: skip
        if found[0] == "conflict":
            raise id_conflict("session", session.id)
        return decode_session(session.id, found[1:])

    @hookimpl
    async def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        c = self.client
        values = await c.command(
            "get_session", c.redis.hmget(c.key("s", session_id), list(SESSION_FIELDS))
        )
        if values[0] != tenant_id or (values[6] and int(values[6]) <= time.time() * 1000):
            return None
        return decode_session(session_id, values)

    async def expires_at(self, tenant_id: str, session_id: str) -> datetime | None:
        """When the session expires unless written to again (``None``: no TTL, or no such
        session for this tenant). ``updated_at`` + the TTL, as Redis holds it."""
        c = self.client
        t, exp = await c.command("expires_at", c.redis.hmget(c.key("s", session_id), ["t", "exp"]))
        if t != tenant_id or not exp or int(exp) <= time.time() * 1000:
            return None
        return datetime.fromtimestamp(int(exp) / 1000, timezone.utc)

    @hookimpl
    async def threadline_list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        """Newest ``updated_at`` first (ties by id), from the tenant's (or user's) index; a
        cursor starts the reverse lexical range just below its member."""
        if query.limit <= 0:
            return []
        user_id, agent_id, after = query.user_id, query.agent_id, query.after
        want_user = ""
        if query.forked_from is not None:  # the parent's forks index, then the filters
            key = self.client.key("t", tenant_id, "f", query.forked_from, "s")
            want_user = user_id or ""
        elif user_id is not None:
            key = self.client.key("t", tenant_id, "u", user_id, "s")
        elif agent_id is not None:
            key, agent_id = self.client.key("t", tenant_id, "a", agent_id, "s"), None
        else:
            key = self.client.key("t", tenant_id, "s")
        start = "+" if after is None else f"({time_key(after.updated_at)}{after.id}"
        rows = await self.client.script(
            "list_sessions", key, agent_id or "", query.offset, query.limit, start, want_user
        )
        return [decode_session(rows[i], rows[i + 1 : i + 8]) for i in range(0, len(rows), 8)]

    @hookimpl
    async def threadline_replace_session(self, session: Session) -> Session:
        values = await self.client.script(
            "replace_session", session.tenant_id, session.id, session_row(session),
            time_key(session.updated_at), _fork_parent(session),
        )  # fmt: skip
        if not values:
            raise NotFoundError(f"session {session.id} not found for this tenant")
        return decode_session(session.id, values)

    @hookimpl
    async def threadline_delete_session(self, tenant_id: str, session_id: str) -> bool:
        return bool(await self.client.script("delete_session", tenant_id, session_id))

    # -- messages ---------------------------------------------------------------------------

    @hookimpl
    async def threadline_save_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Append a batch in one script: consecutive seqs, stored ids come back as they are."""
        first = messages[0]
        tid, sid = first.tenant_id, first.session_id
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        args: list[str | int] = [tid, sid, len(messages)]
        for m in messages:
            if m.session_id != sid or m.tenant_id != tid:
                raise ValidationError("save_messages takes messages of one session")
            args += (m.id, m.role, encode_message(m))
        found = await self.client.script("save_messages", *args)
        if found[0] == "nf":
            raise NotFoundError(f"session {sid} not found for this tenant")
        if found[0] == "conflict":
            raise id_conflict("message", found[1])
        out = []
        for i, m in enumerate(messages):
            seq, stored = found[2 * i + 1], found[2 * i + 2]
            if stored:
                out.append(decode_message(stored, seq, tid, sid))
            elif m.metadata or m.tool_calls:  # JSON copies, as a read gives them
                out.append(decode_message(encode_message(m), seq, tid, sid))
            else:
                out.append(attrs.evolve(m, seq=int(seq)))
        return out

    @hookimpl
    async def threadline_read_messages(
        self, tenant_id: str, session_id: str, query: MessageRange
    ) -> list[Message]:
        """One ``ZRANGE ... BYSCORE LIMIT`` on the session's messages (or its role index)."""
        limit, before_seq = query.limit, query.before_seq
        if limit is not None and limit <= 0:
            return []
        if limit is not None and limit > _NO_LIMIT:
            limit = None  # more than Redis can hold anyway
        found = await self.client.script(
            "read_messages", tenant_id, session_id, query.after_seq,
            "" if before_seq is None else before_seq, "" if limit is None else limit,
            "1" if query.newest_first else "0", query.role or "",
        )  # fmt: skip
        return [
            decode_message(found[i], found[i + 1], tenant_id, session_id)
            for i in range(0, len(found), 2)
        ]

    @hookimpl
    async def threadline_rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        """Swap each message's changeable part in place (one script, all or nothing); with
        ``only_streaming`` the script skips those no longer ``streaming``."""
        if not messages:
            return 0
        args: list[str | int] = [
            tenant_id, len(messages), "1" if activity else "0", "1" if only_streaming else "0",
        ]  # fmt: skip
        for m in messages:
            args += (m.id, message_tail(m))
        found = await self.client.script("rewrite_messages", *args)
        if found[0] == "nf":
            raise NotFoundError(f"message {found[1]} not found for this tenant")
        return int(found[1])

    @hookimpl
    async def threadline_delete_messages(
        self, tenant_id: str, session_id: str, after_seq: int
    ) -> int:
        """Drop the members scored above ``after_seq`` with their role and id index entries;
        the ``seq`` counter stays, so seqs are never given again."""
        return int(await self.client.script("delete_messages", tenant_id, session_id, after_seq))

    # Overrides the default to be faster (W3 p50 0.69 -> 0.42 ms): one page read backwards, its
    # roles read from the members' text, only the window's messages decoded.
    @hookimpl
    async def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        if last_rounds is None or not 0 < last_rounds <= _FAST_ROUNDS:
            return await self._default_window(tenant_id, session_id, last_rounds)
        page = 8 * last_rounds
        raw = await self.client.script(
            "read_messages", tenant_id, session_id, 0, "", page, "1", ""
        )  # newest first: member, seq, member, seq ...
        users, end = 0, len(raw)
        for i in range(0, len(raw), 2):
            if raw[i][_ROLE_AT : _ROLE_AT + 5] == 'user"':
                users += 1
                if users == last_rounds:
                    end = i + 2
                    break
        if users < last_rounds and len(raw) == 2 * page:  # the rounds reach further back
            return await self._default_window(tenant_id, session_id, last_rounds)
        rounds = [
            decode_message(raw[i], raw[i + 1], tenant_id, session_id)
            for i in range(end - 2, -1, -2)
        ]
        if orphaned_tool_results(rounds):  # a tool result's call lies further back
            return await self._default_window(tenant_id, session_id, last_rounds)
        if not rounds or rounds[0].seq == 1 or (end == len(raw) and len(raw) < 2 * page):
            return rounds
        head = await self.threadline_read_messages(
            tenant_id, session_id, MessageRange(before_seq=rounds[0].seq, role="system")
        )
        return head + rounds

    async def _default_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        """The core's default window over this store's ``read_messages``."""
        return list(
            await DEFAULTS["threadline_load_window"].function(
                _Reads(self), tenant_id, session_id, last_rounds
            )
        )

    # Overrides the default (the last message's seq) to be faster: ZCARD, no message read.
    @hookimpl
    async def threadline_count_messages(self, tenant_id: str, session_id: str) -> int:
        if await self.threadline_get_session(tenant_id, session_id) is None:
            return 0
        c = self.client
        return int(await c.command("count_messages", c.redis.zcard(c.key("m", session_id))))

    # -- checkpoint records -----------------------------------------------------------------

    @hookimpl
    async def threadline_insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        c = record.checkpoint
        body = encode_checkpoint(c)
        found = await self.client.script(
            "insert_record", c.tenant_id, c.session_id, c.id, c.parent_id or "",
            "" if parent_tag is None else parent_tag, record.depth, record.tag,
            c.agent_id or "", body, record.record,
        )  # fmt: skip
        status = found[0]
        if status == "nf":
            raise NotFoundError(f"session {c.session_id} not found for this tenant")
        if status == "conflict":
            raise id_conflict("checkpoint", c.id)
        if status == "noparent":
            raise NotFoundError(f"parent checkpoint {c.parent_id} not found")
        if status == "stale":
            raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten")
        if status == "exists":
            return _records(found[1:], c.tenant_id, c.session_id)[0]
        checkpoint = decode_checkpoint(body, found[1].split(" ")[3])
        return attrs.evolve(record, checkpoint=checkpoint)

    @hookimpl
    async def threadline_read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        """The record, and with ``chain`` its ancestors, walked in one script."""
        found = await self.client.script(
            "read_records", tenant_id, checkpoint_id, "1" if chain else "0"
        )
        return _records(found[1:], tenant_id, found[0]) if found else []

    @hookimpl
    async def threadline_list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        if session_id is not None:
            sessions = [session_id]
        else:  # every session of the tenant, in creation order (then id)
            c = self.client
            members = await c.command(
                "list_checkpoints", c.redis.zrange(c.key("t", tenant_id, "c"), 0, -1)
            )
            sessions = [m[18:] for m in members]
        out: list[CheckpointRecord] = []
        for sid in sessions:
            found = await self.client.script(
                "list_records", tenant_id, sid, agent_id or "", "1" if latest else "0"
            )
            out += _records(found, tenant_id, sid)
        return out

    @hookimpl
    async def threadline_rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        plan: RecordRewrite,
    ) -> int:
        """Apply a prune or erase plan in one script, if the session's records are exactly
        those the plan read (ids and tags), else StaleRecordError and nothing changes."""
        args: list[str | int] = [tenant_id, session_id, len(plan.records), len(plan.expected_tags)]
        for r in plan.records:
            args += (r.id, r.depth, r.tag, r.record)
        for checkpoint_id, tag in plan.expected_tags.items():
            args += (checkpoint_id, tag)
        count = int(await self.client.script("rewrite_records", *args, *plan.delete_ids))
        if count == -1:
            raise NotFoundError(f"session {session_id} not found for this tenant")
        if count == -2:
            raise StaleRecordError(f"session {session_id}'s checkpoints changed: plan again")
        return count

    # -- API calls (capability group) -------------------------------------------------------

    @hookimpl
    async def threadline_save_api_call(self, api_call: ApiCall) -> ApiCall:
        body = encode_call(api_call)
        found = await self.client.script(
            "save_call", api_call.tenant_id, api_call.session_id, api_call.id,
            time_key(api_call.created_at), encode_call(api_call),
        )  # fmt: skip
        if found[0] == "nf":
            raise NotFoundError(f"session {api_call.session_id} not found for this tenant")
        if found[0] == "conflict":
            raise id_conflict("api call", api_call.id)
        return decode_call(found[1] if found[0] == "exists" else body)

    @hookimpl
    async def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        found = await self.client.script("list_calls", tenant_id, session_id)
        return [decode_call(text) for text in found if text]

    @hookimpl
    async def threadline_delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        if not api_call_ids:
            return 0
        return int(
            await self.client.script("delete_calls", tenant_id, *dict.fromkeys(api_call_ids))
        )

    # -- agent and provider configs (capability group) --------------------------------------

    @hookimpl
    async def threadline_save_agent_config(self, config: AgentConfig) -> AgentConfig:
        agent, provider = config.agent, config.provider
        if provider is not None:
            agent = attrs.evolve(agent, provider_id=provider.id)
        result = await self.client.script(
            "save_agent", agent.tenant_id, agent.id, agent.code, encode_agent(agent),
            provider.id if provider else "", encode_provider(provider) if provider else "",
        )  # fmt: skip
        if result == "agent":
            raise id_conflict("agent", agent.id)
        if result == "provider":
            raise id_conflict("provider", provider.id if provider else "")
        if result == "code":
            raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
        return AgentConfig(
            agent=decode_agent(encode_agent(agent)),
            provider=decode_provider(encode_provider(provider)) if provider else None,
        )

    async def _configs(self, tenant_id: str, agent_ids: Sequence[str]) -> list[AgentConfig]:
        c = self.client
        if not agent_ids:
            return []
        bodies = await c.command("load_agent_config", c.redis.hmget(c.key("ag"), list(agent_ids)))
        agents = [a for a in map(decode_agent, filter(None, bodies)) if a.tenant_id == tenant_id]
        wanted = [a.provider_id for a in agents if a.provider_id]
        providers: dict[str, ProviderRecord] = {}
        if wanted:
            texts = await c.command("load_agent_config", c.redis.hmget(c.key("pr"), wanted))
            for p in map(decode_provider, filter(None, texts)):
                if p.tenant_id == tenant_id:
                    providers[p.id] = p
        return [AgentConfig(agent=a, provider=providers.get(a.provider_id or "")) for a in agents]

    @hookimpl
    async def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        c = self.client
        if agent_id is None:
            codes = c.key("t", tenant_id, "codes")
            agent_id = await c.command("load_agent_config", c.redis.hget(codes, code or ""))
            if agent_id is None:
                return None
        found = await self._configs(tenant_id, [agent_id])
        return found[0] if found else None

    @hookimpl
    async def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        c = self.client
        codes = await c.command(
            "list_agent_configs", c.redis.hgetall(c.key("t", tenant_id, "codes"))
        )
        found = await self._configs(tenant_id, list(codes.values()))
        return sorted(found, key=lambda config: config.agent.code)

    @hookimpl
    async def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        result = await self.client.script(
            "save_provider", provider.tenant_id, provider.id, encode_provider(provider)
        )
        if result == "provider":
            raise id_conflict("provider", provider.id)
        return decode_provider(encode_provider(provider))

    @hookimpl
    async def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        c = self.client
        ids = await c.command("list_providers", c.redis.smembers(c.key("t", tenant_id, "prov")))
        if not ids:
            return []
        texts = await c.command("list_providers", c.redis.hmget(c.key("pr"), sorted(ids)))
        found = [p for p in map(decode_provider, filter(None, texts)) if p.tenant_id == tenant_id]
        return sorted(found, key=lambda p: (p.name, p.id))


def _fork_parent(session: Session) -> str:
    """The session ``session`` was forked from, as its forks index names it ('' for none:
    only a canonical id is indexed, the only value ``SessionQuery.forked_from`` holds)."""
    parent = fork_parent(session.metadata)
    try:
        return check_id(parent, "forked_from") if isinstance(parent, str) else ""
    except ValidationError:
        return ""
