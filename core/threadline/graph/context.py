"""What a node gets: the run's history, state, model, tools and persistency.

A :class:`GraphContext` belongs to one run of one session; nothing in it is shared with
other runs, so one :class:`~threadline.graph.GraphAgent` serves many sessions at once.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from threadline.errors import ValidationError
from threadline.graph.errors import GraphError, NondeterministicNodeError, ToolRejectedError
from threadline.graph.interrupts import (
    NodeExecution,
    NodeInterrupt,
    StepRecord,
    check_value,
    step_messages,
)
from threadline.graph.storage import CheckpointScope
from threadline.graph.strategy import Node
from threadline.models import ApiCall, Message, Role, ToolCall
from threadline.runtime.streaming import BufferedReply
from threadline.runtime.tools import Tool
from threadline.runtime.turn import MAX_TOOL_ROUNDS, TurnSettings, answer_call, stream_turn

if TYPE_CHECKING:
    from threadline.graph.agent import GraphAgent
    from threadline.graph.handle import PersistencyHandle
    from threadline.graph.parallel import PendingFanOut

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
    execution: NodeExecution | None = None
    """The current node's execution: its steps and interrupts (replayed after a resume)."""
    fanout: PendingFanOut | None = None
    """A fan-out under way: the run goes to its join once every branch has finished."""

    def begin_node(self) -> NodeExecution:
        """The execution of ``node`` starting now, or the one a resume restored."""
        if self.execution is None:
            self.execution = NodeExecution(
                origin=self.head, base_history=list(self.history), base_state=dict(self.state)
            )
        return self.execution


