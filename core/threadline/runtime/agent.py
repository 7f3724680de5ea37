"""The agent runtime: streaming chat that persists every turn by itself.

    agent = await (threadline.quick_agent("You are helpful.")
                   .with_session_id(sid).with_sliding_window(2).build())
    async for text in agent.chat_stream("hi"):
        print(text, end="")

Per turn: the user message is written while the request goes out and is durable before
the first token reaches the caller; the reply is written at its first token, flushed
while it streams, and finished with its status however the stream ends (complete,
error, cancelled); one :class:`~threadline.models.ApiCall` records each request. The
turn itself (requests, tool rounds, ApiCall statuses) is :mod:`threadline.runtime.turn`, shared
with graph nodes; here its messages go to the store. All state of a turn lives in the
call, so one agent serves many sessions at once.

The embedded default store's folder comes from ``platformdirs``, the core's one dependency
beyond pluggy, attrs and click: it is small, pure Python with no dependencies of its own
(pip vendors it), and follows each platform's rules (Windows known folders, XDG on
Unix and macOS) where a hand-written guess drifts. A store an earlier threadline made in
another folder keeps being used (:func:`default_database_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from threadline.errors import ConfigurationError, ConflictError, ValidationError
from threadline.ids import IdLike, check_id, new_id, optional_id
from threadline.models import AgentConfig, ApiCall, Checkpoint, Message, Role, Session, ToolCall
from threadline.runtime.approvals import ApprovalPolicy, ApprovalRequired
from threadline.runtime.providers import Provider, resolve_provider
from threadline.runtime.streaming import ReplyRecorder
from threadline.runtime.tools import Tool, as_tools, run_tool
from threadline.runtime.turn import TurnSettings, stream_turn
from threadline.runtime.waiting import (
    KIND_APPROVAL,
    ApprovalPendingError,
    ApprovalState,
    NotWaitingError,
    PendingCall,
    approval_state,
    is_waiting,
    kind_of,
    pending_from,
    record_decision,
    record_done,
)
from threadline.store import Store, connect
from threadline.storekit.window import check_rounds, select_window

__all__ = [
    "LOCAL_AGENT_ID",
    "LOCAL_TENANT_ID",
    "LOCAL_USER_ID",
    "Agent",
    "AgentBuilder",
    "PersistencePlugin",
    "default_store_url",
    "quick_agent",
]

# The ids quick_agent uses when TENANT_ID / USER_ID / AGENT_ID are not set: one local user
# of the embedded store. Documented, fixed, and never used by the other builders.
LOCAL_TENANT_ID = "00000000-0000-7000-8000-000000000001"
LOCAL_USER_ID = "00000000-0000-7000-8000-000000000002"
LOCAL_AGENT_ID = "00000000-0000-7000-8000-000000000003"
STORE_ENV_VARS = ("THREADLINE_STORE", "DATABASE_URL")
DEFAULT_DATABASE = "threadline.db"
DEFAULT_FLUSH_INTERVAL = 1.0


def user_data_dir() -> Path:
    """The platform's per-user data folder for threadline (``platformdirs``):
    ``$XDG_DATA_HOME/threadline`` or ``~/.local/share/threadline`` on Linux,
    ``~/Library/Application Support/threadline`` on macOS (``$XDG_DATA_HOME`` first when
    set), ``%LOCALAPPDATA%\\threadline`` on Windows."""
    return platformdirs.user_data_path("threadline", appauthor=False)


def _earlier_data_dirs() -> list[Path]:
    """Where threadline put its default store before it used platformdirs, where that
    differs: macOS ignored ``$XDG_DATA_HOME``, Windows read ``%LOCALAPPDATA%`` itself."""
    if sys.platform == "darwin":
        return [Path.home() / "Library" / "Application Support" / "threadline"]
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return [Path(os.environ["LOCALAPPDATA"]) / "threadline"]
    return []


def default_database_path() -> Path:
    """The embedded store's SQLite file: ``threadline.db`` in :func:`user_data_dir`, unless
    only an earlier threadline's folder holds one (then that file: no history left behind)."""
    path = user_data_dir() / DEFAULT_DATABASE
    if not path.exists():
        for folder in _earlier_data_dirs():
            earlier = folder / DEFAULT_DATABASE
            if earlier != path and earlier.is_file():
                return earlier
    return path


