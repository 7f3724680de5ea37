"""The checkpoint operations of one session, inside a run or outside it.

``ctx.persistency()`` and ``agent.persistency(session_id)`` return a
:class:`PersistencyHandle`: read a session's checkpoints, create one, roll back (running
inverse tools), or set the execution point. The run loop uses it too, to resume, to
write the automatic checkpoint after each node, and the tombstone at the end.
"""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from threadline.errors import NotFoundError, ValidationError
from threadline.graph.errors import (
    CheckpointSerializationError,
    CheckpointWarning,
    GraphError,
    RollbackError,
)
from threadline.graph.interrupts import NodeExecution, NodeInterrupt, is_interrupt
from threadline.graph.parallel import (
    KIND_BRANCH,
    KIND_FANOUT,
    BranchResult,
    PendingFanOut,
)
from threadline.graph.rollback import calls_after, undo_calls
from threadline.graph.serialization import UnserialisableValue
from threadline.graph.storage import CheckpointBackend, CheckpointScope
from threadline.graph.strategy import Node
from threadline.ids import IdLike, check_id, new_id
from threadline.models import Checkpoint, Message
from threadline.runtime.waiting import KIND_INTERRUPT, KIND_RESUME, kind_of

if TYPE_CHECKING:
    from threadline.graph.agent import GraphAgent
    from threadline.graph.context import RunState
    from threadline.graph.persistency import Persistency

__all__ = ["UNSET", "PersistencyHandle"]

log = logging.getLogger("threadline.graph")


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET


