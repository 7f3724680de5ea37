"""Rollback from the browser: the graph package's undo of tool calls, then the copy.

The plan (:func:`plan_rollback`) lists the tool calls made after the target (newest
first, :func:`threadline.graph.rollback.calls_after`) and, for each, the inverse that
will run: the UI runs the inverses of the agents given with ``--agent`` (GraphAgents:
their ``inverse_of`` and ``rollback_tools``); calls without one are recorded as not
undone, as ``threadline checkpoints rollback`` does. :func:`perform_rollback` then runs
them (:func:`threadline.graph.rollback.undo_calls`) and writes the rollback checkpoint
(:func:`threadline.cli.checkpoints.rollback_copy`) with the undo report.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from threadline.cli.checkpoints import rollback_copy
from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.graph.rollback import Inverse, UndoReport, calls_after, undo_calls
from threadline.models import Checkpoint, Message, ToolCall
from threadline.store import Store

__all__ = ["PlannedUndo", "RollbackPlan", "perform_rollback", "plan_rollback"]


@attrs.frozen
class PlannedUndo:
    """One tool call a rollback must undo, and what will happen to it."""

    call: ToolCall
    result: Message | None
    inverse: str | None

    @property
    def outcome(self) -> str:
        if self.inverse is None:
            return "not undone: no inverse registered"
        if self.result is None:
            return "not undone: its result was never recorded"
        if self.result.metadata.get("error"):
            return "not undone: the call failed"
        return f"inverse {self.inverse}() runs"

    @property
    def runs(self) -> bool:
        return self.outcome.startswith("inverse")


@attrs.frozen
class RollbackPlan:
    """What rolling back to ``target`` does, computed against ``latest``."""

    target: Checkpoint
    latest: Checkpoint | None
    undo: list[PlannedUndo]


async def _target(store: Store, tenant_id: str, session_id: str, cid: str) -> Checkpoint:
    target = await store.get_checkpoint(tenant_id, cid)
    if target is None or target.session_id != session_id:
        raise NotFoundError(f"no checkpoint {cid} in session {session_id}")
    if target.tombstone or target.node_id is None:
        raise ValidationError(
            f"checkpoint {target.id} marks a finished run; roll back to one written during it"
        )
    return target


async def plan_rollback(
    store: Store,
    tenant_id: str,
    session_id: str,
    checkpoint_id: str,
    inverses: Mapping[str, Inverse],
) -> RollbackPlan:
    """The tool calls a rollback to ``checkpoint_id`` would undo, newest first."""
    target = await _target(store, tenant_id, session_id, checkpoint_id)
    latest = await store.get_latest_checkpoint(tenant_id, session_id, agent_id=target.agent_id)
    current = latest.history if latest is not None else ()
    undo = [
        PlannedUndo(
            call,
            result,
            getattr(inverses[call.name].function, "__name__", call.name)
            if call.name in inverses
            else None,
        )
        for call, result in calls_after(current, target.history)
    ]
    return RollbackPlan(target, latest, undo)


async def perform_rollback(
    store: Store,
    tenant_id: str,
    session_id: str,
    checkpoint_id: str,
    inverses: Mapping[str, Inverse],
    *,
    expected_latest: str | None,
) -> tuple[Checkpoint, UndoReport]:
    """Run the inverses of the plan, then write the rollback checkpoint; return both.

    :raises ConflictError: the session's latest checkpoint is no longer the one the
        confirmation was computed against (``expected_latest``): nothing ran.
    """
    plan = await plan_rollback(store, tenant_id, session_id, checkpoint_id, inverses)
    latest_id = plan.latest.id if plan.latest is not None else None
    if (latest_id or "") != (expected_latest or ""):
        raise ConflictError(
            "the session has a newer checkpoint than the confirmation listed; "
            "review the tool calls again"
        )
    report = await undo_calls([(u.call, u.result) for u in plan.undo], inverses)
    copy, _ = rollback_copy(plan.target, plan.latest)
    properties = {**copy.properties, **report.properties(), "rolled_back_by": "ui"}
    written = await store.create_checkpoint(attrs.evolve(copy, properties=properties))
    return written, report
