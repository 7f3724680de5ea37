"""Manual persistence: save and read a conversation yourself (MoFA's ``PersistenceContext``).

Open a context on a store for one user, tenant and agent; it creates a session, or
resumes the given one when this tenant already has it::

    ctx = await PersistenceContext.open(store, user_id=u, tenant_id=t, agent_id=a)
    await ctx.save_user_message("hi")
    await ctx.save_assistant_message("hello", metadata={"model": "gpt-4o-mini"})
    history = await ctx.get_history(last_rounds=2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadline.errors import ConflictError
from threadline.ids import IdLike, check_id, optional_id
from threadline.models import Message, MessageStatus, Role, Session, ToolCall
from threadline.runtime.tokens import TokenCounter, estimate_tokens, message_tokens
from threadline.store import Store
from threadline.store.branching import pop_last
from threadline.storekit.window import select_token_window

__all__ = ["PersistenceContext"]


class PersistenceContext:
    """Saves the messages of one session and reads its history back."""

    def __init__(
        self,
        store: Store,
        session: Session,
        *,
        user_id: str | None,
        agent_id: str | None,
        interrupted: int = 0,
    ) -> None:
        self.store = store
        self.session = session
        self.user_id = user_id
        self.agent_id = agent_id
        self.interrupted = interrupted
        """How many replies left ``streaming`` by a crash were marked ``interrupted`` on open."""

    def __repr__(self) -> str:
        return f"<PersistenceContext session={self.session.id} tenant={self.session.tenant_id}>"

    @classmethod
    async def open(
        cls,
        store: Store,
        *,
        tenant_id: IdLike,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        session_id: IdLike | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> PersistenceContext:
        """Open a new session, or resume ``session_id`` when this tenant has it.

        A ``session_id`` this tenant does not have yet is created with that id. Replies
        a crashed process left ``streaming`` are marked ``interrupted``.
        """
        tenant = check_id(tenant_id, "tenant_id")
        user = optional_id(user_id, "user_id")
        agent = optional_id(agent_id, "agent_id")
        interrupted = 0
        session = None
        if session_id is not None:
            sid = check_id(session_id, "session_id")
            session = await store.get_session(tenant, sid)
            if session is not None:
                if user is not None and session.user_id not in (None, user):
                    raise ConflictError(f"session {sid} belongs to another user")
                interrupted = await store.interrupt_streaming(tenant, sid)
            else:
                session = Session(
                    id=sid,
                    tenant_id=tenant,
                    user_id=user,
                    agent_id=agent,
                    title=title,
                    metadata=metadata or {},
                )
                session = await store.create_session(session)
        else:
            session = await store.create_session(
                Session(
                    tenant_id=tenant,
                    user_id=user,
                    agent_id=agent,
                    title=title,
                    metadata=metadata or {},
                )
            )
        return cls(store, session, user_id=user, agent_id=agent, interrupted=interrupted)

    @property
    def session_id(self) -> str:
        """The current session's id."""
        return self.session.id

    @property
    def tenant_id(self) -> str:
        """The tenant every read and write is scoped to."""
        return self.session.tenant_id

    def message(
        self,
        role: Role,
        content: str = "",
        *,
        metadata: Mapping[str, Any] | None = None,
        tool_calls: Sequence[ToolCall] = (),
        tool_call_id: str | None = None,
        name: str | None = None,
        status: MessageStatus = "complete",
        message_id: IdLike | None = None,
    ) -> Message:
        """Build (not save) a message of this session, stamped with its user and agent."""
        extra: dict[str, Any] = {} if message_id is None else {"id": message_id}
        return Message(
            session_id=self.session.id,
            tenant_id=self.session.tenant_id,
            role=role,
            content=content,
            user_id=self.user_id,
            agent_id=self.agent_id,
            tool_calls=tool_calls,
            tool_call_id=tool_call_id,
            name=name,
            status=status,
            metadata=metadata or {},
            **extra,
        )

    async def save(self, message: Message) -> Message:
        """Append a message built by :meth:`message`; return it with its ``seq``."""
        return await self.store.save_message(message)

    async def save_system_message(
        self, content: str, *, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Save a system prompt; return the message id."""
        return (await self.save(self.message("system", content, metadata=metadata))).id

    async def save_user_message(
        self, content: str, *, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Save what the user said; return the message id."""
        return (await self.save(self.message("user", content, metadata=metadata))).id

    async def save_assistant_message(
        self,
        content: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        tool_calls: Sequence[ToolCall] = (),
        status: MessageStatus = "complete",
    ) -> str:
        """Save the assistant's reply (with any tool calls); return the message id."""
        message = self.message(
            "assistant", content, metadata=metadata, tool_calls=tool_calls, status=status
        )
        return (await self.save(message)).id

    async def save_tool_message(
        self,
        tool_call_id: str,
        content: str,
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Save a tool's result for the call ``tool_call_id``; return the message id."""
        message = self.message(
            "tool", content, tool_call_id=tool_call_id, name=name, metadata=metadata
        )
        return (await self.save(message)).id

    async def get_history(
        self,
        last_rounds: int | None = None,
        *,
        max_tokens: int | None = None,
        counter: TokenCounter | None = None,
    ) -> list[Message]:
        """The session's messages, oldest first; the last ``last_rounds`` rounds if given,
        then the newest whole rounds within ``max_tokens`` (see ``select_token_window``)."""
        history = await self.store.load_window(self.tenant_id, self.session.id, last_rounds)
        if max_tokens is None:
            return history
        count = counter or estimate_tokens
        return select_token_window(history, max_tokens, lambda m: message_tokens(m, count))

    async def pop_last(self, *, round: bool = False) -> list[Message]:
        """Remove the session's last message (``round=True``: its last round, from the last
        user message on); return what went, oldest first. See :func:`pop_last`."""
        return await pop_last(self.store, self.tenant_id, self.session.id, round=round)

    async def new_session(
        self, *, title: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Start a fresh session for the same user and agent; return its id."""
        self.session = await self.store.create_session(
            Session(
                tenant_id=self.tenant_id,
                user_id=self.user_id,
                agent_id=self.agent_id,
                title=title,
                metadata=metadata or {},
            )
        )
        return self.session.id