_MISSING = object()


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

    # -- waiting for a person -------------------------------------------------------------

    async def interrupt(self, payload: Any = None) -> Any:
        """Pause the run until a person answers; return their answer (the resume value).

        The first time, the run stops here: a checkpoint marks it waiting with ``payload``
        (plain JSON) and ``GraphAgent.run`` returns an
        :class:`~threadline.graph.Interrupted`. ``agent.resume(...)`` re-enters this node
        from its start: steps made before (``llm``, ``call_tool``, ``once``) are replayed
        from the checkpoint, and this call returns the value. Needs Persistency on a store.
        """
        check_value(payload, "interrupt payload")
        execution = self._execution()
        index = execution.interrupts
        execution.interrupts += 1
        if index < len(execution.values):
            return execution.values[index]
        raise NodeInterrupt(payload, index)

    async def once(self, key: str, function: Callable[[], Any]) -> Any:
        """Run ``function()`` (sync or async) once per node, even across an interrupt.

        Its result is saved with an interrupt that follows and returned again when the
        node is re-entered, without calling ``function`` (so it must be serialisable).
        """
        if not isinstance(key, str) or not key:
            raise ValidationError("ctx.once needs a non-empty str key")
        found = self._replay(f"once:{key}")
        if found is not _MISSING:
            return found
        mark = self._step_start()
        try:
            result = function()
            if inspect.isawaitable(result):
                result = await result
        finally:
            self._step_depth(-1)
        self._step_end(mark, f"once:{key}", result)
        return result

    def _execution(self) -> NodeExecution:
        execution = self._run.execution
        if execution is None:
            raise GraphError("ctx.interrupt and ctx.once work inside a running node")
        return execution

    def _replay(self, key: str) -> Any:
        """The result of the next step when it is replayed after a resume, else ``_MISSING``."""
        execution = self._run.execution
        if execution is None or execution.depth or len(execution.steps) >= len(execution.replay):
            return _MISSING
        index = len(execution.steps)
        record = execution.replay[index]
        if record.key != key:
            raise NondeterministicNodeError(
                f"node {self.node!r} was re-entered after an interrupt and its step "
                f"#{index} is {key!r}, but before the interrupt it was {record.key!r}: a "
                "node must make the same steps up to its interrupt"
            )
        start, end = step_messages(execution.replay, index)
        messages = execution.replay_messages[start:end]
        self._run.history.extend(messages)
        execution.steps.append(record)
        execution.messages.extend(messages)
        return self.agent.serializer.decode(record.result)

    def _step_start(self) -> tuple[list[Message], int] | None:
        execution = self._run.execution
        if execution is None:
            return None
        execution.depth += 1
        if execution.depth > 1:
            return None
        return self._run.history, len(self._run.history)

    def _step_depth(self, change: int) -> None:
        if self._run.execution is not None:
            self._run.execution.depth += change

    def _step_end(self, mark: tuple[list[Message], int] | None, key: str, result: Any) -> None:
        execution = self._run.execution
        if execution is None or mark is None:
            return
        history, before = mark
        appended = self._run.history[before:] if self._run.history is history else []
        encoded = self.agent.serializer.encode(result, f"the result of step {key!r}")
        execution.steps.append(StepRecord(key, encoded, len(appended)))
        execution.messages.extend(appended)

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
        found = self._replay("llm")
        if found is not _MISSING:
            if found:
                yield found
            return
        mark = self._step_start()
        parts: list[str] = []
        try:
            async with contextlib.aclosing(
                self._llm_turn(prompt, tools=tools, model=model)
            ) as pieces:
                async for piece in pieces:
                    parts.append(piece)
                    yield piece
        finally:
            self._step_depth(-1)
        self._step_end(mark, "llm", "".join(parts))

    async def _llm_turn(
        self, prompt: str | None, *, tools: bool, model: str | None
    ) -> AsyncGenerator[str, None]:
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
        A tool that needs approval first waits for a person (``ctx.interrupt`` with a
        payload of ``type`` ``approval``; ``agent.approve/reject(call_id)`` answer it): an
        approval may change the arguments, a rejection raises :class:`ToolRejectedError`.
        Before an interrupt a finished call is a step: re-entering the node replays it.
        """
        name = tool.name if isinstance(tool, Tool) else tool
        key = f"tool:{name}"
        found = self._replay(key)
        if found is not _MISSING:
            return str(found)
        mark = self._step_start()
        try:
            result = await self._call_tool(name, arguments)
        finally:
            self._step_depth(-1)
        self._step_end(mark, key, result)
        return result

    async def _call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        if name not in self.agent.tools:
            raise GraphError(f"the agent has no tool named {name!r}")
        call = ToolCall(id=self._call_id(), name=name, arguments=arguments)
        approval: dict[str, Any] | None = None
        if self.agent.approval.needs(call, self.agent.tools):
            decision = await self.interrupt(
                {"type": "approval", "node": self.node, "calls": [call.to_dict()]}
            )
            approval = _decision(decision, call)
            if approval.get("arguments") is not None:
                call = ToolCall(id=call.id, name=name, arguments=approval["arguments"])
        self.append("assistant", "", tool_calls=[call], metadata={"direct": True})
        if approval is not None and not approval["approved"]:
            reason = str(approval.get("reason") or "rejected")
            self.append(
                "tool",
                f"rejected: {reason}",
                tool_call_id=call.id,
                name=name,
                metadata={"error": "rejected", "approval": approval},
            )
            raise ToolRejectedError(name, call.id, reason)
        message, outcome = await answer_call(_RunTranscript(self), self.agent.tools, call)
        if approval is not None:
            self._run.history[-1] = attrs.evolve(
                message, metadata={**message.metadata, "approval": approval}
            )
        if outcome.error is not None:
            raise outcome.error
        return outcome.content

    def _call_id(self) -> str:
        """A call id that is the same when the node is re-entered after an interrupt."""
        execution = self._run.execution
        if execution is None:
            return f"call_{uuid.uuid4().hex}"
        seed = uuid.UUID(execution.origin or self.session_id)
        return f"call_{uuid.uuid5(seed, f'{self.node}#{len(execution.steps)}').hex}"

    # -- persistency ----------------------------------------------------------------------

    def persistency(self) -> PersistencyHandle:
        """Checkpoints of this run: create, list, roll back, set the execution point.

        Raises :class:`~threadline.errors.ConfigurationError` without Persistency installed.
        """
        return self.agent.persistency_for(self._run)


def _decision(value: Any, call: ToolCall) -> dict[str, Any]:
    """An approval decision (what ``agent.approve/reject`` resume with), checked."""
    if not isinstance(value, dict) or not isinstance(value.get("approved"), bool):
        raise ValidationError(
            f"tool call {call.id} waits for an approval decision "
            '({"approved": true|false, ...}); got ' + f"{value!r:.80}"
        )
    arguments = value.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        raise ValidationError(f"approved arguments of {call.id} must be an object")
    decision: dict[str, Any] = {"approved": value["approved"], "call_id": call.id}
    if arguments is not None:
        decision["arguments"] = arguments
        decision["original_arguments"] = call.arguments
    if value.get("reason") is not None:
        decision["reason"] = str(value["reason"])
    return decision


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
