"""What a node gets: the run's history, state, model, tools and persistency.

A :class:`GraphContext` belongs to one run of one session; nothing in it is shared with
other runs, so one :class:`~threadline.graph.GraphAgent` serves many sessions at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from threadline.graph.errors import GraphError
from threadline.graph.storage import CheckpointScope
from threadline.graph.strategy import Node
from threadline.ids import new_id
from threadline.models import ApiCall, Message, Role, ToolCall
from threadline.runtime.streaming import BufferedReply
from threadline.runtime.tools import Tool
from threadline.runtime.turn import MAX_TOOL_ROUNDS, TurnSettings, answer_call, stream_turn

if TYPE_CHECKING:
    from threadline.graph.agent import GraphAgent
    from threadline.graph.handle import PersistencyHandle

__all__ = ["MAX_TOOL_ROUNDS", "GraphContext", "RunState"]


@attrs.define(eq=False)
class RunState:
    """The mutable state of one run: where it is, its history and key/value state."""

    scope: CheckpointScope
    node: Node
    input: Any
    history: list[Message]
    state: dict[str, Any]
    head: str | None = None
    """The id of the run's latest checkpoint: the parent of the next one."""
    previous: str | None = None
    """The name of the node that ran before ``node``."""
    jump: tuple[Node, Any] | None = None
    """Where to go after the current node instead of following an edge."""
    jump_saved: bool = False
    """Whether ``jump`` is already checkpointed (a rollback writes its checkpoint at once)."""


class GraphContext:
    """The agent context handed to every node: ``async def node(ctx, input) -> output``."""

    def __init__(self, agent: GraphAgent, run: RunState) -> None:
        self.agent = agent
        self._run = run

    def __repr__(self) -> str:
        return f"<GraphContext session={self.session_id} node={self.node!r}>"

    # -- identity -------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._run.scope.session_id

    @property
    def tenant_id(self) -> str:
        return self._run.scope.tenant_id

    @property
    def user_id(self) -> str | None:
        return self._run.scope.user_id

    @property
    def agent_id(self) -> str:
        return self._run.scope.agent_id

    @property
    def node(self) -> str:
        """The name of the node running now."""
        return self._run.node.name

    # -- history and state ----------------------------------------------------------------

    @property
    def history(self) -> tuple[Message, ...]:
        """The run's message history, oldest first (change it with :meth:`append`)."""
        return tuple(self._run.history)

    @property
    def state(self) -> dict[str, Any]:
        """The run's key/value state; checkpoints save it, so keep values serialisable."""
        return self._run.state

    def message(self, role: Role, content: str = "", **fields: Any) -> Message:
        """A message of this session, tenant, user and agent (not appended)."""
        scope = self._run.scope
        return Message(
            session_id=scope.session_id,
            tenant_id=scope.tenant_id,
            user_id=scope.user_id,
            agent_id=scope.agent_id,
            role=role,
            content=content,
            **fields,
        )

    def append(self, role: Role, content: str = "", **fields: Any) -> Message:
        """Append a new message to the history and return it."""
        return self.append_message(self.message(role, content, **fields))

    def append_message(self, message: Message) -> Message:
        """Append ``message`` as it is."""
        self._run.history.append(message)
        return message

    def set_history(self, messages: Sequence[Message]) -> None:
        """Replace the whole history (e.g. to compress it)."""
        self._run.history = list(messages)

    # -- model and tools ------------------------------------------------------------------

    async def llm(
        self, prompt: str | None = None, *, tools: bool = True, model: str | None = None
    ) -> str:
        """Ask the model (``prompt`` is appended as a user message first); return its reply.

        The reply, and any tool calls with their results, are appended to the history.
        """
        parts = [piece async for piece in self.llm_stream(prompt, tools=tools, model=model)]
        return "".join(parts)

    async def llm_stream(
        self, prompt: str | None = None, *, tools: bool = True, model: str | None = None
    ) -> AsyncIterator[str]:
        """Like :meth:`llm`, yielding the reply's text as it streams.

        Tool calls the model makes are run (at most :data:`MAX_TOOL_ROUNDS` rounds) and the
        model asked again; calls not run (``tools=False``, or the limit reached) are
        answered ``error: not run``. A reply cut short is appended with status ``error`` or
        ``cancelled``. Each request is recorded as an ApiCall where the storage is a Store.
        """
        if prompt is not None:
            self.append("user", prompt)
        agent = self.agent
        turn = stream_turn(
            _RunTranscript(self),
            TurnSettings(
                provider=agent.provider,
                model=model or agent.model,
                tools=agent.tools,
                run_tools=tools,
                temperature=agent.temperature,
                max_tokens=agent.max_tokens,
            ),
        )
        async with contextlib.aclosing(turn):
            async for piece in turn:
                yield piece

    async def call_tool(self, tool: str | Tool, /, **arguments: Any) -> str:
        """Run one of the agent's tools directly; the call and its result join the history.

        Recorded like a model's tool call, so rollbacks can undo it. Errors propagate.
        """
        name = tool.name if isinstance(tool, Tool) else tool
        call = ToolCall(id=f"call_{new_id()}", name=name, arguments=arguments)
        self.append("assistant", "", tool_calls=[call], metadata={"direct": True})
        _, outcome = await answer_call(_RunTranscript(self), self.agent.tools, call)
        if outcome.unknown_tool:
            raise GraphError(f"the agent has no tool named {name!r}")
        if outcome.error is not None:
            raise outcome.error
        return outcome.content

    # -- persistency ----------------------------------------------------------------------

    def persistency(self) -> PersistencyHandle:
        """Checkpoints of this run: create, list, roll back, set the execution point.

        Raises :class:`~threadline.errors.ConfigurationError` without Persistency installed.
        """
        return self.agent.persistency_for(self._run)


class _RunTranscript:
    """A node's :class:`~threadline.runtime.turn.Transcript`: messages join the run's history (its
    checkpoints persist them); API calls go to the store when Persistency has one."""

    def __init__(self, ctx: GraphContext) -> None:
        self.ctx = ctx

    def messages(self) -> tuple[Message, ...]:
        return self.ctx.history

    def message(self, role: Role, content: str = "", **fields: Any) -> Message:
        return self.ctx.message(role, content, **fields)

    def start_reply(self, template: Message) -> BufferedReply:
        return BufferedReply(template)

    async def save(self, message: Message) -> Message:
        return message

    def append(self, message: Message) -> None:
        self.ctx.append_message(message)

    async def save_api_call(self, api_call: ApiCall) -> None:
        await self.ctx.agent.record_api_call(api_call)
