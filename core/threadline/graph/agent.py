"""GraphAgent: runs a strategy node by node, with features such as Persistency.

::

    agent = GraphAgent(strategy, provider="echo", tools=[book_room],
                       features=[Persistency(storage="sqlite:///chat.db")])
    result = await agent.run("hello", session_id=s)

Ids: checkpoints and sessions are written as ``tenant_id`` (default
:data:`~threadline.runtime.agent.LOCAL_TENANT_ID`, the fixed local tenant ``quick_agent`` uses),
``user_id`` (default :data:`~threadline.runtime.agent.LOCAL_USER_ID`) and ``agent_id`` (default
:func:`default_agent_id` of the strategy's name, stable across processes). The provider
is ``provider`` (an object or a registered name), else ``openai`` when
``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set, else ``echo``; the model is ``model``,
else ``OPENAI_MODEL``, else the provider's default.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from threadline.errors import ConfigurationError, ConflictError
from threadline.graph.context import GraphContext, RunState
from threadline.graph.errors import InterruptError
from threadline.graph.features import Feature
from threadline.graph.handle import PersistencyHandle
from threadline.graph.interrupts import Interrupted, NodeInterrupt, is_interrupt
from threadline.graph.parallel import BranchResult, PendingFanOut, changed_state
from threadline.graph.persistency import Persistency
from threadline.graph.rollback import Inverse, collect_inverses
from threadline.graph.serialization import Serializer
from threadline.graph.storage import CheckpointScope, StoreBackend
from threadline.graph.strategy import Node, Strategy
from threadline.ids import IdLike, check_id, new_id, optional_id
from threadline.models import ApiCall, ToolCall
from threadline.runtime.agent import LOCAL_TENANT_ID, LOCAL_USER_ID
from threadline.runtime.approvals import ApprovalPolicy
from threadline.runtime.providers import Provider, resolve_provider
from threadline.runtime.tools import Tool, as_tools
from threadline.runtime.waiting import (
    NotWaitingError,
    WaitingRun,
    list_waiting,
    record_decision,
    record_resume,
)
from threadline.store import Store

__all__ = ["GraphAgent", "default_agent_id"]

_AGENT_NAMESPACE = uuid.UUID("0199a1c0-5e1f-7c3a-9b7e-6a1d2c3b4a59")


def default_agent_id(strategy_name: str) -> str:
    """The agent id a GraphAgent uses by default: a UUIDv5 of the strategy's name."""
    return str(uuid.uuid5(_AGENT_NAMESPACE, strategy_name))


