"""What a node gets: the run's history, state, model, tools and persistency.

A :class:`GraphContext` belongs to one run of one session; nothing in it is shared with
other runs, so one :class:`~threadline.graph.GraphAgent` serves many sessions at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from threadline.graph.errors import GraphError
from threadline.graph.storage import CheckpointScope
from threadline.graph.strategy import Node
from threadline.ids import new_id
from threadline.models import Message, MessageStatus, Role, ToolCall
from threadline.providers import ChatRequest, StreamEnd, TextDelta
from threadline.streaming import RequestTimer
from threadline.tools import Tool

if TYPE_CHECKING:
    from threadline.graph.agent import GraphAgent
    from threadline.graph.handle import PersistencyHandle

__all__ = ["MAX_TOOL_ROUNDS", "GraphContext", "RunState"]

MAX_TOOL_ROUNDS = 8
"""How many rounds of tool calls one ``ctx.llm`` call follows before it stops asking."""


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
        model asked again. A reply cut short is appended with status ``error`` or
        ``cancelled``.
        """
        if prompt is not None:
            self.append("user", prompt)
        agent = self.agent
        offered = list(agent.tools.values()) if tools else []
        for _ in range(MAX_TOOL_ROUNDS + 1):
            request = ChatRequest(
                model=model or agent.model,
                messages=list(self._run.history),
                tools=[t.spec for t in offered],
                temperature=agent.temperature,
                max_tokens=agent.max_tokens,
            )
            parts: list[str] = []
            end: StreamEnd | None = None
            failure: BaseException | None = None
            timer = RequestTimer()
            stream = agent.provider.stream(request)
            try:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        if event.text:
                            timer.token()
                            parts.append(event.text)
                            yield event.text
                    else:
                        end = event
            except BaseException as exc:
                failure = exc
                raise
            finally:
                timer.stop()
                aclose: Callable[[], Any] | None = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
                status: MessageStatus = "complete"
                if failure is not None:
                    status = "error" if isinstance(failure, Exception) else "cancelled"
                reply = self.append(
                    "assistant",
                    "".join(parts),
                    tool_calls=end.tool_calls if end else (),
                    status=status,
                    metadata={"model": end.model if end and end.model else request.model},
                )
                await agent.record_api_call(self._run.scope, request, reply, timer, end, failure)
            if end is None or not end.tool_calls or not offered:
                return
            for call in end.tool_calls:
                await self._run_tool(call, raise_errors=False)

    async def call_tool(self, tool: str | Tool, /, **arguments: Any) -> str:
        """Run one of the agent's tools directly; the call and its result join the history.

        Recorded like a model's tool call, so rollbacks can undo it. Errors propagate.
        """
        name = tool.name if isinstance(tool, Tool) else tool
        call = ToolCall(id=f"call_{new_id()}", name=name, arguments=arguments)
        self.append("assistant", "", tool_calls=[call], metadata={"direct": True})
        return await self._run_tool(call, raise_errors=True)

    async def _run_tool(self, call: ToolCall, *, raise_errors: bool) -> str:
        tool = self.agent.tools.get(call.name)
        meta: dict[str, Any] = {}
        error: Exception | None = None
        if tool is None:
            result, meta = f"error: no tool named {call.name!r}", {"error": "unknown_tool"}
            error = GraphError(f"the agent has no tool named {call.name!r}")
        else:
            try:
                result = await tool.call(call.arguments)
            except Exception as exc:  # the model sees the failure and may recover
                result, meta = f"error: {type(exc).__name__}: {exc}", {"error": type(exc).__name__}
                error = exc
        self.append("tool", result, tool_call_id=call.id, name=call.name, metadata=meta)
        if raise_errors and error is not None:
            raise error
        return result

    # -- persistency ----------------------------------------------------------------------

    def persistency(self) -> PersistencyHandle:
        """Checkpoints of this run: create, list, roll back, set the execution point.

        Raises :class:`~threadline.errors.ConfigurationError` without Persistency installed.
        """
        return self.agent.persistency_for(self._run)
