"""The PostgreSQL store: threadline's persistence hooks on an asyncpg pool.

Semantics are those of the reference in-memory store, with what a real server adds:

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
  tried once more when repeating it is harmless, so the pool recovers by itself when
  the server comes back.
* **Exact round trips.** Text with NUL characters, JSON with large floats, 5 MB
  messages and microsecond UTC timestamps come back equal (see
  :mod:`threadline_postgres.codec`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import attrs

from threadline.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ThreadlineError,
    ValidationError,
)
from threadline.hookspecs import hookimpl
from threadline.models import (
    AgentConfig,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    trusted,
)
from threadline.storekit.delta import (
    SNAPSHOT_EVERY,
    EncodedHistory,
    HistoryCache,
    encode_history,
    load_record,
    new_tag,
)
from threadline.storekit.erasure import redact_record
from threadline.storekit.window import orphaned_tool_results
from threadline_postgres import schema
from threadline_postgres.codec import (
    dump_jsonb,
    dump_opt_jsonb,
    encode_opt,
    encode_text,
    load_jsonb,
)
from threadline_postgres.config import PostgresConfig
from threadline_postgres.errors import is_connection_lost, translate
from threadline_postgres.rows import (
    agent_from_row,
    api_call_from_row,
    apply_history,
    chain_history,
    check_int_range,
    checkpoint_from_row,
    checkpoint_params,
    history_param,
    json_param,
    message_from_row,
    message_params,
    provider_from_row,
    session_from_row,
    tool_calls_param,
    with_seq,
)
from threadline_postgres.sql import Statements

__all__ = ["PostgresStore"]

logger = logging.getLogger("threadline_postgres")

T = TypeVar("T")


class _AlreadyStored(ThreadlineError):
    """Internal signal: the checkpoint id is stored; the transaction rolls back."""


class _Duplicate(ConflictError):
    """A unique constraint refused a write; ``constraint`` names it."""

    def __init__(self, message: str, constraint: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint


def _unusable_id(kind: str, record_id: str) -> ConflictError:
    """The one answer to an id another row holds: it never says whose row (or tenant) it is."""
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")


async def _keep_session_state(conn: asyncpg.Connection) -> None:
    """Pool reset hook: the store never changes session state, so nothing to undo.

    asyncpg still rolls back any open transaction before calling this; skipping its
    default ``RESET ALL; UNLISTEN *; ...`` saves a round trip on every release.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Decode ``uuid`` columns straight to ``str`` (the models' id type), in C."""
    await conn.set_builtin_type_codec("uuid", schema="pg_catalog", codec_name="text", format="text")


class PostgresStore:
    """A threadline store on a PostgreSQL database (asyncpg connection pool).

    Open one with :meth:`open` or ``threadline.connect("postgresql://...")``.
    """

    def __init__(self, pool: asyncpg.Pool, config: PostgresConfig) -> None:
        self._pool = pool
        self.config = config
        self.sql = Statements(config)
        self._where = config.display
        self._acquire_timeout = config.acquire_timeout
        self._histories = HistoryCache()
        self.snapshot_every = SNAPSHOT_EVERY
        """Longest chain of history records (see :mod:`threadline.storekit.delta`)."""
        self.closed = False

    def __repr__(self) -> str:
        schema_part = f" schema={self.config.schema}" if self.config.schema else ""
        return f"<PostgresStore {self._where}{schema_part}>"

    @classmethod
    async def open(cls, config: PostgresConfig) -> PostgresStore:
        """Open the pool (``min_size`` connections) and return the store.

        :raises StoreUnavailableError: the server cannot be reached in time.
        :raises ConfigurationError: credentials refused or no such database.
        """
        try:
            pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    min_size=config.min_size,
                    max_size=config.max_size,
                    max_inactive_connection_lifetime=config.max_inactive_connection_lifetime,
                    init=_init_connection,
                    reset=_keep_session_state,
                    **config.connect_kwargs(),
                ),
                timeout=config.connect_timeout + 1,  # connections open concurrently
            )
        except Exception as exc:
            raise translate(
                exc, where=config.display, what="connect", secret=config.password,
                timeout=config.connect_timeout,
            ) from None  # fmt: skip
        logger.debug("opened %s (pool %d..%d)", config.display, config.min_size, config.max_size)
        return cls(pool, config)

    # -- plumbing -----------------------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> ThreadlineError:
        if isinstance(exc, asyncpg.UniqueViolationError):
            constraint = getattr(exc, "constraint_name", None)
            return _Duplicate(f"{what}: the write conflicts with stored data ({constraint})",
                              constraint)  # fmt: skip
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            constraint = getattr(exc, "constraint_name", None)
            return NotFoundError(f"{what}: a referenced row does not exist ({constraint})")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            c = self.config
            return StoreUnavailableError(
                f"PostgreSQL at {self._where} did not answer in time ({what}; "
                f"command_timeout={c.command_timeout:g} s, acquire_timeout={c.acquire_timeout:g} s)"
            )
        return translate(exc, where=self._where, what=what, secret=self.config.password)

    async def _call(
        self,
        what: str,
        fn: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        transaction: bool = False,
        retry: bool = True,
    ) -> T:
        """Run ``fn`` on a pooled connection (in a transaction if asked), typing errors.

        A connection found dead (the server restarted since it was pooled) is dropped
        and, when ``retry`` says repeating the operation is harmless, ``fn`` runs once
        more on a fresh one.
        """
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except ThreadlineError:
                raise
            except Exception as exc:
                if attempt + 1 < attempts and is_connection_lost(exc):
                    logger.info("%s: connection lost (%s); retrying once", what,
                                type(exc).__name__)  # fmt: skip
                    continue
                raise self._error(exc, what) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetchrow(self, what: str, sql: str, *args: Any) -> Any:
        """``fetchrow`` with error typing and one retry on a dead connection."""
        for attempt in (0, 1):
            try:
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    return await conn.fetchrow(sql, *args)
            except Exception as exc:
                if attempt == 0 and is_connection_lost(exc):
                    continue
                raise self._error(exc, what) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[Any]:
        """``fetch`` with error typing and one retry on a dead connection."""
        for attempt in (0, 1):
            try:
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    rows: list[Any] = await conn.fetch(sql, *args)
                    return rows
            except Exception as exc:
                if attempt == 0 and is_connection_lost(exc):
                    continue
                raise self._error(exc, what) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- lifecycle ----------------------------------------------------------------------

    @hookimpl
    async def threadline_migrate(self) -> list[str]:
        """Apply pending migrations (a no-op, without locking, when the schema is current)."""
        ledger = self.config.table(schema.MIGRATIONS_TABLE)
        wanted = {m.name for m in schema.MIGRATIONS}

        async def run(conn: asyncpg.Connection) -> list[str]:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", ledger)
            if exists:
                done = {r[0] for r in await conn.fetch(f"SELECT name FROM {ledger}")}
                if wanted <= done:
                    return []
            applied = await schema.migrate(conn, self.config)
            if applied:
                logger.info("%s: applied migrations %s", self._where, ", ".join(applied))
            return applied

        return await self._call("migrate", run)

    @hookimpl
    async def threadline_close(self) -> None:
        """Close the pool, waiting up to ``command_timeout`` for borrowed connections."""
        if self.closed:
            return
        self.closed = True
        try:
            await asyncio.wait_for(self._pool.close(), timeout=self.config.command_timeout)
        except Exception:  # timed out or failed: drop the connections without waiting
            self._pool.terminate()

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
            if row[1] != session.tenant_id:
                raise _unusable_id("session", session.id)
        return session_from_row(row)

    @hookimpl
    async def threadline_get_session(self, tenant_id: str, session_id: str) -> Session | None:
        """The session, if it belongs to ``tenant_id``."""
        row = await self._fetchrow("get_session", self.sql.get_session, session_id, tenant_id)
        return None if row is None else session_from_row(row)

    @hookimpl
    async def threadline_list_sessions(
        self, tenant_id: str, user_id: str | None, agent_id: str | None, limit: int, offset: int
    ) -> list[Session]:
        """Newest ``updated_at`` first, from the (tenant, user, updated_at) indexes."""
        sql = self.sql
        args: list[Any] = [tenant_id, limit, offset]
        if user_id is not None and agent_id is not None:
            query, args = sql.list_sessions_user_agent, [*args, user_id, agent_id]
        elif user_id is not None:
            query, args = sql.list_sessions_user, [*args, user_id]
        elif agent_id is not None:
            query, args = sql.list_sessions_agent, [*args, agent_id]
        else:
            query = sql.list_sessions
        return [session_from_row(r) for r in await self._fetch("list_sessions", query, *args)]

    @hookimpl
    async def threadline_update_session(self, session: Session) -> Session:
        """Replace title and metadata; ``updated_at`` moves forward, never back."""
        meta, _ = json_param(session.metadata, "metadata")
        row = await self._fetchrow(
            "update_session", self.sql.update_session, session.id, session.tenant_id,
            encode_opt(session.title), meta,
        )  # fmt: skip
        if row is None:
            raise NotFoundError(f"session {session.id} not found for this tenant")
        return session_from_row(row)

    @hookimpl
    async def threadline_set_session_updated_at(
        self, tenant_id: str, session_id: str, updated_at: datetime
    ) -> Session:
        """Set ``updated_at`` exactly, earlier or later; appends move it forward again after."""
        row = await self._fetchrow(
            "set_session_updated_at", self.sql.set_session_updated_at, session_id, tenant_id,
            updated_at,
        )  # fmt: skip
        if row is None:
            raise NotFoundError(f"session {session_id} not found for this tenant")
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

    @hookimpl
    async def threadline_save_message(self, message: Message) -> Message:
        """Append in one statement; on no row, tell retry, conflict and missing session apart."""
        params, copy = message_params(message)
        sid, tid = message.session_id, message.tenant_id
        try:
            row = await self._fetchrow("save_message", self.sql.append_one, sid, tid, *params)
        except _Duplicate as exc:
            if exc.constraint != "entity_message_pkey":
                raise
            row = None  # a concurrent save of the same id won: read it below
        if row is not None:
            return with_seq(copy, row[0])
        return await self._existing_message(message)

    async def _existing_message(self, message: Message) -> Message:
        """Why an append wrote nothing: missing session, idempotent retry, or conflict."""
        sid, tid = message.session_id, message.tenant_id
        found = await self._fetchrow("save_message", self.sql.session_exists, sid, tid)
        if not found or not found[0]:
            raise NotFoundError(f"session {sid} not found for this tenant")
        row = await self._fetchrow("save_message", self.sql.message_by_id, message.id)
        if row is None:  # neither: the racing writer rolled back; append for real
            return await self.threadline_save_message(message)
        stored = message_from_row(row)
        if stored.session_id != sid or stored.tenant_id != tid:
            raise _unusable_id("message", message.id)
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

        try:
            rows = await self._fetch(
                "save_messages", self.sql.append_many, sid, tid, len(messages),
                *self._batch_columns(columns),
            )  # fmt: skip
        except _Duplicate as exc:
            if exc.constraint != "entity_message_pkey":
                raise
            rows = []
        if rows:
            start = min(r[0] for r in rows)
            return [with_seq(c, start + i) for i, c in enumerate(copies)]

        async def slow(conn: asyncpg.Connection) -> list[Message]:
            if await conn.fetchrow(self.sql.lock_session, sid, tid) is None:
                raise NotFoundError(f"session {sid} not found for this tenant")
            ids = [m.id for m in messages]
            existing = {
                r[0]: message_from_row(r) for r in await conn.fetch(self.sql.messages_by_ids, ids)
            }
            for m in existing.values():
                if m.session_id != sid or m.tenant_id != tid:
                    raise _unusable_id("message", m.id)
            fresh = [i for i, m in enumerate(messages) if m.id not in existing]
            out: list[Message | None] = [existing.get(m.id) for m in messages]
            if fresh:
                cols = [[col[i] for i in fresh] for col in columns]
                inserted = await conn.fetch(
                    self.sql.append_many, sid, tid, len(fresh), *self._batch_columns(cols)
                )
                start = min(r[0] for r in inserted)
                for k, i in enumerate(fresh):
                    out[i] = with_seq(copies[i], start + k)
            else:
                await conn.execute(self.sql.touch_session, sid, tid)
            return [m for m in out if m is not None]

        return await self._call("save_messages", slow, transaction=True)

    @staticmethod
    def _batch_columns(columns: list[list[Any]]) -> list[list[Any]]:
        """The per-column arrays for ``append_many`` (it derives call ids in SQL)."""
        # message_params order: id, role, content, user_id, agent_id, tool_calls, call_ids,
        # tool_call_id, name, status, metadata, created_at
        return [columns[i] for i in (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11)]

    @hookimpl
    async def threadline_update_message(self, message: Message) -> Message:
        """Replace content, tool calls, status, name and metadata; ``seq`` stays."""
        calls_text, call_ids, _ = tool_calls_param(message.tool_calls)
        meta, _ = json_param(message.metadata, "metadata")
        row = await self._fetchrow(
            "update_message", self.sql.update_message, message.id, message.tenant_id,
            encode_text(message.content), calls_text, call_ids, message.status,
            encode_opt(message.name), meta,
        )  # fmt: skip
        if row is None:
            raise NotFoundError(f"message {message.id} not found for this tenant")
        return message_from_row(row)

    @hookimpl
    async def threadline_get_messages(
        self, tenant_id: str, session_id: str, after_seq: int, limit: int | None
    ) -> list[Message]:
        """In ``seq`` order from the ``(session_id, seq)`` index."""
        rows = await self._fetch(
            "get_messages", self.sql.get_messages, session_id, tenant_id, after_seq, limit
        )
        return [message_from_row(r) for r in rows]

    @hookimpl
    async def threadline_load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        """The window of :func:`threadline.storekit.window.select_window`, read from indexes.

        One statement finds where the last rounds start (partial index on user turns)
        and returns the system messages before it and everything after it. Only when a
        tool result in it answers a call made earlier does it look further back.
        """
        if last_rounds is None:
            return await self.threadline_get_messages(tenant_id, session_id, 0, None)
        if last_rounds == 0:
            rows = await self._fetch("load_window", self.sql.window_systems, session_id, tenant_id)
            return [message_from_row(r) for r in rows]
        rows = await self._fetch(
            "load_window", self.sql.window, session_id, tenant_id, last_rounds - 1
        )
        while rows:
            start: int = rows[0][14]
            window = [message_from_row(r) for r in rows]
            if start <= 1 or not any(m.role == "tool" for m in window):
                return window
            orphans = orphaned_tool_results([m for m in window if m.seq >= start])  # type: ignore[operator]
            if not orphans:
                return window
            # A tool result in the window answers a call made before it: grow back to
            # the round of the earliest such call (rare; served by the call_ids index).
            grown = await self._fetchrow(
                "load_window", self.sql.window_callers, session_id, tenant_id, start,
                [encode_text(o) for o in orphans],
            )  # fmt: skip
            if grown is None:
                return window
            rows = await self._fetch(
                "load_window", self.sql.window_from, session_id, tenant_id, grown[0]
            )
        return []

    @hookimpl
    async def threadline_count_messages(self, tenant_id: str, session_id: str) -> int:
        """The session's ``last_seq``: seqs are gapless and messages are never removed alone."""
        row = await self._fetchrow("count_messages", self.sql.count_messages, session_id, tenant_id)
        return 0 if row is None else int(row[0])

    @hookimpl
    async def threadline_interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        """Mark ``streaming`` leftovers ``interrupted`` (partial index on streaming rows)."""

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
        if not found or not found[0]:
            raise NotFoundError(f"session {c.session_id} not found for this tenant")
        row = await self._fetchrow("save_api_call", self.sql.api_call_by_id, c.id)
        if row is None:
            return await self.threadline_save_api_call(api_call)
        stored = api_call_from_row(row)
        if stored.session_id != c.session_id or stored.tenant_id != c.tenant_id:
            raise _unusable_id("api call", c.id)
        return stored

    @hookimpl
    async def threadline_list_api_calls(self, tenant_id: str, session_id: str) -> list[ApiCall]:
        """Oldest first (``created_at``, then id)."""
        rows = await self._fetch("list_api_calls", self.sql.list_api_calls, session_id, tenant_id)
        return [api_call_from_row(r) for r in rows]

    # -- checkpoints --------------------------------------------------------------------

    @hookimpl
    async def threadline_create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Bump the session's version counter and insert, in one transaction.

        The history is stored as a record of :mod:`threadline.storekit.delta`: a delta
        on the parent (found against the parent's history from the cache when the parent
        row's write tag confirms it, else rebuilt from its chain in the transaction) or a
        snapshot. A stored id is an idempotent retry when everything but the version
        matches, else a conflict.
        """
        cp = checkpoint
        encoded_columns = checkpoint_params(cp)  # refuse bad input before writing
        t, sid = cp.tenant_id, cp.session_id
        every = self.snapshot_every
        cached = self._histories.get(cp.parent_id)
        ready: EncodedHistory | None = None
        if cp.parent_id is None:
            ready = encode_history(cp.history, tenant_id=t, session_id=sid)
        elif cached is not None:
            ready = encode_history(
                cp.history, tenant_id=t, session_id=sid, parent=cached.history,
                parent_depth=cached.depth, snapshot_every=every,
            )  # fmt: skip
        tag = new_tag()
        sql = self.sql

        async def run(conn: asyncpg.Connection) -> tuple[int, int]:
            version = await conn.fetchval(sql.bump_version, sid, t)
            if version is None:
                raise NotFoundError(f"session {sid} not found for this tenant")
            if await conn.fetchrow(sql.checkpoint_owner, cp.id) is not None:
                raise _AlreadyStored  # rolls the version bump back
            encoded = ready
            if cp.parent_id is not None:
                link = await conn.fetchrow(sql.checkpoint_link, cp.parent_id)
                if link is None or link[0] != sid:
                    raise NotFoundError(
                        f"parent checkpoint {cp.parent_id} not found in this session"
                    )
                if encoded is None or cached is None or cached.tag != link[2]:
                    rows = await conn.fetch(sql.checkpoint_chain, cp.parent_id)
                    parent = chain_history(rows)
                    self._histories.put(cp.parent_id, link[2], link[1], parent)
                    encoded = encode_history(
                        cp.history, tenant_id=t, session_id=sid, parent=parent,
                        parent_depth=link[1], snapshot_every=every,
                    )  # fmt: skip
            assert encoded is not None
            await conn.execute(
                sql.insert_checkpoint, cp.id, sid, t, cp.agent_id, version, cp.parent_id,
                encoded_columns["node_id"], encoded_columns["input"],
                encoded_columns["input_type"], encoded_columns["state"],
                encoded_columns["properties"], cp.tombstone, cp.created_at,
                None if encoded.is_snapshot else cp.parent_id, history_param(encoded),
                encoded.depth, tag,
            )  # fmt: skip
            return int(version), encoded.depth

        try:
            version, depth = await self._call("create_checkpoint", run, transaction=True)
        except _AlreadyStored:
            existing = await self._checkpoint_any_tenant(cp.id)
            if existing is None:  # deleted meanwhile: store it afresh
                return await self.threadline_create_checkpoint(checkpoint)
            if attrs.evolve(existing, version=None) != attrs.evolve(cp, version=None):
                raise _unusable_id("checkpoint", cp.id) from None
            return existing
        except _Duplicate as exc:
            raise _unusable_id("checkpoint", cp.id) from exc
        self._histories.put(cp.id, tag, depth, cp.history)
        copies = encoded_columns["copies"]
        return attrs.evolve(cp, version=version, **copies)

    async def _checkpoint_any_tenant(self, checkpoint_id: str) -> Checkpoint | None:
        owner = await self._fetchrow("create_checkpoint", self.sql.checkpoint_owner,
                                     checkpoint_id)  # fmt: skip
        if owner is None:
            return None
        return await self.threadline_get_checkpoint(owner[1], checkpoint_id)

    def _rebuild(self, rows: Sequence[Any]) -> Checkpoint | None:
        """A checkpoint from its chain rows (itself first, then its bases, nearest first)."""
        if not rows:
            return None
        history = chain_history(rows)
        head = rows[0]
        self._histories.put(head[0], head[16], head[15], history)
        return checkpoint_from_row(head, history)

    @hookimpl
    async def threadline_get_checkpoint(
        self, tenant_id: str, checkpoint_id: str
    ) -> Checkpoint | None:
        """The checkpoint and its chain of history deltas, in one recursive query."""
        rows = await self._fetch(
            "get_checkpoint", self.sql.get_checkpoint, checkpoint_id, tenant_id
        )
        return self._rebuild(rows)

    @hookimpl
    async def threadline_list_checkpoints(
        self, tenant_id: str, session_id: str | None, agent_id: str | None
    ) -> list[Checkpoint]:
        """By version (tenant-wide: sessions in creation order); histories rebuilt once each."""
        if session_id is not None:
            rows = await self._fetch(
                "list_checkpoints", self.sql.list_session_checkpoints, session_id, tenant_id,
                agent_id,
            )  # fmt: skip
        else:
            rows = await self._fetch(
                "list_checkpoints", self.sql.list_tenant_checkpoints, tenant_id, agent_id
            )
        if not rows:
            return []
        histories = await self._histories_of(
            {r[0]: (r[13], r[14], r[2], r[1]) for r in rows},
            lambda ids: self._fetch("list_checkpoints", self.sql.checkpoint_deltas, ids),
        )
        out = []
        for r in rows:
            history = histories[r[0]]
            self._histories.put(r[0], r[16], r[15], history)
            out.append(checkpoint_from_row(r, history))
        return out

    @staticmethod
    async def _histories_of(
        links: dict[str, tuple[str | None, str, str, str]],
        fetch_bases: Callable[[list[str]], Awaitable[Sequence[Any]]],
    ) -> dict[str, tuple[Message, ...]]:
        """The logical history of every checkpoint in ``links``, each record decoded once.

        :param links: id -> (base id, ``history_delta`` text, tenant, session); bases not
            in it are added from ``fetch_bases`` (rows of ``checkpoint_deltas``).
        """
        missing = {link[0] for link in links.values() if link[0] is not None} - set(links)
        while missing:
            fetched = await fetch_bases(list(missing))
            if not fetched:
                break
            for r in fetched:
                links[r[0]] = (r[1], r[2], r[3], r[4])
            missing = {link[0] for link in links.values() if link[0] is not None} - set(links)
        histories: dict[str, tuple[Message, ...]] = {}
        for checkpoint_id in links:
            chain: list[str] = []
            current: str | None = checkpoint_id
            while current is not None and current not in histories:
                if current not in links:
                    raise StoreError(f"checkpoint {current} is missing; the store is damaged")
                chain.append(current)
                current = links[current][0]
            built = histories[current] if current is not None else ()
            for cid in reversed(chain):
                _, delta, tenant_id, session_id = links[cid]
                history = list(built)
                apply_history(history, delta, tenant_id, session_id)
                built = histories[cid] = tuple(history)
        return histories

    @hookimpl
    async def threadline_get_latest_checkpoint(
        self, tenant_id: str, session_id: str, agent_id: str | None
    ) -> Checkpoint | None:
        """The highest version in the session (tombstones included), with its history."""
        rows = await self._fetch(
            "get_latest_checkpoint", self.sql.latest_checkpoint, session_id, tenant_id, agent_id
        )
        return self._rebuild(rows)

    # -- retention --------------------------------------------------------------------

    @hookimpl
    async def threadline_erase_user(
        self, tenant_id: str, user_id: str, dry_run: bool
    ) -> dict[str, int]:
        """Delete the user's sessions (rows cascade), redact them in others; one transaction.

        Their messages in other users' sessions are redacted in place and their API calls
        there deleted; checkpoint records of those sessions holding their messages are
        rewritten with :func:`threadline.storekit.erasure.redact_record`, each with a new write tag.
        """
        t = self.sql.tables
        S, C = t["entity_session"], t["entity_checkpoint"]

        async def run(conn: asyncpg.Connection) -> dict[str, int]:
            # The user's sessions, and the other sessions of the tenant whose checkpoint
            # histories may hold the user's messages, locked in one statement (in id
            # order) so checkpoint writes to them wait for the rewrite. A history item
            # leaves out its user_id only when the message before it in the same history
            # has the same one, and that message's record is in the same session: so
            # every such session has a record whose text holds the user id.
            locked = await conn.fetch(
                f"SELECT id, user_id IS NOT DISTINCT FROM $2::uuid FROM {S} "
                f"WHERE tenant_id = $1::uuid AND id IN (SELECT id FROM {S} "
                "WHERE tenant_id = $1::uuid AND user_id = $2::uuid "
                f"UNION ALL SELECT session_id FROM {C} WHERE tenant_id = $1::uuid "
                "AND strpos(history_delta::text, $2::uuid::text) > 0) ORDER BY id FOR UPDATE",
                tenant_id,
                user_id,
            )
            ids = [r[0] for r in locked if r[1]]
            counts = {"sessions": len(ids)}
            for kind, table in (("messages", "entity_message"), ("api_calls", "entity_api_call"),
                                ("checkpoints", "entity_checkpoint")):  # fmt: skip
                counts[kind] = await conn.fetchval(
                    f"SELECT count(*) FROM {t[table]} WHERE session_id = ANY($1::uuid[])", ids
                )
            rewrites: list[tuple[str, str | None, int]] = []
            counts["checkpoints_redacted"] = 0
            for sid in (r[0] for r in locked if not r[1]):
                found, records = await self._redact_checkpoints(
                    conn, tenant_id, sid, user_id, rewrite=not dry_run
                )
                counts["checkpoints_redacted"] += found
                rewrites += records
            # The user's rows in other users' sessions of the tenant: messages redacted in
            # place (seq, role, status kept: storekit.erasure.redact), API calls deleted.
            elsewhere = self.sql.user_rows_elsewhere
            if dry_run:
                counts["messages_redacted"] = await conn.fetchval(
                    f"SELECT count(*) FROM {t['entity_message']} WHERE {elsewhere}",
                    tenant_id,
                    user_id,
                )
                counts["api_calls"] += await conn.fetchval(
                    f"SELECT count(*) FROM {t['entity_api_call']} WHERE {elsewhere}",
                    tenant_id,
                    user_id,
                )
                return counts
            if ids:
                await conn.execute(f"DELETE FROM {S} WHERE id = ANY($1::uuid[])", ids)
            counts["messages_redacted"] = await conn.fetchval(
                f"WITH done AS (UPDATE {t['entity_message']} SET content = '', tool_calls = NULL, "
                "call_ids = NULL, name = NULL, metadata = '{}'::jsonb, user_id = NULL "
                f"WHERE {elsewhere} RETURNING 1) SELECT count(*) FROM done",
                tenant_id,
                user_id,
            )
            counts["api_calls"] += await conn.fetchval(
                f"WITH gone AS (DELETE FROM {t['entity_api_call']} WHERE {elsewhere} RETURNING 1) "
                "SELECT count(*) FROM gone",
                tenant_id,
                user_id,
            )
            if rewrites:
                # A new write tag for every checkpoint whose history changed, its record
                # rewritten or not (a delta on a rewritten record): HistoryCache entries,
                # here and in other processes, miss instead of serving the old history.
                await conn.executemany(
                    f"UPDATE {C} SET history_delta = coalesce($2::jsonb, history_delta), "
                    "history_tag = $3::bigint WHERE id = $1::uuid",
                    rewrites,
                )
            return counts

        return await self._call("erase_user", run, transaction=True, retry=dry_run)

    async def _redact_checkpoints(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        session_id: str,
        user_id: str,
        *,
        rewrite: bool,
    ) -> tuple[int, list[tuple[str, str | None, int]]]:
        """How many of the session's checkpoints hold ``user_id``'s messages, and the rewrites.

        Each rewrite (only with ``rewrite``) is ``(id, history_delta, history_tag)`` for a
        checkpoint whose history holds the user's messages: ``history_delta`` is the new
        record when its own messages hold them (the same kind, ``keep``, base and depth, so
        every record on it stays valid), else ``None`` (the record stays, the tag changes).
        """
        rows = await conn.fetch(
            f"SELECT id, history_base, history_delta, chain_depth FROM "
            f"{self.sql.tables['entity_checkpoint']} WHERE session_id = $1::uuid ORDER BY version",
            session_id,
        )
        histories = await self._histories_of(
            {r[0]: (r[1], r[2], tenant_id, session_id) for r in rows},
            lambda ids: conn.fetch(self.sql.checkpoint_deltas, ids),
        )
        found = 0
        rewrites = []
        for r in rows:
            history = histories[r[0]]
            if not any(m.user_id == user_id for m in history):
                continue
            found += 1
            if not rewrite:
                continue
            record = load_jsonb(r[2])
            if isinstance(record, list):  # before 0002: the messages after the base's history
                keep = None if r[1] is None else len(histories[r[1]])
            else:
                keep, _ = load_record(record)
            encoded = redact_record(
                history, keep, user_id, tenant_id=tenant_id, session_id=session_id, depth=r[3]
            )
            delta = None if encoded is None else history_param(encoded)
            rewrites.append((r[0], delta, new_tag()))  # a new tag even if the record stays
        return found, rewrites

    @hookimpl
    async def threadline_delete_sessions_before(
        self, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
    ) -> int:
        """Sessions of the tenant (and user) with ``updated_at`` before ``before``."""
        where = (
            "WHERE tenant_id = $1::uuid AND updated_at < $2::timestamptz "
            "AND ($3::uuid IS NULL OR user_id = $3::uuid)"
        )
        table = self.sql.tables["entity_session"]
        query = (
            f"SELECT count(*) FROM {table} {where}"
            if dry_run
            else f"WITH gone AS (DELETE FROM {table} {where} RETURNING 1) SELECT count(*) FROM gone"
        )

        async def run(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(query, tenant_id, before, user_id))

        return await self._call("delete_sessions_before", run, retry=dry_run)

    @hookimpl
    async def threadline_prune_checkpoints(
        self, tenant_id: str, session_id: str, keep: int, dry_run: bool
    ) -> int:
        """Delete all but the newest ``keep`` versions, in one transaction.

        A kept checkpoint stored as a delta on one that goes is first rewritten as a
        snapshot of its (rebuilt) history, so it reads back exactly as before; its
        ``parent_id`` stays as recorded.
        """
        table = self.sql.tables["entity_checkpoint"]

        async def run(conn: asyncpg.Connection) -> int:
            session = self.sql.tables["entity_session"]
            locked = await conn.fetchval(
                f"SELECT 1 FROM {session} WHERE id = $1::uuid AND tenant_id = $2::uuid FOR UPDATE",
                session_id,
                tenant_id,
            )
            if locked is None:
                return 0
            rows = await conn.fetch(
                f"SELECT id, history_base FROM {table} "
                "WHERE session_id = $1::uuid AND tenant_id = $2::uuid ORDER BY version",
                session_id,
                tenant_id,
            )
            doomed = [r[0] for r in rows[: max(len(rows) - keep, 0)]]
            if dry_run or not doomed:
                return len(doomed)
            gone = set(doomed)
            for r in rows[len(doomed) :]:
                if r[1] is not None and r[1] in gone:
                    history = chain_history(await conn.fetch(self.sql.checkpoint_chain, r[0]))
                    encoded = encode_history(history, tenant_id=tenant_id, session_id=session_id)
                    await conn.execute(
                        f"UPDATE {table} SET history_base = NULL, history_delta = $2::jsonb, "
                        "chain_depth = 0, history_tag = $3::bigint WHERE id = $1::uuid",
                        r[0],
                        history_param(encoded),
                        new_tag(),
                    )
            await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::uuid[])", doomed)
            return len(doomed)

        return await self._call("prune_checkpoints", run, transaction=True, retry=dry_run)

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
        sql = self.sql

        async def run(conn: asyncpg.Connection) -> AgentConfig:
            stored_provider = None
            if provider is not None:
                p = provider
                row = await conn.fetchrow(
                    sql.upsert_provider, p.id, p.tenant_id, encode_text(p.name),
                    encode_text(p.type), encode_opt(p.api_base), encode_opt(p.api_key_ref),
                    p.enabled, provider_meta, p.created_at, p.updated_at,
                )  # fmt: skip
                if row is None:
                    raise _unusable_id("provider", p.id)
                stored_provider = provider_from_row(row)
            a = agent
            row = await conn.fetchrow(
                sql.upsert_agent, a.id, a.tenant_id, encode_text(a.code), encode_text(a.name),
                encode_opt(a.system_prompt), encode_opt(a.model), a.temperature, a.max_tokens,
                a.window, response_format, custom, a.provider_id, a.enabled, a.version,
                a.created_at, a.updated_at,
            )  # fmt: skip
            if row is None:
                raise _unusable_id("agent", a.id)
            return trusted(AgentConfig, agent=agent_from_row(row), provider=stored_provider)

        try:
            return await self._call("save_agent_config", run, transaction=True)
        except _Duplicate as exc:
            if exc.constraint == "entity_agent_tenant_code":
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant") from None
            raise

    @staticmethod
    def _config_from_row(r: Any) -> AgentConfig:
        provider = None if r[16] is None else provider_from_row(r, 16)
        return trusted(AgentConfig, agent=agent_from_row(r), provider=provider)

    @hookimpl
    async def threadline_load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        """Agent and provider in one join; a provider of another tenant is never attached."""
        if agent_id is not None:
            row = await self._fetchrow(
                "load_agent_config", self.sql.config_by_id, tenant_id, agent_id
            )
        else:
            row = await self._fetchrow(
                "load_agent_config", self.sql.config_by_code, tenant_id, encode_text(code or "")
            )
        return None if row is None else self._config_from_row(row)

    @hookimpl
    async def threadline_list_tenants(self) -> list[str]:
        rows = await self._fetch("list_tenants", self.sql.list_tenants)
        return sorted(str(row[0]) for row in rows)

    @hookimpl
    async def threadline_save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        """Upsert a provider, only over a row of the same tenant."""
        p = provider
        meta = dump_jsonb(p.metadata, "provider metadata")
        sql = self.sql

        async def run(conn: asyncpg.Connection) -> ProviderRecord:
            row = await conn.fetchrow(
                sql.upsert_provider, p.id, p.tenant_id, encode_text(p.name),
                encode_text(p.type), encode_opt(p.api_base), encode_opt(p.api_key_ref),
                p.enabled, meta, p.created_at, p.updated_at,
            )  # fmt: skip
            if row is None:
                raise _unusable_id("provider", p.id)
            return provider_from_row(row)

        return await self._call("save_provider", run, transaction=True)

    @hookimpl
    async def threadline_list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        """Ordered by name, then id, as Python orders strings (code points)."""
        rows = await self._fetch("list_providers", self.sql.list_providers, tenant_id)
        providers = [provider_from_row(r) for r in rows]
        providers.sort(key=lambda p: (p.name, p.id))
        return providers

    @hookimpl
    async def threadline_list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        """Ordered by code as Python orders strings (code points), whatever the collation."""
        rows = await self._fetch("list_agent_configs", self.sql.list_configs, tenant_id)
        configs = [self._config_from_row(r) for r in rows]
        configs.sort(key=lambda c: c.agent.code)  # code point order, as Python sorts
        return configs