class GraphAgent:
    """An agent whose behaviour is a :class:`Strategy`; one instance serves many sessions."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        model: str | None = None,
        provider: Provider | str | None = None,
        provider_options: Mapping[str, Any] | None = None,
        tools: Iterable[Callable[..., Any] | Tool] = (),
        features: Iterable[Feature] = (),
        system_prompt: str | None = None,
        tenant_id: IdLike = LOCAL_TENANT_ID,
        user_id: IdLike | None = LOCAL_USER_ID,
        agent_id: IdLike | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        approval: Iterable[str | Callable[..., Any] | Tool] = (),
        approval_policy: Callable[[ToolCall], Any] | None = None,
    ) -> None:
        strategy.validate()
        self.strategy = strategy
        self.features = tuple(features)
        installed = [f for f in self.features if isinstance(f, Persistency)]
        if len(installed) > 1:
            raise ConfigurationError("install Persistency once per agent")
        self._persistency = installed[0] if installed else None
        for feature in self.features:
            feature.check_strategy(strategy)
        self.tenant_id = check_id(tenant_id, "tenant_id")
        self.user_id = optional_id(user_id, "user_id")
        self.agent_id = check_id(agent_id or default_agent_id(strategy.name), "agent_id")
        self.provider, self._owns_provider = _resolve_provider(provider, provider_options, model)
        resolved = model or os.environ.get("OPENAI_MODEL") or self.provider.default_model
        if not resolved:
            raise ConfigurationError("no model: pass model=... or set OPENAI_MODEL")
        self.model: str = resolved
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.tools: dict[str, Tool] = as_tools(tools)
        explicit = self._persistency.rollback_tools if self._persistency else None
        self.inverses: dict[str, Inverse] = collect_inverses(self.tools, explicit)
        self.approval = ApprovalPolicy.of(approval, approval_policy)
        """Which ``ctx.call_tool`` calls wait for approval (besides tools marked so)."""

    @property
    def serializer(self) -> Serializer:
        """What encodes inputs, state and step results (Persistency's, else a default)."""
        if self._persistency is not None:
            return self._persistency.serializer
        if not hasattr(self, "_default_serializer"):
            self._default_serializer = Serializer()
        return self._default_serializer

    def __repr__(self) -> str:
        return f"<GraphAgent strategy={self.strategy.name!r} model={self.model!r}>"

    # -- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the features (a store Persistency opened) and a provider built from a name."""
        for feature in self.features:
            await feature.close()
        if self._owns_provider:
            await self.provider.aclose()

    async def __aenter__(self) -> GraphAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- persistency ----------------------------------------------------------------------

    def _scope(self, session_id: str) -> CheckpointScope:
        return CheckpointScope(
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            session_id=session_id,
            title=self.strategy.name,
        )

    def _feature(self) -> Persistency:
        if self._persistency is None:
            raise ConfigurationError(
                "Persistency is not installed: GraphAgent(..., features=[Persistency(...)])"
            )
        return self._persistency

    def persistency(self, session_id: IdLike) -> PersistencyHandle:
        """The checkpoints of ``session_id`` (this agent's tenant only), outside any run."""
        scope = self._scope(check_id(session_id, "session_id"))
        return PersistencyHandle(self, self._feature(), scope)

    def persistency_for(self, run: RunState) -> PersistencyHandle:
        """The checkpoints of a running session; what ``ctx.persistency()`` returns."""
        return PersistencyHandle(self, self._feature(), run.scope, run)

    # -- running --------------------------------------------------------------------------

    async def run(self, input: Any, *, session_id: IdLike | None = None) -> Any:
        """Run the strategy on ``input``; return what reaches the finish node.

        With Persistency installed, a ``session_id`` whose last run did not finish resumes
        at its latest checkpoint (its node, input, history and state; ``input`` is then
        not used) and nodes that completed before it are not run again. Without a
        ``session_id`` every run is a new session. Run a session once at a time: two
        concurrent runs of one session would both resume from the same checkpoint.

        A node calling ``ctx.interrupt`` stops the run: an :class:`Interrupted` is
        returned (and returned again, running nothing, until :meth:`resume`).
        """
        sid = check_id(session_id, "session_id") if session_id is not None else new_id()
        return await self._drive(sid, input)

    async def _drive(self, sid: str, input: Any) -> Any:
        scope = self._scope(sid)
        run = RunState(scope, node=self.strategy.start, input=input, history=[], state={})
        ctx = GraphContext(self, run)
        handle: PersistencyHandle | None = None
        if self._persistency is not None:
            self._persistency.check_strategy(self.strategy)  # nodes may have been added since
            await (await self._persistency.backend()).open_session(scope)
            handle = self.persistency_for(run)
        restored = await handle.resume() if handle is not None else None
        if restored is None:
            if self.system_prompt:
                run.history.append(ctx.message("system", self.system_prompt))
            run.node, run.input = await self.strategy.next_step(self.strategy.start, input)
        elif is_interrupt(restored):
            return Interrupted.from_checkpoint(restored)
        finish = self.strategy.finish
        while run.node is not finish:
            if run.fanout is not None:
                stopped = await self._join(run, handle)
                if stopped is not None:
                    return stopped
                continue
            node, value = run.node, run.input
            run.begin_node()
            for feature in self.features:
                await feature.before_node(ctx, node.name, value)
            try:
                output = await node.run(ctx, value)
            except NodeInterrupt as interrupt:
                return await self._interrupted(handle, interrupt)
            run.execution = None
            for feature in self.features:
                await feature.after_node(ctx, node.name, output)
            fan = self.strategy.fan_out_of(node, output) if run.jump is None else None
            if fan is not None:
                await self._start_fanout(run, handle, node.name, *fan)
                continue
            if run.jump is not None:
                (next_node, next_input), run.jump = run.jump, None
            else:
                next_node, next_input = await self.strategy.next_step(node, output)
            run.previous, run.node, run.input = node.name, next_node, next_input
            if handle is not None and self._feature().automatic:
                await handle.checkpoint_after_node()
            run.jump_saved = False
        if handle is not None:
            await handle.write_tombstone()
        return run.input

    async def _interrupted(
        self,
        handle: PersistencyHandle | None,
        interrupt: NodeInterrupt,
        extra: dict[str, Any] | None = None,
    ) -> Interrupted:
        if handle is None or not (await self._feature().backend()).persistent:
            raise ConfigurationError(
                "ctx.interrupt needs Persistency on a store: a waiting run must outlive "
                "this process"
            )
        return Interrupted.from_checkpoint(await handle.write_interrupt(interrupt, extra))

    # -- parallel branches ----------------------------------------------------------------

    async def _start_fanout(
        self,
        run: RunState,
        handle: PersistencyHandle | None,
        after: str,
        branches: list[tuple[Node, Any]],
        join: Node,
    ) -> None:
        """Checkpoint the branches about to run; the loop then runs them (see ``_join``)."""
        pending = PendingFanOut(
            id=new_id(),
            after=after,
            join=join,
            branches=branches,
            base_history=list(run.history),
            base_state=dict(run.state),
        )
        run.previous = after
        if handle is not None:
            await handle.write_fanout(pending)
        run.fanout, run.node, run.input = pending, join, None

    async def _join(self, run: RunState, handle: PersistencyHandle | None) -> Interrupted | None:
        """Run the branches not finished yet, at once; each one's end is checkpointed as it
        comes. Then go to the join with their outputs, or stop at a branch's interrupt."""
        pending = run.fanout
        assert pending is not None
        todo = [i for i in range(len(pending.branches)) if i not in pending.done]
        outcomes = await asyncio.gather(
            *(self._branch(run, handle, pending, i) for i in todo), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        interrupts = [o for o in failures if isinstance(o, _BranchInterrupt)]
        errors = [o for o in failures if not isinstance(o, _BranchInterrupt)]
        if errors:
            raise errors[0]
        if interrupts:
            first = min(interrupts, key=lambda b: b.index)
            branch_handle = self.persistency_for(first.run) if handle is not None else None
            extra = {"fanout_id": pending.id, "branch": first.index}
            return await self._interrupted(branch_handle, first.interrupt, extra)
        run.history, run.state, outputs = pending.merged()
        run.fanout, run.node, run.input = None, pending.join, outputs
        run.previous = pending.after
        if handle is not None and self._feature().automatic:
            run.head = pending.done[len(pending.branches) - 1].checkpoint_id or pending.id
            await handle.checkpoint_after_node()
        return None

    async def _branch(
        self, run: RunState, handle: PersistencyHandle | None, pending: PendingFanOut, index: int
    ) -> None:
        node, value = pending.branches[index]
        branch = RunState(
            run.scope,
            node=node,
            input=value,
            history=list(pending.base_history),
            state=dict(pending.base_state),
            head=pending.id,
            previous=pending.after,
            execution=pending.replay.pop(index, None),
        )
        if branch.execution is not None:
            branch.history = list(branch.execution.base_history)
        branch.begin_node()
        ctx = GraphContext(self, branch)
        for feature in self.features:
            await feature.before_node(ctx, node.name, value)
        try:
            output = await node.run(ctx, value)
        except NodeInterrupt as interrupt:
            raise _BranchInterrupt(index, interrupt, branch) from None
        for feature in self.features:
            await feature.after_node(ctx, node.name, output)
        stored = None
        if handle is not None:
            stored = await self.persistency_for(branch).write_branch(pending, index, output)
        pending.done[index] = BranchResult(
            output=output,
            messages=branch.history[len(pending.base_history) :],
            state=changed_state(pending.base_state, branch.state),
            checkpoint_id=stored.id if stored is not None else None,
        )

    # -- human in the loop ----------------------------------------------------------------

    async def _store(self) -> Store:
        backend = await self._feature().backend()
        if not isinstance(backend, StoreBackend):
            raise ConfigurationError(
                "resuming and approvals need Persistency on a threadline Store (a URL or "
                f"a Store), not {backend!r}"
            )
        return backend.store

    async def resume(self, ident: IdLike, value: Any = None) -> Any:
        """Answer the interrupt a run waits at and continue it; return like :meth:`run`.

        ``ident`` is the session id or the interrupt id (:attr:`Interrupted.interrupt_id`);
        ``value`` (plain JSON, at most 1 MB) is what ``ctx.interrupt`` returns. Works in
        any process. Raises :class:`InterruptError` when nothing waits there (wrong id,
        resumed already, or the run moved on) and ``ValidationError`` for a value no
        store can keep; nothing is written then.
        """
        store = await self._store()
        key = check_id(ident, "interrupt or session id")
        found = await store.get_checkpoint(self.tenant_id, key)
        if found is not None and found.agent_id not in (None, self.agent_id):
            raise InterruptError(f"interrupt {key} belongs to another agent", interrupt_id=key)
        try:
            claim = await record_resume(store, self.tenant_id, key, value)
        except NotWaitingError as exc:
            raise InterruptError(str(exc), session_id=None, interrupt_id=key) from None
        return await self._drive(claim.session_id, None)

    async def approve(
        self,
        call_id: str,
        *,
        arguments: dict[str, Any] | None = None,
        session_id: IdLike | None = None,
    ) -> Any:
        """Approve a ``ctx.call_tool`` call waiting for approval (``arguments`` edit it)."""
        return await self._decide(call_id, True, arguments, None, session_id)

    async def reject(
        self, call_id: str, reason: str = "rejected", *, session_id: IdLike | None = None
    ) -> Any:
        """Reject a waiting ``ctx.call_tool`` call: the node gets :class:`ToolRejectedError`."""
        return await self._decide(call_id, False, None, reason, session_id)

    async def _decide(
        self,
        call_id: str,
        approved: bool,
        arguments: dict[str, Any] | None,
        reason: str | None,
        session_id: IdLike | None,
    ) -> Any:
        store = await self._store()
        try:
            run, claim, _ = await record_decision(
                store,
                self.tenant_id,
                call_id,
                approved=approved,
                arguments=arguments,
                reason=reason,
                session_id=session_id,
            )
        except NotWaitingError as exc:
            raise InterruptError(str(exc)) from None
        if run.kind != "interrupt" or run.agent_id not in (None, self.agent_id):
            raise ConflictError(f"tool call {call_id!r} waits in another agent's run")
        return await self._drive(claim.session_id, None)

    async def waiting(self, *, user_id: IdLike | None = None) -> list[WaitingRun]:
        """This agent's runs waiting for a person, in its tenant (of one user if given)."""
        return await list_waiting(
            await self._store(), self.tenant_id, user_id=user_id, agent_id=self.agent_id
        )

    async def record_api_call(self, api_call: ApiCall) -> None:
        """Record one model request (usage, latency) where the checkpoint storage is a Store."""
        if self._persistency is not None:
            await (await self._persistency.backend()).save_api_call(api_call)


class _BranchInterrupt(Exception):
    """A branch stopped at ``ctx.interrupt`` (carried out of ``asyncio.gather``)."""

    def __init__(self, index: int, interrupt: NodeInterrupt, run: RunState) -> None:
        super().__init__(f"branch {index} interrupted")
        self.index = index
        self.interrupt = interrupt
        self.run = run


def _resolve_provider(
    provider: Provider | str | None, options: Mapping[str, Any] | None, model: str | None
) -> tuple[Provider, bool]:
    return resolve_provider(provider, options, model), isinstance(provider, (str, type(None)))
