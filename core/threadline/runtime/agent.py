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
with graph nodes; here its messages go to the store (:mod:`threadline.runtime.transcript`).
All state of a turn lives in the call, so one agent serves many sessions at once.

Held tool calls (approve, reject, continue) are :mod:`threadline.runtime.held_turns`; the
builder is :mod:`threadline.runtime.builder`, the default store and ids
:mod:`threadline.runtime.locations`. Their names stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from threadline.errors import ConflictError
from threadline.ids import IdLike, check_id, new_id
from threadline.models import ApiCall, Message, Role, Session
from threadline.runtime.compaction import (
    compact_session,
    fit_history,
    load_budgeted,
    model_summarizer,
)
from threadline.runtime.editing import EditingFlow
from threadline.runtime.held_turns import ApprovalFlow
from threadline.runtime.locations import (
    DEFAULT_DATABASE,
    LOCAL_AGENT_ID,
    LOCAL_TENANT_ID,
    LOCAL_USER_ID,
    STORE_ENV_VARS,
    default_database_path,
    default_store_url,
    user_data_dir,
)
from threadline.runtime.settings import DEFAULT_FLUSH_INTERVAL, AgentSettings, PersistencePlugin
from threadline.runtime.transcript import StoreTranscript
from threadline.runtime.turn import stream_turn
from threadline.store import Store
from threadline.store.follow import ReplyUpdate
from threadline.storekit.window import select_window

if TYPE_CHECKING:
    from threadline.runtime.builder import AgentBuilder, quick_agent

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_FLUSH_INTERVAL",
    "LOCAL_AGENT_ID",
    "LOCAL_TENANT_ID",
    "LOCAL_USER_ID",
    "STORE_ENV_VARS",
    "Agent",
    "AgentBuilder",
    "AgentSettings",
    "PersistencePlugin",
    "default_database_path",
    "default_store_url",
    "quick_agent",
    "user_data_dir",
]


def __getattr__(name: str) -> object:
    # The builder imports this module: its names load on first use, with no import cycle.
    if name in ("AgentBuilder", "quick_agent"):
        from threadline.runtime import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _system_message_id(session_id: str) -> str:
    # One deterministic id per session: two first turns racing save the prompt once.
    return str(uuid.uuid5(uuid.UUID(session_id), "threadline:system-prompt"))


class Agent(ApprovalFlow, EditingFlow):
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
        return self.persistence.message(session_id, role, content, **fields)

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
            window, complete = await self._load(sid)
        except BaseException:
            await user_saved  # never leave the write behind: durable, or its error raised
            raise
        history = select_window([m for m in window if m.id != user.id] + [user], settings.window)
        # System messages first (a prompt added to an older session is still the first).
        history.sort(key=lambda m: m.role != "system")
        try:
            history = await self._fit(sid, history, complete)
        except BaseException:
            await user_saved
            raise
        turn = stream_turn(
            StoreTranscript(p, sid, history, settings.flush_interval),
            self._turn_settings(sid),
            request_message_id=user.id,
            before_first_token=user_saved,
        )
        async with contextlib.aclosing(turn):
            async for piece in turn:
                yield piece

    def _budget(self) -> int | None:
        """The most tokens a turn sends or checks before compacting (``None``: no budget)."""
        s = self.settings
        limits = [n for n in (s.window_tokens, s.compaction and s.compaction.max_tokens) if n]
        return max(limits) if limits else None

    async def _load(self, sid: str) -> tuple[list[Message], bool]:
        """The stored window a turn starts from, and whether it is all the model may see."""
        s, tenant = self.settings, self.persistence.tenant_id
        budget = self._budget()
        if budget is None or s.window is not None:
            return await self.store.load_window(tenant, sid, s.window), True
        return await load_budgeted(self.store, tenant, sid, budget, s.token_counter)

    async def _fit(self, sid: str, history: list[Message], complete: bool) -> list[Message]:
        """The history a request sends: compacted and cut to the token window if configured."""
        s, p = self.settings, self.persistence
        if self._budget() is None:
            return history

        async def reload() -> list[Message]:
            return await self.store.load_window(p.tenant_id, sid, None)

        return await fit_history(
            self.store,
            history,
            compaction=s.compaction,
            window_tokens=s.window_tokens,
            counter=s.token_counter,
            summarizer=model_summarizer(
                s.provider, s.model, store=self.store, user_id=p.user_id, agent_id=p.agent_id
            ),
            user_id=p.user_id,
            agent_id=p.agent_id,
            reload=None if complete else reload,
        )

    async def compact(
        self, session_id: IdLike | None = None, *, keep_rounds: int | None = None
    ) -> Message | None:
        """Summarize the session's rounds before the last ``keep_rounds`` now and store the
        summary; returns it (``None``: nothing older). See :mod:`threadline.runtime.compaction`."""
        sid = check_id(session_id or self.session_id, "session_id")
        c, p = self.settings.compaction, self.persistence
        summarizer = (c.summarizer if c else None) or model_summarizer(
            self.settings.provider,
            self.settings.model,
            store=self.store,
            user_id=p.user_id,
            agent_id=p.agent_id,
        )
        keep = keep_rounds if keep_rounds is not None else (c.keep_rounds if c else 2)
        return await compact_session(
            self.store,
            p.tenant_id,
            sid,
            summarizer,
            keep_rounds=keep,
            user_id=p.user_id,
            agent_id=p.agent_id,
        )

    def follow(
        self, session_id: IdLike | None = None, *, wait_next: bool = False
    ) -> AsyncIterator[ReplyUpdate]:
        """Follow the session's latest reply as it streams, from any process: the text so
        far, then each new piece, the last update with the final status (or, with
        ``wait_next``, the next reply). See :meth:`threadline.Store.follow_reply`."""
        sid = check_id(session_id or self.session_id, "session_id")
        return self.store.follow_reply(self.persistence.tenant_id, sid, wait_next=wait_next)