def default_store_url() -> str:
    """``THREADLINE_STORE``, else ``DATABASE_URL``, else :func:`default_database_path`."""
    for var in STORE_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    path = default_database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _system_message_id(session_id: str) -> str:
    # One deterministic id per session: two first turns racing save the prompt once.
    return str(uuid.uuid5(uuid.UUID(session_id), "threadline:system-prompt"))


def _tenant_id(value: object) -> str:
    return check_id(value, "tenant_id")


def _user_id(value: object) -> str | None:
    return optional_id(value, "user_id")


def _agent_id(value: object) -> str | None:
    return optional_id(value, "agent_id")


def _session_id(value: object) -> str | None:
    return optional_id(value, "session_id")


@attrs.frozen
class PersistencePlugin:
    """Where and as whom an agent persists: store, tenant, user, agent and default session."""

    store: Store
    tenant_id: str = attrs.field(converter=_tenant_id)
    user_id: str | None = attrs.field(default=None, converter=_user_id)
    agent_id: str | None = attrs.field(default=None, converter=_agent_id)
    session_id: str | None = attrs.field(default=None, converter=_session_id)

    @classmethod
    def from_store(
        cls,
        store: Store,
        *,
        tenant_id: IdLike,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        session_id: IdLike | None = None,
    ) -> PersistencePlugin:
        """Persist to ``store`` as this tenant, user and agent (MoFA's ``PersistencePlugin``)."""
        return cls(store, tenant_id, user_id, agent_id, session_id)


@attrs.frozen
class AgentSettings:
    """What an agent is: immutable once built."""

    name: str | None
    system_prompt: str | None
    provider: Provider
    model: str
    window: int | None
    temperature: float | None
    max_tokens: int | None
    response_format: Mapping[str, Any] | None
    extra: Mapping[str, Any]
    tools: Mapping[str, Tool]
    flush_interval: float
    approval: ApprovalPolicy = attrs.field(factory=ApprovalPolicy)