class PersistencyHandle:
    """The checkpoints of one session: inside a run (``ctx.persistency()``) or outside it
    (``agent.persistency(session_id)``). Inside a run, rollbacks and execution points also
    move the run: when the current node returns, the run goes on from there."""

    def __init__(
        self,
        agent: GraphAgent,
        feature: Persistency,
        scope: CheckpointScope,
        run: RunState | None = None,
    ) -> None:
        self.agent = agent
        self.feature = feature
        self.scope = scope
        self._run = run

    def __repr__(self) -> str:
        where = f"node={self._run.node.name!r}" if self._run is not None else "outside a run"
        return f"<PersistencyHandle session={self.scope.session_id} {where}>"

    @property
    def session_id(self) -> str:
        return self.scope.session_id

    async def _backend(self) -> CheckpointBackend:
        return await self.feature.backend()

    # -- reads ----------------------------------------------------------------------------

    async def get_checkpoints(self) -> list[Checkpoint]:
        """This session's checkpoints of this agent, oldest first (tombstones included)."""
        return await (await self._backend()).list(self.scope)

    async def get_checkpoint(self, checkpoint_id: IdLike) -> Checkpoint | None:
        """One checkpoint of this session, or ``None``."""
        cid = check_id(checkpoint_id, "checkpoint_id")
        return await (await self._backend()).get(self.scope, cid)

    async def get_latest_checkpoint(self) -> Checkpoint | None:
        """The session's latest checkpoint (possibly the tombstone of a finished run)."""
        return await (await self._backend()).latest(self.scope)

    # -- writes ---------------------------------------------------------------------------

    async def create_checkpoint(
        self,
        node_id: str | None = None,
        input: Any = UNSET,
        *,
        history: Sequence[Message] | None = None,
        state: Mapping[str, Any] | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> Checkpoint | None:
        """Save a checkpoint from which a run resumes at ``node_id`` with ``input``.

        Inside a node the defaults are this node, its input, and the history and state as
        they are now; outside a run ``node_id`` is required and history and state default
        to the latest checkpoint's. Returns ``None`` when lenient mode skipped it.
        """
        run = self._run
        if run is None:
            if node_id is None:
                raise ValidationError("outside a run, create_checkpoint needs a node_id")
            value = None if input is UNSET else input
            return await self._write_outside(
                "manual", node_id, value, history, state, dict(properties or {})
            )
        node = run.node if node_id is None else self._node(node_id)
        if input is UNSET:
            input = run.input if node is run.node else None
        return await self._write_run(
            "manual",
            node,
            input,
            after=run.previous if node is run.node else run.node.name,
            history=run.history if history is None else history,
            state=run.state if state is None else state,
            properties=properties,
        )

    async def set_execution_point(
        self,
        node_id: str,
        history: Sequence[Message] | None = None,
        input: Any = None,
        *,
        state: Mapping[str, Any] | None = None,
    ) -> Checkpoint | None:
        """Continue at ``node_id`` with ``input`` (and this history and state, if given).

        Inside a node: the run goes there when this node returns (its output is dropped);
        the next automatic checkpoint records it. Outside a run: a checkpoint is written,
        so the session's next run starts there; it is returned.
        """
        node = self._node(node_id)
        run = self._run
        if run is None:
            return await self._write_outside("execution_point", node_id, input, history, state, {})
        if history is not None:
            run.history = list(history)
        if state is not None:
            run.state = dict(state)
        run.jump, run.jump_saved = (node, input), False
        return None

    async def rollback_to_checkpoint(self, checkpoint_id: IdLike) -> Checkpoint:
        """Go back to a checkpoint of this session: undo later tool calls, restore its state.

        The inverses of the tool calls made since (in the current history, not in the
        checkpoint's) run newest first; then a checkpoint copying the target (its node,
        input, history and state; parent = the target) is written and returned, so a
        crash right after still resumes from the target. Inside a node the run continues
        at the target's node when the node returns. Raises ``NotFoundError`` when this
        tenant's session has no such checkpoint, :class:`RollbackError` when inverses failed.
        """
        cid = check_id(checkpoint_id, "checkpoint_id")
        target = await (await self._backend()).get(self.scope, cid)
        if target is None:
            raise NotFoundError(f"checkpoint {cid} not found in session {self.session_id}")
        return await self._rollback(target)

    async def rollback_to_latest_checkpoint(self) -> Checkpoint | None:
        """Roll back to the latest checkpoint; ``None`` when there is none.

        Inside a run that is the run's own latest checkpoint (undoing what the current
        node did since); outside, the session's latest checkpoint that is not a tombstone.
        """
        backend = await self._backend()
        target: Checkpoint | None
        if self._run is not None:
            head = self._run.head
            target = None if head is None else await backend.get(self.scope, head)
        else:
            working = [c for c in await backend.list(self.scope) if not c.tombstone]
            target = working[-1] if working else None
        return None if target is None else await self._rollback(target)

    # -- used by the run loop -------------------------------------------------------------

    async def resume(self) -> Checkpoint | None:
        """Restore the run from the session's latest checkpoint unless the last run finished.

        A waiting interrupt is returned as it is (the run loop reports it, nothing runs);
        a ``resume`` checkpoint restores the node's execution to replay (of two claims
        written at once, the one right after the interrupt counts).
        """
        run = self._require_run()
        latest = await (await self._backend()).latest(self.scope)
        if latest is None or latest.tombstone:
            return None
        if kind_of(latest) == KIND_RESUME:
            latest = await self._winning_claim(latest)
        if latest.node_id is None:
            log.warning("checkpoint %s names no node to resume; starting afresh", latest.id)
            return None
        node = self._node(latest.node_id, latest)
        run.node, run.head = node, latest.id
        after = latest.properties.get("after")
        run.previous = after if isinstance(after, str) else None
        if is_interrupt(latest):
            return latest
        if kind_of(latest) == KIND_FANOUT or "fanout_id" in latest.properties:
            await self._restore_fanout(latest)
            return latest
        run.input = self._restore_input(latest)
        run.state = self._restore_state(latest)
        run.history = list(latest.history)
        replay = latest.properties.get("replay")
        if kind_of(latest) == KIND_RESUME and replay is not None:
            try:
                execution = NodeExecution.from_checkpoint(latest, replay, run.state)
            except ValidationError as exc:
                raise GraphError(f"cannot re-enter node {node.name!r}: {exc}") from None
            execution.origin = execution.origin or latest.id
            run.history = list(execution.base_history)
            run.execution = execution
        return latest

    async def _winning_claim(self, claim: Checkpoint) -> Checkpoint:
        """The claim that counts when ``claim`` may have lost a race to resume."""
        if claim.properties.get("resumed") != claim.parent_id or claim.parent_id is None:
            return claim
        backend = await self._backend()
        parent = await backend.get(self.scope, claim.parent_id)
        if parent is None or parent.version is None or claim.version is None:
            return claim
        if claim.version == parent.version + 1:
            return claim
        for other in await backend.list(self.scope):
            if other.parent_id == parent.id and other.version == parent.version + 1:
                log.warning("claim %s lost to %s; resuming from the winner", claim.id, other.id)
                return other
        return claim

    async def _restore_fanout(self, latest: Checkpoint) -> None:
        """Rebuild a fan-out under way: its branches, those finished, a branch to re-enter."""
        run = self._require_run()
        backend = await self._backend()
        fid = latest.properties.get("fanout_id", latest.id)
        root = latest if latest.id == fid else await backend.get(self.scope, str(fid))
        info = root.properties.get("fanout") if root is not None else None
        if root is None or not isinstance(info, dict):
            raise GraphError(f"checkpoint {latest.id} belongs to a fan-out {fid} that is gone")
        base_state = self._restore_state(root)
        branches = []
        for item in info.get("branches") or ():
            stub = attrs.evolve(root, input=item.get("input"), input_type=item.get("input_type"))
            branches.append((self._node(str(item.get("node")), root), self._restore_input(stub)))
        pending = PendingFanOut(
            id=root.id,
            after=info.get("after") if isinstance(info.get("after"), str) else None,
            join=self._node(str(info.get("join")), root),
            branches=branches,
            base_history=list(root.history),
            base_state=base_state,
        )
        for c in await backend.list(self.scope):
            index = c.properties.get("branch")
            if (
                kind_of(c) != KIND_BRANCH
                or c.properties.get("fanout_id") != root.id
                or not isinstance(index, int)
                or index in pending.done
                or not 0 <= index < len(branches)
            ):
                continue
            state = {k: v for k, v in c.state.items() if root.state.get(k) != v}
            pending.done[index] = BranchResult(
                output=self._restore_input(c),
                messages=list(c.history[len(root.history) :]),
                state=self._restore_state(attrs.evolve(c, state=state)),
                checkpoint_id=c.id,
            )
        replay = latest.properties.get("replay")
        index = latest.properties.get("branch")
        if kind_of(latest) == KIND_RESUME and isinstance(index, int) and replay is not None:
            state = self._restore_state(latest)
            try:
                execution = NodeExecution.from_checkpoint(latest, replay, state)
            except ValidationError as exc:
                raise GraphError(f"cannot re-enter branch {index}: {exc}") from None
            execution.origin = execution.origin or latest.id
            pending.replay[index] = execution
        run.fanout = pending
        run.node, run.input = pending.join, None
        run.history, run.state = list(pending.base_history), dict(base_state)
        run.previous = pending.after

    async def write_fanout(self, pending: PendingFanOut) -> Checkpoint | None:
        """The checkpoint of a fan-out starting: its branches with their inputs."""
        run = self._require_run()
        branches = []
        for node, value in pending.branches:
            encoded = self._encode_input(value, node=node.name, after=pending.after)
            if encoded is None:
                return None
            branches.append({"node": node.name, "input": encoded[0], "input_type": encoded[1]})
        stored = await self._save(
            KIND_FANOUT,
            node_id=pending.join.name,
            input_payload=None,
            input_type="None",
            history=run.history,
            state=self._encode_state(run.state, node=pending.join.name, after=pending.after),
            parent_id=run.head,
            properties={
                "after": pending.after,
                "fanout": {"join": pending.join.name, "after": pending.after, "branches": branches},
            },
            checkpoint_id=pending.id,
        )
        return stored

    async def write_branch(
        self, pending: PendingFanOut, index: int, output: Any
    ) -> Checkpoint | None:
        """The checkpoint of one finished branch (parent: the fan-out's); written at once."""
        run = self._require_run()
        node = pending.branches[index][0]
        encoded = self._encode_input(output, node=pending.join.name, after=node.name)
        if encoded is None:
            return None
        return await self._save(
            KIND_BRANCH,
            node_id=pending.join.name,
            input_payload=encoded[0],
            input_type=encoded[1],
            history=run.history,
            state=self._encode_state(run.state, node=pending.join.name, after=node.name),
            parent_id=pending.id,
            properties={"after": node.name, "fanout_id": pending.id, "branch": index},
        )

    async def write_interrupt(
        self, interrupt: NodeInterrupt, extra: Mapping[str, Any] | None = None
    ) -> Checkpoint:
        """The checkpoint of a run waiting at ``ctx.interrupt``: its id is the interrupt id.

        It holds the node, its input, the history and state the node started with plus
        the messages of its steps, and what re-entering the node replays.
        """
        run = self._require_run()
        execution = run.begin_node()
        node = run.node
        encoded = self._encode_input(run.input, node=node.name, after=run.previous)
        if encoded is None:
            raise GraphError(f"cannot keep the interrupt of node {node.name!r}: see the warning")
        return await self._save(
            KIND_INTERRUPT,
            node_id=node.name,
            input_payload=encoded[0],
            input_type=encoded[1],
            history=[*execution.base_history, *execution.messages],
            state=self._encode_state(execution.base_state, node=node.name, after=run.previous),
            parent_id=run.head,
            properties={
                "after": run.previous,
                "waiting": True,
                "user_id": self.scope.user_id,
                "interrupt": {"payload": interrupt.payload, "index": interrupt.index},
                "replay": execution.replay_json(),
                **(extra or {}),
            },
        )

    async def checkpoint_after_node(self) -> Checkpoint | None:
        """The automatic checkpoint: the run is at its next node (skipped after a rollback)."""
        run = self._require_run()
        if run.jump_saved:
            run.jump_saved = False
            return None
        return await self._write_run(
            "auto", run.node, run.input, after=run.previous, history=run.history, state=run.state
        )

    async def write_tombstone(self) -> Checkpoint:
        """Mark the run finished: the session's next run starts fresh."""
        run = self._require_run()
        state = self._encode_state(run.state, node=None, after=run.previous)
        return await self._save(
            "tombstone",
            node_id=None,
            input_payload=None,
            input_type=None,
            history=run.history,
            state=state,
            parent_id=run.head,
            properties={"after": run.previous},
            tombstone=True,
        )

    # -- internals ------------------------------------------------------------------------

    def _require_run(self) -> RunState:
        if self._run is None:
            raise GraphError("this operation needs a running graph (use ctx.persistency())")
        return self._run

    def _node(self, name: str, checkpoint: Checkpoint | None = None) -> Node:
        try:
            return self.agent.strategy.find(name)
        except GraphError as exc:
            if checkpoint is None:
                raise
            raise GraphError(
                f"checkpoint {checkpoint.id} (version {checkpoint.version}) resumes at node "
                f"{name!r}, which this strategy cannot resolve: {exc}"
            ) from None

    async def _rollback(self, target: Checkpoint) -> Checkpoint:
        if target.tombstone or target.node_id is None:
            raise ValidationError(
                f"checkpoint {target.id} marks a finished run; roll back to one written during it"
            )
        backend = await self._backend()
        run = self._run
        node = self._node(target.node_id, target)
        restored: tuple[Any, dict[str, Any]] | None = None
        if run is not None:  # rebuild first: a failure here changes nothing
            restored = (self._restore_input(target), self._restore_state(target))
            current: Sequence[Message] = run.history
        else:
            latest = await backend.latest(self.scope)
            current = latest.history if latest is not None else ()
        report = await undo_calls(calls_after(current, target.history), self.agent.inverses)
        kind = kind_of(target)
        waiting: dict[str, Any] = {
            key: target.properties[key]
            for key in ("waiting", "interrupt", "replay", "user_id")
            if key in target.properties
        }
        stored = await self._save(
            kind if kind in (KIND_INTERRUPT, KIND_RESUME) else "rollback",
            node_id=target.node_id,
            input_payload=target.input,
            input_type=target.input_type,
            history=target.history,
            state=target.state,
            parent_id=target.id,
            properties={
                "after": target.properties.get("after"),
                "rolled_back_to": target.id,
                "rolled_back_to_version": target.version,
                **report.properties(),
                **waiting,
            },
        )
        if run is not None and restored is not None:
            run.history = list(target.history)
            run.state = restored[1]
            run.jump, run.jump_saved = (node, restored[0]), True
        if report.failures:
            raise RollbackError(report.failures, stored)
        return stored

    async def _write_run(
        self,
        kind: str,
        node: Node,
        value: Any,
        *,
        after: str | None,
        history: Sequence[Message],
        state: Mapping[str, Any],
        properties: Mapping[str, Any] | None = None,
    ) -> Checkpoint | None:
        run = self._require_run()
        encoded = self._encode_input(value, node=node.name, after=after)
        if encoded is None:
            return None
        return await self._save(
            kind,
            node_id=node.name,
            input_payload=encoded[0],
            input_type=encoded[1],
            history=history,
            state=self._encode_state(state, node=node.name, after=after),
            parent_id=run.head,
            properties={**(properties or {}), "after": after},
        )

    async def _write_outside(
        self,
        kind: str,
        node_id: str,
        value: Any,
        history: Sequence[Message] | None,
        state: Mapping[str, Any] | None,
        properties: dict[str, Any],
    ) -> Checkpoint | None:
        node = self._node(node_id)
        backend = await self._backend()
        await backend.open_session(self.scope)
        latest = await backend.latest(self.scope)
        encoded = self._encode_input(value, node=node.name, after=None)
        if encoded is None:
            return None
        if state is not None:
            state_payload = self._encode_state(state, node=node.name, after=None)
        else:
            state_payload = dict(latest.state) if latest is not None else {}
        if history is None:
            history = latest.history if latest is not None else ()
        return await self._save(
            kind,
            node_id=node.name,
            input_payload=encoded[0],
            input_type=encoded[1],
            history=history,
            state=state_payload,
            parent_id=latest.id if latest is not None else None,
            properties=properties,
        )

    async def _save(
        self,
        kind: str,
        *,
        node_id: str | None,
        input_payload: Any,
        input_type: str | None,
        history: Sequence[Message],
        state: dict[str, Any],
        parent_id: str | None,
        properties: Mapping[str, Any],
        tombstone: bool = False,
        checkpoint_id: str | None = None,
    ) -> Checkpoint:
        checkpoint = Checkpoint(
            tenant_id=self.scope.tenant_id,
            session_id=self.scope.session_id,
            agent_id=self.scope.agent_id,
            node_id=node_id,
            input=input_payload,
            input_type=input_type,
            history=tuple(history),
            state=state,
            properties={**properties, "kind": kind, "strategy": self.agent.strategy.name},
            tombstone=tombstone,
            parent_id=parent_id,
            id=checkpoint_id or new_id(),
        )
        stored = await (await self._backend()).save(checkpoint)
        if self._run is not None:
            self._run.head = stored.id
        return stored

    # -- serialisation --------------------------------------------------------------------

    def _encode_input(self, value: Any, *, node: str, after: str | None) -> tuple[Any, str] | None:
        try:
            return self.feature.serializer.encode_typed(value, "input")
        except UnserialisableValue as exc:
            where = f"the input of node {node!r}" + (f" (after node {after!r})" if after else "")
            self._refuse(exc, where, node, "skipping this checkpoint")
            return None

    def _encode_state(
        self, state: Mapping[str, Any], *, node: str | None, after: str | None
    ) -> dict[str, Any]:
        encoded: dict[str, Any] = {}
        serializer = self.feature.serializer
        for key, value in state.items():
            try:
                if type(key) is not str:
                    raise UnserialisableValue(
                        f"state key {key!r}", type(key).__name__, "is a state key; keys must be str"
                    )
                encoded[key] = serializer.encode(value, f"state[{key!r}]")
            except UnserialisableValue as exc:
                where = "the state" + (f" before node {node!r}" if node else " of the finished run")
                where += f" (after node {after!r})" if after else ""
                self._refuse(exc, where, after or node, f"leaving out state[{key!r}]")
        return encoded

    def _refuse(self, exc: UnserialisableValue, where: str, node: str | None, skip: str) -> None:
        problem = f"{exc.path} holds a value of type {exc.type_name!r} that {exc.reason}"
        if self.feature.strict:
            raise CheckpointSerializationError(
                f"cannot checkpoint {where}: {problem}. Register a codec with "
                "Serializer.register(...), or use Persistency(strict=False) to skip such "
                "values with a warning",
                node=node,
                type_name=exc.type_name,
                path=exc.path,
            ) from None
        message = f"checkpoint of {where}: {problem}; {skip}"
        log.warning(message)
        warnings.warn(message, CheckpointWarning, stacklevel=4)

    def _restore_input(self, checkpoint: Checkpoint) -> Any:
        try:
            return self.feature.serializer.decode_typed(checkpoint.input, checkpoint.input_type)
        except (LookupError, TypeError, ValueError) as exc:
            raise GraphError(
                f"cannot rebuild the input of node {checkpoint.node_id!r} (type "
                f"{checkpoint.input_type!r}) from checkpoint {checkpoint.id}: {exc}"
            ) from exc

    def _restore_state(self, checkpoint: Checkpoint) -> dict[str, Any]:
        try:
            return {k: self.feature.serializer.decode(v) for k, v in checkpoint.state.items()}
        except (LookupError, TypeError, ValueError) as exc:
            raise GraphError(
                f"cannot rebuild the state saved in checkpoint {checkpoint.id}: {exc}"
            ) from exc
