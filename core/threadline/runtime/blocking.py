"""The blocking agent and persistence context: chat and save from synchronous code.

    agent = threadline.quick_agent("You are helpful.").build_sync()
    print(agent.chat("hi"))
    for piece in agent.chat_stream("tell me more"):
        print(piece, end="")

The async :class:`~threadline.runtime.agent.Agent` keeps its names (``await agent.chat``);
the blocking one is a separate object with the same methods, built on the one
background loop (:mod:`threadline.blocking`). Agents and contexts left open are closed at
interpreter exit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadline.blocking.facade import BlockingFacade, ClosingFacade, blocking, same, streaming
from threadline.blocking.loop import run, track
from threadline.ids import IdLike
from threadline.models import Session
from threadline.runtime.agent import Agent
from threadline.runtime.context import PersistenceContext
from threadline.runtime.settings import AgentSettings, PersistencePlugin
from threadline.store.blocking import BlockingStore

__all__ = ["BlockingAgent", "BlockingPersistenceContext"]


class BlockingAgent(ClosingFacade[Agent], wraps=Agent):
    """An :class:`~threadline.runtime.agent.Agent` for blocking code: ``chat`` returns the
    reply, ``chat_stream`` / ``approve`` / ``reject`` / ``continue_turn`` return iterators
    of str. Build it with ``AgentBuilder.build_sync()``; safe from several threads."""

    def __init__(self, target: Agent) -> None:
        super().__init__(target)
        track(target, target.close)

    @property
    def settings(self) -> AgentSettings:
        return self.target.settings

    @property
    def persistence(self) -> PersistencePlugin:
        return self.target.persistence

    @property
    def session_id(self) -> str:
        """The default session of ``chat`` and ``chat_stream``."""
        return self.target.session_id

    @property
    def store(self) -> BlockingStore:
        """The agent's store, blocking (closed with the agent when the builder opened it)."""
        return BlockingStore(self.target.store)

    open_session = blocking(Agent.open_session)
    history = blocking(Agent.history)
    chat = blocking(Agent.chat)
    chat_stream = streaming(Agent.chat_stream)
    pending_approvals = blocking(Agent.pending_approvals)
    approve = streaming(Agent.approve)
    reject = streaming(Agent.reject)
    continue_turn = streaming(Agent.continue_turn)
    follow = streaming(Agent.follow)
    regenerate = blocking(Agent.regenerate)
    regenerate_stream = streaming(Agent.regenerate_stream)
    edit = blocking(Agent.edit)
    edit_stream = streaming(Agent.edit_stream)
    compact = blocking(Agent.compact)


class BlockingPersistenceContext(BlockingFacade[PersistenceContext], wraps=PersistenceContext):
    """A :class:`~threadline.runtime.context.PersistenceContext` whose saves and reads block."""

    @classmethod
    def open(
        cls,
        store: BlockingStore,
        *,
        tenant_id: IdLike,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        session_id: IdLike | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> BlockingPersistenceContext:
        """Open a new session, or resume ``session_id`` (as ``PersistenceContext.open``)."""
        context = PersistenceContext.open(
            store.target,
            tenant_id=tenant_id,
            user_id=user_id,
            agent_id=agent_id,
            session_id=session_id,
            title=title,
            metadata=metadata,
        )
        return cls(run(context))

    @property
    def store(self) -> BlockingStore:
        return BlockingStore(self.target.store)

    @property
    def session(self) -> Session:
        return self.target.session

    @property
    def session_id(self) -> str:
        """The current session's id."""
        return self.target.session_id

    @property
    def tenant_id(self) -> str:
        """The tenant every read and write is scoped to."""
        return self.target.tenant_id

    @property
    def user_id(self) -> str | None:
        return self.target.user_id

    @property
    def agent_id(self) -> str | None:
        return self.target.agent_id

    @property
    def interrupted(self) -> int:
        """How many replies left ``streaming`` by a crash were marked ``interrupted`` on open."""
        return self.target.interrupted

    message = same(PersistenceContext.message)
    save = blocking(PersistenceContext.save)
    save_system_message = blocking(PersistenceContext.save_system_message)
    save_user_message = blocking(PersistenceContext.save_user_message)
    save_assistant_message = blocking(PersistenceContext.save_assistant_message)
    save_tool_message = blocking(PersistenceContext.save_tool_message)
    get_history = blocking(PersistenceContext.get_history)
    pop_last = blocking(PersistenceContext.pop_last)
    new_session = blocking(PersistenceContext.new_session)
