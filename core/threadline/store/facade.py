"""The :class:`Store` facade: one typed API over a stack of store plugins.

A Store owns its own plugin manager, so only the stores a user configured receive
traffic; :meth:`Store.add` stacks more (an audit sink, agent configs from files). Calls
go through :mod:`threadline.plugins.dispatch`; arguments are checked here, once, for
every store. Opening a store by URL is :mod:`threadline.store.opening`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from threadline.errors import ConfigurationError, ValidationError
from threadline.hookspecs import DERIVED_HOOKS
from threadline.ids import IdLike, check_id, optional_id
from threadline.models import (
    MAX_INT,
    AgentConfig,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    check_text,
    check_utc,
)
from threadline.plugins import dispatch, new_plugin_manager
from threadline.queries import MessageRange, SessionCursor, SessionQuery
from threadline.store.follow import (
    POLL_INTERVAL,
    STALL_TIMEOUT,
    ReplyUpdate,
    follow_reply,
    publish,
)
from threadline.storekit.live import SUBSCRIPTION_QUEUE, ReplyPiece, ReplySubscription
from threadline.storekit.message_rows import check_fields
from threadline.storekit.window import check_rounds
from threadline.urls import StoreURL

if TYPE_CHECKING:
    from threadline.usage import UsageReport

__all__ = ["ERASE_KINDS", "Store", "check_flag"]


class Store:
    """The persistence API used by agents, contexts and the CLI.

    Every method is scoped by ``tenant_id``: another tenant's ids find nothing. Counts
    (``limit``, ``offset``, ``after_seq``, ``last_rounds``, ``keep``) are ints from 0 (1 for
    ``keep``) to 2**63-1 on every store; anything else raises :class:`ValidationError`.
    """

    def __init__(self, *plugins: object, url: StoreURL | None = None) -> None:
        self.url = url
        self.pm: pluggy.PluginManager = new_plugin_manager()
        self._closed = False
        self._stack: list[object] = []
        self._impls: dict[str, list[pluggy.HookImpl]] = {}
        self._calls: dict[str, list[dispatch.Call]] = {}
        self._bindings: list[dispatch.Binding] = []
        for plugin in plugins:
            self.add(plugin)

    def __repr__(self) -> str:
        where = self.url.redacted() if self.url is not None else "custom"
        return f"<Store {where} plugins={[type(p).__name__ for p in self.plugins]}>"

    @property
    def plugins(self) -> list[object]:
        """The stacked store objects, in call order (the last added first)."""
        return list(self._stack)

    def add(self, plugin: object, name: str | None = None) -> Store:
        """Stack another store plugin; it is called before the ones already added."""
        self.pm.register(plugin, name=name)
        self._stack.insert(0, plugin)
        self._impls.clear()
        self._calls.clear()
        self._bindings = [dispatch.Binding(self.pm, p) for p in self._stack]
        return self

    def implements(self, hook: str) -> bool:
        """True when every stacked store takes part in ``hook`` (its own implementation, or
        a core default it has the hooks for): how an adapter asks for an optional shortcut
        (``threadline.hookspecs.SHORTCUT_HOOKS``) before it takes it."""
        return bool(self._bindings) and all(b.has(hook) for b in self._bindings)

    @property
    def primary(self) -> object:
        """The first plugin in call order (the last one added)."""
        return self.plugins[0]

    def _implementations(self, hook: str) -> list[pluggy.HookImpl]:
        impls = self._impls.get(hook)
        if impls is None:
            impls = self._impls[hook] = dispatch.implementations(self.pm, hook)
        return impls

    def _participants(self, hook: str) -> list[dispatch.Call]:
        """Who takes part in ``hook``: its implementations, and for a derived hook the core
        default bound to each store without one (the rule of :mod:`threadline.plugins.dispatch`)."""
        calls = self._calls.get(hook)
        if calls is None:
            if hook in DERIVED_HOOKS:
                calls = dispatch.participants(self._bindings, hook)
            else:
                calls = [dispatch.impl_call(impl) for impl in self._implementations(hook)]
            self._calls[hook] = calls
        return calls

    async def _write(self, hook: str, **kwargs: Any) -> Any:
        if self._closed:
            self._check_open(hook)
        result = await dispatch.write_calls(self._participants(hook), kwargs)
        if result is None:
            raise ConfigurationError(f"no store in {self!r} implements {hook}")
        return result

    async def _read(self, hook: str, **kwargs: Any) -> Any:
        if self._closed:
            self._check_open(hook)
        calls = self._participants(hook)
        if not calls:
            raise ConfigurationError(f"no store in {self!r} implements {hook}")
        return await dispatch.read_calls(calls, kwargs)

    def _check_open(self, hook: str) -> None:
        if self._closed:
            raise ConfigurationError(f"store is closed ({hook})")

    # -- lifecycle --------------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        """Apply pending schema migrations of every stacked store; return their names."""
        results = await dispatch.collect(self._implementations("threadline_migrate"), {})
        return [name for result in results for name in result or ()]

    async def close(self) -> None:
        """Close every stacked store; later calls raise :class:`ConfigurationError`."""
        if self._closed:
            return
        self._closed = True
        await dispatch.call_write(self.pm, "threadline_close")

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def list_tenants(self) -> list[str]:
        """Every tenant with a session, agent or provider here (for whole-store operations)."""
        return list(await self._read("threadline_list_tenants") or ())

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, session: Session) -> Session:
        """Store a new session (an existing one with the same id and tenant comes back)."""
        result: Session = await self._write("threadline_create_session", session=session)
        return result

    async def get_session(self, tenant_id: IdLike, session_id: IdLike) -> Session | None:
        """The session, or ``None`` when this tenant has none with that id."""
        result: Session | None = await self._read(
            "threadline_get_session",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
        )
        return result

    async def list_sessions(
        self,
        tenant_id: IdLike,
        *,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        limit: int = 50,
        offset: int = 0,
        after: SessionCursor | str | None = None,
        forked_from: IdLike | None = None,
    ) -> list[Session]:
        """A tenant's sessions, most recently updated first (ties: highest id first).

        ``after`` (a :class:`SessionCursor` or its string) pages by keyset: only the
        sessions after that one come, stable under concurrent inserts;
        ``SessionCursor.of(page[-1])`` continues a full page. ``forked_from``: only the
        forks of that session (:meth:`fork_session`), from an index.
        """
        if isinstance(after, str):
            after = SessionCursor.parse(after)
        query = SessionQuery(user_id, agent_id, limit, offset, after, forked_from=forked_from)
        tenant = check_id(tenant_id, "tenant_id")
        result = await self._read("threadline_list_sessions", tenant_id=tenant, query=query)
        return list(result or ())

    async def iter_sessions(
        self,
        tenant_id: IdLike,
        *,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        page: int = 200,
        forked_from: IdLike | None = None,
    ) -> AsyncIterator[Session]:
        """Every session of a tenant (of ``forked_from``: its forks), newest first, read
        ``page`` at a time by cursor."""
        _check_count(page, "page", minimum=1)
        after: SessionCursor | None = None
        while True:
            found = await self.list_sessions(
                tenant_id,
                user_id=user_id,
                agent_id=agent_id,
                limit=page,
                after=after,
                forked_from=forked_from,
            )
            for session in found:
                yield session
            if len(found) < page:
                return
            after = SessionCursor.of(found[-1])

    async def update_session(self, session: Session) -> Session:
        """Replace a session's title and metadata."""
        result: Session = await self._write("threadline_update_session", session=session)
        return result

    async def set_session_updated_at(
        self, tenant_id: IdLike, session_id: IdLike, updated_at: datetime
    ) -> Session:
        """Set a session's ``updated_at`` exactly (copy and import keep the source's value).

        :raises NotFoundError: no such session for this tenant.
        """
        result: Session = await self._write(
            "threadline_set_session_updated_at",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            updated_at=check_utc(updated_at, "updated_at"),
        )
        return result

    async def delete_session(self, tenant_id: IdLike, session_id: IdLike) -> bool:
        """Delete a session and everything in it; ``False`` if there was none."""
        result = await self._write(
            "threadline_delete_session",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
        )
        return bool(result)

    # -- messages ---------------------------------------------------------------------------

    async def save_message(self, message: Message) -> Message:
        """Append a message; the store assigns its ``seq``. Retrying the same id is safe."""
        result: Message = await self._write("threadline_save_message", message=message)
        return result

    async def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Append messages of one session in one transaction, ``seq`` in list order."""
        messages = list(messages)
        if not messages:
            return []
        first = messages[0]
        for m in messages:
            if m.session_id != first.session_id or m.tenant_id != first.tenant_id:
                raise ValidationError("save_messages takes messages of a single session")
        result = await self._write("threadline_save_messages", messages=messages)
        return list(result)

    async def update_message(self, message: Message) -> Message:
        """Replace a stored message's content, tool calls, status and metadata."""
        result: Message = await self._write("threadline_update_message", message=message)
        return result

    async def get_messages(
        self,
        tenant_id: IdLike,
        session_id: IdLike,
        *,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[Message]:
        """A session's messages in ``seq`` order, after ``after_seq``."""
        if limit is not None:
            _check_count(limit, "limit")
        _check_count(after_seq, "after_seq")
        result = await self._read(
            "threadline_get_messages",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            after_seq=after_seq,
            limit=limit,
        )
        return list(result or ())

    async def read_messages(
        self,
        tenant_id: IdLike,
        session_id: IdLike,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Message]:
        """Messages with ``after_seq < seq < before_seq`` straight from the store's index.

        ``newest_first=True`` takes (and returns) the highest seqs first, so the last
        ``limit`` messages cost ``limit`` rows however long the session is.
        """
        query = MessageRange(after_seq, before_seq, limit, newest_first)
        result = await self._read(
            "threadline_read_messages",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            query=query,
        )
        return list(result or ())

    async def read_message_rows(
        self,
        tenant_id: IdLike,
        session_id: IdLike,
        fields: Sequence[str],
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[tuple[Any, ...]]:
        """:meth:`read_messages`' range as rows: one tuple a message of only ``fields``
        (names of :data:`threadline.storekit.message_rows.ROW_FIELDS`), no
        :class:`Message` built where the store can avoid it. ``metadata`` comes as its JSON
        text or ``None`` when empty, ``tool_calls`` as a tuple of :class:`ToolCall`. See
        :func:`threadline.hookspecs.threadline_read_message_rows`.
        """
        query = MessageRange(after_seq, before_seq, limit, newest_first)
        result = await self._read(
            "threadline_read_message_rows",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            query=query,
            fields=check_fields(fields),
        )
        return list(result or ())

    async def load_window(
        self, tenant_id: IdLike, session_id: IdLike, last_rounds: int | None = None
    ) -> list[Message]:
        """System messages plus the last ``last_rounds`` rounds (see storekit.window)."""
        result = await self._read(
            "threadline_load_window",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            last_rounds=check_rounds(last_rounds),
        )
        return list(result or ())

    async def count_messages(self, tenant_id: IdLike, session_id: IdLike) -> int:
        """How many messages the session holds."""
        result = await self._read(
            "threadline_count_messages",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
        )
        return int(result or 0)

    async def delete_messages(
        self, tenant_id: IdLike, session_id: IdLike, *, after_seq: int
    ) -> int:
        """Delete the session's messages with ``seq > after_seq`` (0: all); return how many.

        The session stays; seqs are never reused (the next message continues after the
        highest seq the session ever had). See
        :func:`threadline.hookspecs.threadline_delete_messages`.
        """
        _check_count(after_seq, "after_seq")
        result = await self._write(
            "threadline_delete_messages",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            after_seq=after_seq,
        )
        return int(result)

    async def fork_session(
        self,
        tenant_id: IdLike,
        session_id: IdLike,
        *,
        at: IdLike,
        new_session_id: IdLike | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """A new session whose history is ``session_id``'s up to ``at`` (a message id, that
        message included, or a checkpoint id of the session); its metadata records
        ``forked_from``. The store fills the fork through ``threadline_fork_messages``
        (SQLite and PostgreSQL share the messages' bytes, copy-on-write; other stores copy;
        see :mod:`threadline.store.branching`). :raises NotFoundError: no such session or point.
        """
        from threadline.store.branching import fork_session

        return await fork_session(
            self,
            tenant_id,
            session_id,
            at=at,
            new_session_id=new_session_id,
            title=title,
            metadata=metadata,
        )

    async def list_branches(self, tenant_id: IdLike, session_id: IdLike) -> list[Session]:
        """The sessions forked from ``session_id`` (by :meth:`fork_session`), oldest first."""
        from threadline.store.branching import list_branches

        return await list_branches(self, tenant_id, session_id)

    async def interrupt_streaming(self, tenant_id: IdLike, session_id: IdLike) -> int:
        """Mark replies left ``streaming`` by a crash as ``interrupted``; return how many."""
        result = await self._write(
            "threadline_interrupt_streaming",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
        )
        return int(result or 0)

    # -- live replies (optional group; see threadline.store.follow) -------------------------

    def publish_reply(self, piece: ReplyPiece) -> None:
        """Hand a piece of a streaming reply to the stores with live replies; never waits.

        A store's failure is logged, never raised: followers then read the stored row.
        """
        publish(self._implementations("threadline_publish_reply"), piece)

    @property
    def live_replies(self) -> bool:
        """Whether a stacked store pushes reply pieces (else followers poll the row)."""
        return bool(self._implementations("threadline_subscribe_replies"))

    async def subscribe_replies(
        self, tenant_id: IdLike, session_id: IdLike, maxsize: int = SUBSCRIPTION_QUEUE
    ) -> ReplySubscription | None:
        """A live subscription to a session's reply pieces, ``None`` without live replies."""
        self._check_open("threadline_subscribe_replies")
        _check_count(maxsize, "maxsize")
        result: ReplySubscription | None = await dispatch.read(
            self._implementations("threadline_subscribe_replies"),
            {
                "tenant_id": check_id(tenant_id, "tenant_id"),
                "session_id": check_id(session_id, "session_id"),
                "maxsize": max(1, maxsize),
            },
        )
        return result

    def follow_reply(
        self,
        tenant_id: IdLike,
        session_id: IdLike,
        message_id: IdLike | None = None,
        *,
        wait_next: bool = False,
        poll_interval: float = POLL_INTERVAL,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> AsyncIterator[ReplyUpdate]:
        """Follow a reply while it streams: its text so far, then each new piece, the last
        :class:`ReplyUpdate` with the final status (see :mod:`threadline.store.follow`).

        ``message_id=None`` follows the session's latest reply (streaming or ended); with
        none yet, or ``wait_next=True`` and the latest one ended, the next reply to start.
        :raises NotFoundError: no such session for the tenant, or no such reply in it.
        """
        return follow_reply(
            self,
            check_id(tenant_id, "tenant_id"),
            check_id(session_id, "session_id"),
            optional_id(message_id, "message_id"),
            wait_next=check_flag(wait_next, "wait_next"),
            poll_interval=poll_interval,
            stall_timeout=stall_timeout,
        )

    async def session_expiry(
        self, tenant_id: IdLike, session_ids: Sequence[IdLike]
    ) -> dict[str, datetime | None]:
        """When each session expires unless used again; all ``None`` on stores without TTLs."""
        ids = [check_id(sid, "session_id") for sid in session_ids]
        self._check_open("threadline_session_expiry")
        found = await dispatch.read(
            self._implementations("threadline_session_expiry"),
            {"tenant_id": check_id(tenant_id, "tenant_id"), "session_ids": ids},
        )
        return {sid: (found or {}).get(sid) for sid in ids}

    # -- API calls --------------------------------------------------------------------------

    async def save_api_call(self, api_call: ApiCall) -> ApiCall:
        """Record one model request."""
        result: ApiCall = await self._write("threadline_save_api_call", api_call=api_call)
        return result

    async def list_api_calls(self, tenant_id: IdLike, session_id: IdLike) -> list[ApiCall]:
        """A session's API calls, oldest first."""
        result = await self._read(
            "threadline_list_api_calls",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
        )
        return list(result or ())

    async def usage(
        self,
        tenant_id: IdLike,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str = "model",
        prices: Mapping[str, Any] | None = None,
    ) -> UsageReport:
        """A tenant's model calls with ``since <= created_at < until`` summed per ``group_by``
        (``model``, ``agent``, ``user``, ``session``, ``day``): see :mod:`threadline.usage`.

        Cost uses ``prices`` (model -> :class:`~threadline.usage.ModelPrice` or its dict),
        else the prices in the tenant's providers' metadata.
        """
        from threadline.usage import UsageQuery, UsageReport, prices_of, row_order

        tenant = check_id(tenant_id, "tenant_id")
        query = UsageQuery(group_by, since, until, {} if prices is None else prices)  # type: ignore[arg-type]
        if prices is None and self._participants("threadline_list_providers"):
            query = attrs.evolve(query, prices=prices_of(await self.list_providers(tenant)))
        rows = await self._read("threadline_summarize_usage", tenant_id=tenant, query=query)
        ordered = tuple(sorted(rows or (), key=row_order))
        return UsageReport(tenant, query.group_by, query.since, query.until, ordered)

    # -- checkpoints ------------------------------------------------------------------------

    async def create_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store a checkpoint; the store assigns the next per-session ``version``."""
        result: Checkpoint = await self._write(
            "threadline_create_checkpoint", checkpoint=checkpoint
        )
        return result

    async def get_checkpoint(self, tenant_id: IdLike, checkpoint_id: IdLike) -> Checkpoint | None:
        """One checkpoint, or ``None``."""
        result: Checkpoint | None = await self._read(
            "threadline_get_checkpoint",
            tenant_id=check_id(tenant_id, "tenant_id"),
            checkpoint_id=check_id(checkpoint_id, "checkpoint_id"),
        )
        return result

    async def list_checkpoints(
        self,
        tenant_id: IdLike,
        *,
        session_id: IdLike | None = None,
        agent_id: IdLike | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints by ascending version."""
        result = await self._read(
            "threadline_list_checkpoints",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=optional_id(session_id, "session_id"),
            agent_id=optional_id(agent_id, "agent_id"),
        )
        return list(result or ())

    async def get_latest_checkpoint(
        self, tenant_id: IdLike, session_id: IdLike, *, agent_id: IdLike | None = None
    ) -> Checkpoint | None:
        """The session's checkpoint with the highest version, or ``None``."""
        result: Checkpoint | None = await self._read(
            "threadline_get_latest_checkpoint",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            agent_id=optional_id(agent_id, "agent_id"),
        )
        return result

    async def append_checkpoint_state(
        self, tenant_id: IdLike, checkpoint_id: IdLike, key: str, item: Any
    ) -> bool:
        """Append ``item`` (JSON) to the list ``state[key]`` of a stored checkpoint, in one
        transaction; its history stays. ``False`` when there is no such checkpoint or its
        state has no list ``key``. A shortcut hook not every store has
        (``implements("threadline_append_checkpoint_state")`` says; else
        :class:`ConfigurationError`): LangGraph's saver keeps pending writes this way."""
        result = await self._write(
            "threadline_append_checkpoint_state",
            tenant_id=check_id(tenant_id, "tenant_id"),
            checkpoint_id=check_id(checkpoint_id, "checkpoint_id"),
            key=key,
            item=item,
        )
        return bool(result)

    # -- retention --------------------------------------------------------------------------

    async def erase_user(
        self, tenant_id: IdLike, user_id: IdLike, *, dry_run: bool = False
    ) -> dict[str, int]:
        """Delete a user's sessions in one tenant with everything in them.

        The user's messages in other users' sessions, and in those sessions' checkpoint
        histories, are redacted in place (seq, role and status kept,
        :func:`threadline.storekit.erasure.redact`) and their API calls there deleted (see
        :func:`threadline.hookspecs.threadline_erase_user`). Returns how many
        ``sessions``, ``messages``, ``messages_redacted``, ``api_calls``, ``checkpoints``
        and ``checkpoints_redacted`` went (with ``dry_run=True``: would go, and nothing
        changes).
        """
        result = await self._write(
            "threadline_erase_user",
            tenant_id=check_id(tenant_id, "tenant_id"),
            user_id=check_id(user_id, "user_id"),
            dry_run=check_flag(dry_run, "dry_run"),
        )
        counts = {kind: 0 for kind in ERASE_KINDS}
        counts.update({str(k): int(v) for k, v in dict(result).items()})
        return counts

    async def prune_checkpoints(
        self, tenant_id: IdLike, session_id: IdLike, *, keep: int, dry_run: bool = False
    ) -> int:
        """Delete a session's older checkpoints, keeping the newest ``keep`` versions whole.

        Delta ancestors a kept checkpoint needs to be restored are kept too (see
        :func:`threadline.hookspecs.threadline_prune_checkpoints`). Returns how many went.
        """
        _check_count(keep, "keep", 1)
        result = await self._write(
            "threadline_prune_checkpoints",
            tenant_id=check_id(tenant_id, "tenant_id"),
            session_id=check_id(session_id, "session_id"),
            keep=keep,
            dry_run=check_flag(dry_run, "dry_run"),
        )
        return int(result)

    async def delete_sessions_before(
        self,
        tenant_id: IdLike,
        before: datetime,
        *,
        user_id: IdLike | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete sessions last updated before ``before`` (aware); return how many went."""
        result = await self._write(
            "threadline_delete_sessions_before",
            tenant_id=check_id(tenant_id, "tenant_id"),
            before=check_utc(before, "before"),
            user_id=optional_id(user_id, "user_id"),
            dry_run=check_flag(dry_run, "dry_run"),
        )
        return int(result)

    # -- agent configs ----------------------------------------------------------------------

    async def save_agent_config(self, config: AgentConfig) -> AgentConfig:
        """Insert or replace an agent and its provider."""
        result: AgentConfig = await self._write("threadline_save_agent_config", config=config)
        return result

    async def load_agent_config(
        self, *, tenant_id: IdLike, code: str | None = None, agent_id: IdLike | None = None
    ) -> AgentConfig | None:
        """An agent and its provider by ``code`` or ``agent_id``; ``None`` if absent."""
        if (code is None) == (agent_id is None):
            raise ValidationError("load_agent_config takes exactly one of code= or agent_id=")
        if code is not None:
            check_text(code, "code")
        result: AgentConfig | None = await self._read(
            "threadline_load_agent_config",
            tenant_id=check_id(tenant_id, "tenant_id"),
            code=code,
            agent_id=optional_id(agent_id, "agent_id"),
        )
        return result

    async def list_agent_configs(self, tenant_id: IdLike) -> list[AgentConfig]:
        """A tenant's agents with their providers, ordered by code."""
        result = await self._read(
            "threadline_list_agent_configs", tenant_id=check_id(tenant_id, "tenant_id")
        )
        return list(result or ())

    # -- providers --------------------------------------------------------------------------

    async def save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        """Insert or replace a provider (by id), whether or not an agent uses it."""
        if not isinstance(provider, ProviderRecord):
            raise ValidationError(f"save_provider takes a ProviderRecord, got {provider!r}")
        result: ProviderRecord = await self._write("threadline_save_provider", provider=provider)
        return result

    async def list_providers(self, tenant_id: IdLike) -> list[ProviderRecord]:
        """A tenant's providers, unused ones included, ordered by name, then id."""
        result = await self._read(
            "threadline_list_providers", tenant_id=check_id(tenant_id, "tenant_id")
        )
        return list(result or ())


ERASE_KINDS = (
    "sessions",
    "messages",
    "messages_redacted",
    "api_calls",
    "checkpoints",
    "checkpoints_redacted",
)
"""The kinds of rows :meth:`Store.erase_user` counts, in report order."""


def check_flag(value: object, name: str) -> bool:
    """``value`` if it is a bool (not merely truthy); else a ValidationError naming ``name``."""
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be a bool, got {value!r}")
    return value


def _check_count(value: object, name: str, minimum: int = 0) -> int:
    """``value`` if it is an int in ``minimum..MAX_INT``: every store can take it then (the
    SQL stores bind a signed 64-bit integer), so all of them refuse the same values."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value > MAX_INT:
        raise ValidationError(f"{name} must be at most {MAX_INT} (2**63-1), got {value!r}")
    return value