class Agent:
    """A chat agent bound to a provider and a store. Build it with :class:`AgentBuilder`."""

    def __init__(
        self,
        settings: AgentSettings,
        persistence: PersistencePlugin,
        *,
        owns_store: bool = False,
    ) -> None:
        self.settings = settings
        self.persistence = persistence
        self.session_id: str = persistence.session_id or new_id()
        self._owns_store = owns_store
        self._opened: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"<Agent {self.settings.name or ''!s} model={self.settings.model!r} "
            f"session={self.session_id}>"
        )

    @property
    def store(self) -> Store:
        return self.persistence.store

    async def close(self) -> None:
        """Close the provider, and the store if the builder opened it."""
        await self.settings.provider.aclose()
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _message(self, session_id: str, role: Role, content: str = "", **fields: Any) -> Message:
        p = self.persistence
        return Message(
            session_id=session_id,
            tenant_id=p.tenant_id,
            user_id=p.user_id,
            agent_id=p.agent_id,
            role=role,
            content=content,
            **fields,
        )

    async def open_session(self, session_id: IdLike | None = None) -> Session:
        """Create the session or resume it: crashed replies become ``interrupted``."""
        sid = check_id(session_id or self.session_id, "session_id")
        p = self.persistence
        fresh = Session(
            id=sid,
            tenant_id=p.tenant_id,
            user_id=p.user_id,
            agent_id=p.agent_id,
            title=self.settings.name,
        )
        session = await self.store.create_session(fresh)  # returns the stored one if it exists
        if session.created_at != fresh.created_at:  # resumed
            if p.user_id is not None and session.user_id not in (None, p.user_id):
                raise ConflictError(f"session {sid} belongs to another user")
            if sid not in self._opened:
                await self._interrupt_crashed(sid)
        if self.settings.system_prompt and sid not in self._opened:
            await self.store.save_message(
                self._message(
                    sid, "system", self.settings.system_prompt, id=_system_message_id(sid)
                )
            )
        self._opened.add(sid)
        return session

    async def _interrupt_crashed(self, sid: str) -> None:
        """Mark replies a crash left ``streaming`` as ``interrupted``, each with its ApiCall.

        Only the last round can hold one (a turn starts after the session is opened), so
        this reads one round, through the window's index.
        """
        p = self.persistence
        last = await self.store.load_window(p.tenant_id, sid, 1)
        crashed = [m for m in last if m.role == "assistant" and m.status == "streaming"]
        if not await self.store.interrupt_streaming(p.tenant_id, sid) or not crashed:
            return
        request_id = next((m.id for m in reversed(last) if m.role == "user"), None)
        for reply in crashed:
            await self.store.save_api_call(
                ApiCall(
                    # One id per reply: two processes reopening at once record it once.
                    id=str(uuid.uuid5(uuid.UUID(reply.id), "threadline:interrupted")),
                    tenant_id=p.tenant_id,
                    session_id=sid,
                    user_id=p.user_id,
                    agent_id=p.agent_id,
                    model=str(reply.metadata.get("model") or self.settings.model),
                    request_message_id=request_id,
                    response_message_id=reply.id,
                    status="failed",
                    error_code="interrupted",
                    error_message="the process ended while the reply was streaming",
                )
            )

    async def history(
        self, session_id: IdLike | None = None, last_rounds: int | None = None
    ) -> list[Message]:
        """The stored messages of a session (the last ``last_rounds`` rounds if given)."""
        sid = check_id(session_id or self.session_id, "session_id")
        return await self.store.load_window(self.persistence.tenant_id, sid, last_rounds)

    async def chat(
        self,
        text: str,
        *,
        session_id: IdLike | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Send ``text`` and return the whole reply (persisted like :meth:`chat_stream`)."""
        parts = [
            piece
            async for piece in self.chat_stream(text, session_id=session_id, metadata=metadata)
        ]
        return "".join(parts)

    async def chat_stream(
        self,
        text: str,
        *,
        session_id: IdLike | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Send ``text`` and yield the reply as it streams; every part is persisted.

        Stop early with ``aclose()`` (or ``contextlib.aclosing``) or by cancelling the task:
        the partial reply is kept with status ``cancelled``.
        """
        sid = check_id(session_id or self.session_id, "session_id")
        if sid not in self._opened:
            await self.open_session(sid)
        settings, p = self.settings, self.persistence
        if settings.approval.active(settings.tools):
            await self._refuse_while_held(sid)
        user = self._message(sid, "user", text, metadata=metadata or {})
        user_saved = asyncio.ensure_future(self.store.save_message(user))
        try:
            window = await self.store.load_window(p.tenant_id, sid, settings.window)
        except BaseException:
            await user_saved  # never leave the write behind: durable, or its error raised
            raise
        history = select_window([m for m in window if m.id != user.id] + [user], settings.window)
        # System messages first (a prompt added to an older session is still the first).
        history.sort(key=lambda m: m.role != "system")
        turn = stream_turn(
            _StoreTranscript(self, sid, history),
            self._turn_settings(sid),
            request_message_id=user.id,
            before_first_token=user_saved,
        )
        async with contextlib.aclosing(turn):
            async for piece in turn:
                yield piece

    def _turn_settings(self, sid: str) -> TurnSettings:
        settings = self.settings

        async def hold(reply: Message, calls: Sequence[ToolCall]) -> str:
            return await self._hold(sid, reply, calls)

        return TurnSettings(
            provider=settings.provider,
            model=settings.model,
            tools=settings.tools,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            response_format=settings.response_format,
            extra=settings.extra,
            approval=settings.approval,
            hold=hold,
        )

    # -- approvals ----------------------------------------------------------------------

    async def _hold(self, sid: str, reply: Message, held: Sequence[ToolCall]) -> ApprovalRequired:
        """Record that ``reply``'s calls wait for approval (a checkpoint of the session)."""
        p = self.persistence
        latest = await self.store.get_latest_checkpoint(p.tenant_id, sid)
        await self.store.create_checkpoint(
            Checkpoint(
                tenant_id=p.tenant_id,
                session_id=sid,
                agent_id=p.agent_id,
                properties={
                    "kind": KIND_APPROVAL,
                    "waiting": True,
                    "user_id": p.user_id,
                    "approval": {
                        "message_id": reply.id,
                        "calls": [c.to_dict() for c in reply.tool_calls],
                        "needs": [c.id for c in held],
                    },
                },
                parent_id=latest.id if latest is not None else None,
            )
        )
        return ApprovalRequired(pending_from(held), session_id=sid, message_id=reply.id)

    async def _refuse_while_held(self, sid: str) -> None:
        latest = await self.store.get_latest_checkpoint(self.persistence.tenant_id, sid)
        if is_waiting(latest) and kind_of(latest) != "interrupt":
            state = await self._approval_state(sid)
            waiting = ", ".join(f"{c.name} ({c.id})" for c in state.pending) if state else ""
            waiting = waiting or "all decided, not yet continued"
            raise ApprovalPendingError(
                f"session {sid} waits for approval of tool calls: {waiting}; approve or "
                "reject them (or continue_turn) first"
            )

    async def _approval_state(self, sid: str) -> ApprovalState | None:
        tenant = self.persistence.tenant_id
        return approval_state(await self.store.list_checkpoints(tenant, session_id=sid))

    async def pending_approvals(self, session_id: IdLike | None = None) -> list[PendingCall]:
        """The tool calls of a session waiting for approval (none: an empty list)."""
        sid = check_id(session_id or self.session_id, "session_id")
        state = await self._approval_state(sid)
        return [] if state is None or state.done else list(state.pending)

    def approve(
        self,
        call_id: str,
        *,
        arguments: Mapping[str, Any] | None = None,
        session_id: IdLike | None = None,
    ) -> AsyncIterator[str]:
        """Approve a held tool call (``arguments``: run it with these, recorded as edited).

        Works in any process. When it was the last held call of its turn, the turn goes
        on: the calls run, their results are saved and the reply streams here. Otherwise
        the stream yields one :class:`ApprovalRequired` naming the calls still held.
        Raises :class:`~threadline.runtime.waiting.NotWaitingError` when the call does not
        wait (unknown, decided already, or decided first by another process).
        """
        return self._decide(call_id, True, arguments, None, session_id)

    def reject(
        self, call_id: str, reason: str = "rejected", *, session_id: IdLike | None = None
    ) -> AsyncIterator[str]:
        """Reject a held tool call: the model reads ``rejected: REASON`` as its result."""
        return self._decide(call_id, False, None, reason, session_id)

    async def _decide(
        self,
        call_id: str,
        approved: bool,
        arguments: Mapping[str, Any] | None,
        reason: str | None,
        session_id: IdLike | None,
    ) -> AsyncIterator[str]:
        sid = optional_id(session_id, "session_id")
        run, written, state = await record_decision(
            self.store,
            self.persistence.tenant_id,
            call_id,
            approved=approved,
            arguments=arguments,
            reason=reason,
            session_id=sid,
        )
        if run.kind != "approval" or state is None:
            raise ConflictError(
                f"tool call {call_id!r} waits in a graph run: use GraphAgent.approve/reject"
            )
        if state.completed_by != written.id:
            if state.pending:
                yield ApprovalRequired(
                    state.pending, session_id=run.session_id, message_id=state.message_id
                )
            return
        async for piece in self._continue(run.session_id, state):
            yield piece

    async def continue_turn(self, session_id: IdLike | None = None) -> AsyncIterator[str]:
        """Go on with a held turn whose calls are all decided (after a crash left it so)."""
        sid = check_id(session_id or self.session_id, "session_id")
        state = await self._approval_state(sid)
        if state is None or state.done:
            raise NotWaitingError(f"no held turn to continue in session {sid}")
        if state.completed_by is None:
            names = ", ".join(c.id for c in state.pending)
            raise NotWaitingError(f"tool calls still wait for approval: {names}")
        async for piece in self._continue(sid, state):
            yield piece

    async def _continue(self, sid: str, state: ApprovalState) -> AsyncIterator[str]:
        """Run the held reply's calls as decided, save their results, and go on streaming."""
        if sid not in self._opened:
            await self.open_session(sid)
        p, settings = self.persistence, self.settings
        window = await self.store.load_window(p.tenant_id, sid, settings.window)
        history = select_window(window, settings.window)
        history.sort(key=lambda m: m.role != "system")
        reply = next((m for m in history if m.id == state.message_id), None)
        if reply is None:
            raise NotWaitingError(f"the held reply {state.message_id} is no longer in session")
        answered = {m.tool_call_id for m in history if m.role == "tool"}
        for call in reply.tool_calls:
            if call.id in answered:
                continue  # saved before a crash
            decision = state.decisions.get(call.id)
            if decision is not None and not decision.get("approved"):
                content = f"rejected: {decision.get('reason') or 'rejected'}"
                meta: dict[str, Any] = {"error": "rejected", "approval": decision}
            else:
                edited = decision.get("arguments") if decision else None
                run_call = ToolCall(call.id, call.name, edited) if edited is not None else call
                outcome = await run_tool(settings.tools, run_call)
                content, meta = outcome.content, dict(outcome.metadata)
                if decision is not None:
                    meta["approval"] = decision
            message = self._message(
                sid, "tool", content, tool_call_id=call.id, name=call.name, metadata=meta
            )
            history.append(await self.store.save_message(message))
        await record_done(self.store, state)
        turn = stream_turn(_StoreTranscript(self, sid, history), self._turn_settings(sid))
        async with contextlib.aclosing(turn):
            async for piece in turn:
                yield piece


class _StoreTranscript:
    """A chat turn's :class:`~threadline.runtime.turn.Transcript`: every message to the store."""

    def __init__(self, agent: Agent, session_id: str, history: list[Message]) -> None:
        self.agent = agent
        self.session_id = session_id
        self.history = history

    def messages(self) -> list[Message]:
        return self.history

    def message(self, role: Role, content: str = "", **fields: Any) -> Message:
        return self.agent._message(self.session_id, role, content, **fields)

    def start_reply(self, template: Message) -> ReplyRecorder:
        return ReplyRecorder(self.agent.store, template, self.agent.settings.flush_interval)

    async def save(self, message: Message) -> Message:
        return await self.agent.store.save_message(message)

    def append(self, message: Message) -> None:
        self.history.append(message)

    async def save_api_call(self, api_call: ApiCall) -> None:
        await self.agent.store.save_api_call(api_call)


class AgentBuilder:
    """Configures and builds an :class:`Agent` (MoFA's ``LLMAgentBuilder``)."""

    def __init__(self, system_prompt: str | None = None) -> None:
        self._system_prompt = system_prompt
        self._store: Store | str | None = None
        self._default_store = False
        self._provider: Provider | str | None = None
        self._provider_options: dict[str, Any] = {}
        self._model: str | None = None
        self._session_id: str | None = None
        self._name: str | None = None
        self._window: int | None = None
        self._tools: list[Callable[..., Any] | Tool] = []
        self._persistence: PersistencePlugin | None = None
        self._ids: dict[str, str | None] = {}
        self._temperature: float | None = None
        self._max_tokens: int | None = None
        self._response_format: Mapping[str, Any] | None = None
        self._extra: dict[str, Any] = {}
        self._flush_interval = DEFAULT_FLUSH_INTERVAL
        self._approval = ApprovalPolicy()

    # -- setters ------------------------------------------------------------------------

    def with_store(self, store: Store | str) -> AgentBuilder:
        """Persist to this store (or store URL)."""
        self._store = store
        return self

    def with_provider(self, provider: Provider | str, **options: Any) -> AgentBuilder:
        """Use this provider, or the one registered under this name built with ``options``."""
        self._provider, self._provider_options = provider, options
        return self

    def with_model(self, model: str) -> AgentBuilder:
        self._model = model
        return self

    def with_system_prompt(self, prompt: str) -> AgentBuilder:
        self._system_prompt = prompt
        return self

    def with_session_id(self, session_id: IdLike) -> AgentBuilder:
        """The default session of ``chat_stream`` (each call may pass another)."""
        self._session_id = check_id(session_id, "session_id")
        return self

    def with_name(self, name: str) -> AgentBuilder:
        self._name = name
        return self

    def with_sliding_window(self, rounds: int | None) -> AgentBuilder:
        """Send the system prompt and only the last ``rounds`` rounds to the model."""
        self._window = check_rounds(rounds)
        return self

    def with_tools(self, tools: Iterable[Callable[..., Any] | Tool]) -> AgentBuilder:
        """Plain callables (or :class:`Tool`) the model may call."""
        self._tools.extend(tools)
        return self

    def with_approval(
        self,
        tools: Iterable[str | Callable[..., Any] | Tool] = (),
        *,
        policy: Callable[[ToolCall], Any] | None = None,
    ) -> AgentBuilder:
        """Hold calls of these tools (names or functions), or calls ``policy(call)`` accepts,
        for a person's approval (tools marked ``@requires_approval`` are held anyway)."""
        self._approval = ApprovalPolicy.of(tools, policy)
        return self

    def with_persistence_plugin(self, persistence: PersistencePlugin) -> AgentBuilder:
        """Persist with this store, tenant, user, agent and session."""
        self._persistence = persistence
        return self

    def with_tenant_id(self, tenant_id: IdLike) -> AgentBuilder:
        self._ids["tenant_id"] = check_id(tenant_id, "tenant_id")
        return self

    def with_user_id(self, user_id: IdLike) -> AgentBuilder:
        self._ids["user_id"] = check_id(user_id, "user_id")
        return self

    def with_agent_id(self, agent_id: IdLike) -> AgentBuilder:
        self._ids["agent_id"] = check_id(agent_id, "agent_id")
        return self

    def with_temperature(self, temperature: float | None) -> AgentBuilder:
        self._temperature = temperature
        return self

    def with_max_tokens(self, max_tokens: int | None) -> AgentBuilder:
        self._max_tokens = max_tokens
        return self

    def with_response_format(self, response_format: Mapping[str, Any] | None) -> AgentBuilder:
        self._response_format = response_format
        return self

    def with_params(self, **params: Any) -> AgentBuilder:
        """Extra request parameters passed to the provider as they are (``top_p``, ``seed``)."""
        self._extra.update(params)
        return self

    def with_flush_interval(self, seconds: float) -> AgentBuilder:
        """How often a streaming reply is rewritten to the store (default 1 s)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValidationError(f"flush interval must be a number >= 0, got {seconds!r}")
        self._flush_interval = float(seconds)
        return self

    @classmethod
    def from_agent_config(cls, config: AgentConfig) -> AgentBuilder:
        """A builder with every field of an agent row and its provider row applied.

        Raises :class:`ConfigurationError` when the agent or its provider is disabled.
        """
        agent, provider = config.agent, config.provider
        if not agent.enabled:
            raise ConfigurationError(f"agent {agent.code!r} is disabled")
        if provider is not None and not provider.enabled:
            raise ConfigurationError(
                f"provider {provider.name!r} of agent {agent.code!r} is disabled"
            )
        builder = cls(agent.system_prompt).with_name(agent.name)
        builder._ids = {"tenant_id": agent.tenant_id, "agent_id": agent.id}
        builder._window = agent.window
        builder._temperature = agent.temperature
        builder._max_tokens = agent.max_tokens
        builder._response_format = agent.response_format
        builder._extra = dict(agent.custom_params)
        if agent.model:
            builder._model = agent.model
        if provider is not None:
            options: dict[str, Any] = {}
            if provider.api_base:
                options["base_url"] = provider.api_base
            if provider.api_key_ref:
                options["api_key_ref"] = provider.api_key_ref
            builder._provider, builder._provider_options = provider.type, options
        return builder

    # -- build --------------------------------------------------------------------------

    def _resolve_provider(self) -> Provider:
        return resolve_provider(self._provider, self._provider_options, self._model)

    async def build(self) -> Agent:
        """Open the store (if given as a URL) and provider, and return the agent."""
        provider = self._resolve_provider()
        model = self._model or os.environ.get("OPENAI_MODEL") or provider.default_model
        if not model:
            raise ConfigurationError("no model: call with_model(...) or set OPENAI_MODEL")
        owns_store = False
        persistence = self._persistence
        if persistence is None:
            store = self._store
            if store is None:
                if not self._default_store:
                    raise ConfigurationError(
                        "no store: call with_store(...) or with_persistence_plugin(...)"
                    )
                store = default_store_url()
            if isinstance(store, str):
                store = await connect(store)
                owns_store = True
            tenant = self._ids.get("tenant_id")
            if tenant is None:
                raise ConfigurationError(
                    "no tenant: call with_tenant_id(...) or use a PersistencePlugin"
                )
            persistence = PersistencePlugin.from_store(
                store,
                tenant_id=tenant,
                user_id=self._ids.get("user_id"),
                agent_id=self._ids.get("agent_id"),
                session_id=self._session_id,
            )
        elif self._session_id is not None:
            persistence = attrs.evolve(persistence, session_id=self._session_id)
        settings = AgentSettings(
            name=self._name,
            system_prompt=self._system_prompt,
            provider=provider,
            model=model,
            window=self._window,
            temperature=self._temperature,
            max_tokens=self._max_tokens,
            response_format=self._response_format,
            extra=self._extra,
            tools=as_tools(self._tools),
            flush_interval=self._flush_interval,
            approval=self._approval,
        )
        return Agent(settings, persistence, owns_store=owns_store)


def quick_agent(system_prompt: str, store: Store | str | None = None) -> AgentBuilder:
    """A builder with sensible defaults for a local, single-user agent.

    The store is ``store``, else ``THREADLINE_STORE`` or ``DATABASE_URL``, else SQLite in the
    user data directory; tenant, user and agent ids come from ``TENANT_ID``, ``USER_ID``,
    ``AGENT_ID`` when set, else the fixed ``LOCAL_*`` ids; the provider is ``openai`` when
    ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set, else ``echo``.
    """
    builder = AgentBuilder(system_prompt)
    if store is not None:
        builder.with_store(store)
    builder._default_store = True
    builder.with_tenant_id(os.environ.get("TENANT_ID") or LOCAL_TENANT_ID)
    builder.with_user_id(os.environ.get("USER_ID") or LOCAL_USER_ID)
    builder.with_agent_id(os.environ.get("AGENT_ID") or LOCAL_AGENT_ID)
    return builder
