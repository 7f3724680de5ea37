"""The PostgreSQL store: threadline's store contract on an asyncpg pool.

It implements the required tier, the API-call and config groups and the lifecycle hooks
(the pool: :mod:`threadline_postgres.pool`; checkpoint records:
:mod:`threadline_postgres.checkpoints`; erasure and retention:
:mod:`threadline_postgres.retention`; live replies over ``LISTEN/NOTIFY``:
:mod:`threadline_postgres.live`). The core derives the rest
(:mod:`threadline.storekit.defaults`); the derived hooks kept here each say why. Semantics
are those of the reference store, with what a real server adds:

* **Atomic numbering.** A message's ``seq`` and a checkpoint's ``version`` come from
  counters on the session row, bumped by ``UPDATE ... RETURNING`` in the same
  transaction as the insert. Writers in any number of processes queue on that row, so
  numbers never collide and never skip; an idempotent retry bumps nothing.
* **One round trip per append.** ``save_message`` is a single statement (an implicit
  transaction): committed, and so durable, when it returns.
* **Tenant scoping.** Every statement filters by ``tenant_id``; another tenant's ids
  find nothing and cannot be written to.
* **Typed failures.** A server that is down, restarting or too slow raises
  :class:`~threadline.errors.StoreUnavailableError` within the configured timeouts;
  nothing falls back to memory. A connection found dead is replaced and the operation
  tried once more when repeating it is harmless.
* **Exact round trips.** Text with NUL characters, JSON with large floats, 5 MB
  messages and microsecond UTC timestamps come back equal (see
  :mod:`threadline_postgres.codec`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any

import asyncpg
import attrs

from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.models import AgentConfig, ApiCall, Message, ProviderRecord, Session, trusted
from threadline.queries import MessageRange, SessionQuery
from threadline.storekit.delta import SNAPSHOT_EVERY
from threadline.storekit.records import id_conflict
from threadline.storekit.window import orphaned_tool_results
from threadline_postgres.codec import dump_jsonb, dump_opt_jsonb, encode_opt, encode_text
from threadline_postgres.config import PostgresConfig
from threadline_postgres.forks import Forks, resolve_shared
from threadline_postgres.live import LiveReplies
from threadline_postgres.message_rows import MessageRows
from threadline_postgres.pool import Duplicate
from threadline_postgres.retention import Retention
from threadline_postgres.rows import (
    agent_from_row,
    api_call_from_row,
    check_int_range,
    json_param,
    message_from_row,
    message_params,
    provider_from_row,
    rewrite_columns,
    session_from_row,
    shared_messages,
    update_params,
    with_seq,
)
from threadline_postgres.schema import check_partitions
from threadline_postgres.statistics import PlannerStatistics
from threadline_postgres.usage import UsageReports

__all__ = ["PostgresStore"]

_LAST_SEQ = 2**63 - 1  # above every seq: "no upper bound" for read_messages


def _message_key(constraint: str | None) -> bool:
    """Whether ``constraint`` is the messages' primary key (or, partitioned, a partition's)."""
    return (
        constraint is not None
        and re.fullmatch(r"entity_message(_p\d+)?_pkey", constraint) is not None
    )


class PostgresStore(LiveReplies, Retention, UsageReports, PlannerStatistics, Forks, MessageRows):
    async def _unshare(
        self, what: str, messages: list[Message], conn: asyncpg.Connection | None = None
    ) -> None:
        """Fill the fork's shared rows among ``messages`` (read with the plain columns; the
        caller checked :func:`~threadline_postgres.rows.shared_messages` first, so reads
        that share nothing pay one list scan): one more query, on ``conn`` if given."""
        fetch = conn.fetch if conn is not None else partial(self._fetch, what)
        await resolve_shared(fetch, self.sql.tables["entity_message"], messages)

    """A threadline store on a PostgreSQL database (asyncpg connection pool).

    Open one with :meth:`open` or ``threadline.connect("postgresql://...")``.
    """

    def __init__(self, pool: asyncpg.Pool, config: PostgresConfig) -> None:
        super().__init__(pool, config)
        self.snapshot_every = SNAPSHOT_EVERY
        """Longest chain of history records (see :mod:`threadline.storekit.delta`)."""

    @classmethod
    async def open(cls, config: PostgresConfig) -> PostgresStore:
        """Open the pool (``min_size`` connections) and return the store.

        :raises StoreUnavailableError: the server cannot be reached in time.
        :raises ConfigurationError: credentials refused or no such database.
        """
        return await cls._open(config)

    @hookimpl
    async def threadline_migrate(self) -> list[str]:
        """Apply pending migrations; then, with ``partitions``, check the tables have them."""
        applied = await super().threadline_migrate()
        if self.config.partitions:
            await self._call("migrate", lambda conn: check_partitions(conn, self.config))
        return applied

    @hookimpl
    async def threadline_list_tenants(self) -> list[str]:
        rows = await self._fetch("list_tenants", self.sql.list_tenants)
        return sorted(str(row["tenant_id"]) for row in rows)

    # -- sessions -----------------------------------------------------------------------

    @hookimpl
    async def threadline_create_session(self, session: Session) -> Session:
        """Insert the session; an existing id comes back (same tenant) or conflicts."""
        meta, _ = json_param(session.metadata, "metadata")
        row = await self._fetchrow(
            "create_session", self.sql.create_session, session.id, session.tenant_id,
            session.user_id, session.agent_id, encode_opt(session.title), meta,
            session.created_at, session.updated_at,
        )  # fmt: skip
        if row is None:
            row = await self._fetchrow("create_session", self.sql.session_by_id, session.id)
            if row is None:  # deleted between the two statements: try again
                return await self.threadline_create_session(session)
            if row["tenant_id"] != session.tenant_id:
                raise id_conflict("session", session.id)
        return session_from_row(row)

    @hookimpl
    async def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        """The session, if it belongs to ``tenant_id``."""
        row = await self._fetchrow("get_session", self.sql.get_session, session_id, tenant_id)
        return None if row is None else session_from_row(row)

    @hookimpl
    async def threadline_list_sessions(self, tenant_id: str, query: SessionQuery) -> list[Session]:
        """Newest ``updated_at`` first, from the (tenant, [user,] updated_at, id) indexes; a
        cursor is a row-value bound on the same index (no rows before it are read)."""
        user_id, agent_id, after = query.user_id, query.agent_id, query.after
        args: list[Any] = [tenant_id, query.limit, query.offset, user_id, agent_id]
        if after is not None:
            args += [after.updated_at, after.id]
        forks = query.forked_from is not None
        if forks:
            args.append(query.forked_from)
        statement = self.sql.list_sessions[
            user_id is not None, agent_id is not None, bool(after), forks
        ]
        rows = await self._fetch("list_sessions", statement, *args)
        return [session_from_row(r) for r in rows]

    @hookimpl
    async def threadline_replace_session(self, session: Session) -> Session:
        """Store title, metadata and ``updated_at`` exactly as given."""
        meta, _ = json_param(session.metadata, "metadata")
        row = await self._fetchrow(
            "replace_session", self.sql.replace_session, session.id, session.tenant_id,
            encode_opt(session.title), meta, session.updated_at,
        )  # fmt: skip
        if row is None:
            raise NotFoundError(f"session {session.id} not found for this tenant")
        return session_from_row(row)

    @hookimpl
    async def threadline_delete_session(self, tenant_id: str, session_id: str) -> bool:
        """Delete the session; its messages, API calls and checkpoints go by cascade.

        Not retried on a lost connection: the second try could not tell "deleted" apart.
        """

        async def run(conn: asyncpg.Connection) -> bool:
            status: str = await conn.execute(self.sql.delete_session, session_id, tenant_id)
            return status.endswith(" 1")

        return await self._call("delete_session", run, retry=False)

    # -- messages -----------------------------------------------------------------------

    # Overrides the default (save_messages of one) to be faster: one statement, no unnest.
    @hookimpl
    async def threadline_save_message(self, message: Message) -> Message:
        """Append in one statement; on no row, tell retry, conflict and missing session apart."""
        params, copy = message_params(message)
        sid, tid = message.session_id, message.tenant_id
        try:
            row = await self._fetchrow("save_message", self.sql.append_one, sid, tid, *params)
        except Duplicate as exc:
            if not _message_key(exc.constraint):
                raise
            row = None  # a concurrent save of the same id won: read it below
        if row is not None:
            return with_seq(copy, row["seq"])
        found = await self._fetchrow("save_message", self.sql.session_exists, sid, tid)
        if not found or not found["exists"]:
            raise NotFoundError(f"session {sid} not found for this tenant")
        row = await self._fetchrow("save_message", self.sql.message_by_id, message.id)
        if row is None:  # neither: the racing writer rolled back; append for real
            return await self.threadline_save_message(message)
        stored = message_from_row(row)
        if shared_messages([stored]):
            await self._unshare("save_message", [stored])
        if stored.session_id != sid or stored.tenant_id != tid:
            raise id_conflict("message", message.id)
        return stored

    @hookimpl
    async def threadline_save_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Append a batch in one statement (unnest), consecutive seqs in list order.

        When some ids are stored already (a retried batch) or the session is missing, a
        transaction with the session row locked sorts it out: stored ones come back as
        they are, the others are appended, and nothing is written on a conflict.
        """
        first = messages[0]
        sid, tid = first.session_id, first.tenant_id
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        encoded = [message_params(m) for m in messages]  # refuse bad input before writing
        columns = [list(c) for c in zip(*(p for p, _ in encoded))]
        copies = [c for _, c in encoded]
        sql = self.sql
        try:
            rows = await self._fetch(
                "save_messages", sql.append_many, sid, tid, len(messages), *columns
            )
        except Duplicate as exc:
            if not _message_key(exc.constraint):
                raise
            rows = []
        if rows:
            start = min(r["seq"] for r in rows)
            return [with_seq(c, start + i) for i, c in enumerate(copies)]

        async def slow(conn: asyncpg.Connection) -> list[Message]:
            if await conn.fetchrow(sql.lock_session, sid, tid) is None:
                raise NotFoundError(f"session {sid} not found for this tenant")
            ids = [m.id for m in messages]
            found = [message_from_row(r) for r in await conn.fetch(sql.messages_by_ids, ids)]
            if shared_messages(found):
                await self._unshare("save_messages", found, conn)
            existing = {m.id: m for m in found}
            for m in existing.values():
                if m.session_id != sid or m.tenant_id != tid:
                    raise id_conflict("message", m.id)
            fresh = [i for i, m in enumerate(messages) if m.id not in existing]
            out: list[Message | None] = [existing.get(m.id) for m in messages]
            if fresh:
                cols = [[col[i] for i in fresh] for col in columns]
                inserted = await conn.fetch(sql.append_many, sid, tid, len(fresh), *cols)
                start = min(r["seq"] for r in inserted)
                for k, i in enumerate(fresh):
                    out[i] = with_seq(copies[i], start + k)
            else:
                await conn.execute(sql.touch_session, sid, tid)
            return [m for m in out if m is not None]

        return await self._call("save_messages", slow, transaction=True)

    @hookimpl
    async def threadline_read_messages(
        self, tenant_id: str, session_id: str, query: MessageRange
    ) -> list[Message]:
        """A seq range from the ``(session_id, seq)`` index, either way, of a role or all."""
        role = query.role
        statement = self.sql.read_messages[query.newest_first, role is not None]
        before = _LAST_SEQ if query.before_seq is None else query.before_seq
        args = (session_id, tenant_id, query.after_seq, before, query.limit)
        rows = await self._fetch("read_messages", statement, *args, *([role] if role else []))
        messages = [message_from_row(r) for r in rows]
        if shared_messages(messages):
            await self._unshare("read_messages", messages)
        return messages

    @hookimpl
    async def threadline_rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        """Replace the mutable fields of every message in one statement, all or nothing."""
        wanted = {m.id for m in messages}
        sql = self.sql.rewrite_messages[activity, only_streaming]

        async def run(conn: asyncpg.Connection) -> int:
            rows = await conn.fetch(sql, tenant_id, *rewrite_columns(messages))
            found = rows
            if only_streaming:  # a row finished meanwhile is skipped, not missing
                found = await conn.fetch(self.sql.messages_of_tenant, tenant_id, list(wanted))
            missing = wanted - {r["id"] for r in found}
            if missing or any(m.tenant_id != tenant_id for m in messages):
                raise NotFoundError(f"message {min(missing or wanted)} not found for this tenant")
            return len(rows)

        return await self._call("rewrite_messages", run, transaction=True)

    # Overrides the default (a read, a rewrite, a read) to be faster: a streamed reply's
    # flush is one statement.
    @hookimpl
    async def threadline_update_message(self, message: Message) -> Message:
        """Replace content, tool calls, status, name and metadata; ``seq`` stays."""
        row = await self._fetchrow(
            "update_message", self.sql.update_message, message.id, message.tenant_id,
            *update_params(message),
        )  # fmt: skip
        if row is None:
            raise NotFoundError(f"message {message.id} not found for this tenant")
        updated = message_from_row(row)
        if shared_messages([updated]):  # only if the caller's own metadata says so
            await self._unshare("update_message", [updated])
        return updated

    # Overrides the default (backwards pages, then the system messages) to be faster: one
    # statement on the partial indexes for a window read, the hot path of every turn.
    @hookimpl
    async def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        """The window of :func:`threadline.storekit.window.select_window`, read from indexes.

        One statement finds where the last rounds start (partial index on user turns)
        and returns the system messages before it and everything after it. Only when a
        tool result in it answers a call made earlier does it look further back.
        """
        sql, what = self.sql, "load_window"
        if last_rounds is None:
            return await self.threadline_read_messages(tenant_id, session_id, MessageRange())
        if last_rounds == 0:
            rows = await self._fetch(what, sql.window_systems, session_id, tenant_id)
            systems = [message_from_row(r) for r in rows]
            if shared_messages(systems):
                await self._unshare(what, systems)
            return systems
        rows = await self._fetch(what, sql.window, session_id, tenant_id, last_rounds - 1)
        while rows:
            start: int = rows[0]["start"]
            window = [message_from_row(r) for r in rows]
            if shared_messages(window):  # a fork's rows: before the tool calls are looked at
                await self._unshare(what, window)
            if start <= 1 or not any(m.role == "tool" for m in window):
                return window
            orphans = orphaned_tool_results([m for m in window if (m.seq or 0) >= start])
            if not orphans:
                return window
            # A tool result in the window answers a call made before it: grow back to
            # the round of the earliest such call (rare; served by the call_ids index).
            grown = await self._fetchrow(
                what, sql.window_callers, session_id, tenant_id, start,
                [encode_text(o) for o in orphans],
            )  # fmt: skip
            if grown is None:
                return window
            rows = await self._fetch(what, sql.window_from, session_id, tenant_id, grown["start"])
        return []

    @hookimpl
    async def threadline_delete_messages(
        self, tenant_id: str, session_id: str, after_seq: int
    ) -> int:
        """Delete the session's last messages and count them on the session row, one
        statement (``last_seq`` stays: seqs are never reused)."""
        row = await self._fetchrow(
            "delete_messages", self.sql.delete_messages, session_id, tenant_id, after_seq
        )
        return 0 if row is None else int(row["n"])

    # Overrides the default (which reads the whole session) to be faster: one int on the
    # session row.
    @hookimpl
    async def threadline_count_messages(self, tenant_id: str, session_id: str) -> int:
        """``last_seq - deleted_seqs`` of the session row: seqs are never reused."""
        row = await self._fetchrow("count_messages", self.sql.count_messages, session_id, tenant_id)
        return 0 if row is None else int(row["n"])

    # Overrides the default (which reads the whole session) to be faster: the partial index on
    # streaming rows; every session opened calls it.
    @hookimpl
    async def threadline_interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        """Mark ``streaming`` leftovers ``interrupted`` in one statement."""

        async def run(conn: asyncpg.Connection) -> int:
            status: str = await conn.execute(self.sql.interrupt_streaming, session_id, tenant_id)
            return int(status.rsplit(" ", 1)[-1])

        return await self._call("interrupt_streaming", run)

    # -- API calls ----------------------------------------------------------------------

    @hookimpl
    async def threadline_save_api_call(self, api_call: ApiCall) -> ApiCall:
        """Insert the record if its session is the tenant's; a stored id comes back."""
        c = api_call
        for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
            check_int_range(getattr(c, field), field)
        meta, _ = json_param(c.metadata, "metadata")
        row = await self._fetchrow(
            "save_api_call", self.sql.save_api_call, c.id, c.session_id, c.tenant_id,
            c.user_id, c.agent_id, c.request_message_id, c.response_message_id,
            encode_text(c.model), c.status, encode_opt(c.error_message), encode_opt(c.error_code),
            c.prompt_tokens, c.completion_tokens, c.total_tokens, c.latency_ms,
            c.time_to_first_token_ms, c.tokens_per_second, encode_opt(c.response_id), meta,
            c.created_at,
        )  # fmt: skip
        if row is not None:
            return api_call_from_row(row)
        found = await self._fetchrow(
            "save_api_call", self.sql.session_exists, c.session_id, c.tenant_id
        )
        if not found or not found["exists"]:
            raise NotFoundError(f"session {c.session_id} not found for this tenant")
        row = await self._fetchrow("save_api_call", self.sql.api_call_by_id, c.id)
        if row is None:
            return await self.threadline_save_api_call(api_call)
        stored = api_call_from_row(row)
        if stored.session_id != c.session_id or stored.tenant_id != c.tenant_id:
            raise id_conflict("api call", c.id)
        return stored

    @hookimpl
    async def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        """Oldest first (``created_at``, then id)."""
        rows = await self._fetch("list_api_calls", self.sql.list_api_calls, session_id, tenant_id)
        return [api_call_from_row(r) for r in rows]

    @hookimpl
    async def threadline_delete_api_calls(self, tenant_id: str, api_call_ids: Sequence[str]) -> int:
        """Delete the tenant's records among ``api_call_ids``."""
        rows = await self._fetch(
            "delete_api_calls", self.sql.delete_api_calls, tenant_id, list(api_call_ids)
        )
        return len(rows)

    # -- agent configs ------------------------------------------------------------------

    @hookimpl
    async def threadline_save_agent_config(self, config: AgentConfig) -> AgentConfig:
        """Upsert provider and agent in one transaction, only over rows of the same tenant."""
        agent, provider = config.agent, config.provider
        if provider is not None:
            agent = attrs.evolve(agent, provider_id=provider.id)
        for field in ("max_tokens", "window", "version"):
            check_int_range(getattr(agent, field), field)
        custom, _ = json_param(agent.custom_params, "custom_params")
        response_format = dump_opt_jsonb(agent.response_format, "response_format")
        provider_meta = None
        if provider is not None:
            provider_meta = dump_jsonb(provider.metadata, "provider metadata")

        async def run(conn: asyncpg.Connection) -> AgentConfig:
            stored_provider = None
            if provider is not None:
                stored_provider = await self._upsert_provider(conn, provider, provider_meta)
            a = agent
            row = await conn.fetchrow(
                self.sql.upsert_agent, a.id, a.tenant_id, encode_text(a.code),
                encode_text(a.name), encode_opt(a.system_prompt), encode_opt(a.model),
                a.temperature, a.max_tokens, a.window, response_format, custom, a.provider_id,
                a.enabled, a.version, a.created_at, a.updated_at,
            )  # fmt: skip
            if row is None:
                raise id_conflict("agent", a.id)
            return trusted(AgentConfig, agent=agent_from_row(row), provider=stored_provider)

        try:
            return await self._call("save_agent_config", run, transaction=True)
        except Duplicate as exc:
            if exc.constraint == "entity_agent_tenant_code":
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant") from None
            raise

    async def _upsert_provider(
        self, conn: asyncpg.Connection, p: ProviderRecord, meta: str | None
    ) -> ProviderRecord:
        row = await conn.fetchrow(
            self.sql.upsert_provider, p.id, p.tenant_id, encode_text(p.name), encode_text(p.type),
            encode_opt(p.api_base), encode_opt(p.api_key_ref), p.enabled, meta, p.created_at,
            p.updated_at,
        )  # fmt: skip
        if row is None:
            raise id_conflict("provider", p.id)
        return provider_from_row(row)

    @staticmethod
    def _config_from_row(r: Any) -> AgentConfig:
        provider = None if r["p_id"] is None else provider_from_row(r, "p_")
        return trusted(AgentConfig, agent=agent_from_row(r), provider=provider)

    @hookimpl
    async def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        """Agent and provider in one join; a provider of another tenant is never attached."""
        if agent_id is not None:
            query, key = self.sql.config_by_id, agent_id
        else:
            query, key = self.sql.config_by_code, encode_text(code or "")
        row = await self._fetchrow("load_agent_config", query, tenant_id, key)
        return None if row is None else self._config_from_row(row)

    @hookimpl
    async def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        """Ordered by code as Python orders strings (code points), whatever the collation."""
        rows = await self._fetch("list_agent_configs", self.sql.list_configs, tenant_id)
        return sorted((self._config_from_row(r) for r in rows), key=lambda c: c.agent.code)

    @hookimpl
    async def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        """Upsert a provider, only over a row of the same tenant."""
        meta = dump_jsonb(provider.metadata, "provider metadata")

        async def run(conn: asyncpg.Connection) -> ProviderRecord:
            return await self._upsert_provider(conn, provider, meta)

        return await self._call("save_provider", run, transaction=True)

    @hookimpl
    async def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        """Ordered by name, then id, as Python orders strings (code points)."""
        rows = await self._fetch("list_providers", self.sql.list_providers, tenant_id)
        return sorted((provider_from_row(r) for r in rows), key=lambda p: (p.name, p.id))
