"""Answering waiting runs from the browser, recorded exactly as ``threadline runs`` does.

An answer is written with the core's own functions (:func:`~threadline.runtime.waiting.
record_resume` for an interrupt, :func:`~threadline.runtime.waiting.record_decision` for
a held tool call): no agent code runs, and the run goes on when its agent next runs the
session, in any process. With ``threadline ui --agent MODULE:ATTR`` the server also
continues a *graph* run of that agent right away (:func:`continue_run`: ``GraphAgent.run``
on the session, which picks up the recorded answer), when the agent works on this tenant
and on this store. Chat turns held for approval are never continued here (their tools run
in the chat agent's ``continue_turn``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from threadline.errors import NotFoundError, ValidationError
from threadline.graph.interrupts import Interrupted
from threadline.ids import check_id
from threadline.models import Checkpoint
from threadline.runtime.waiting import (
    WaitingRun,
    check_value,
    list_waiting,
    record_decision,
    record_resume,
)
from threadline.store import Store

__all__ = [
    "Answered",
    "approve_call",
    "continue_run",
    "parse_json",
    "reject_call",
    "resume_run",
    "waiting_in",
]

CONTINUES = (
    "the run goes on when its agent next runs session {session} "
    "(GraphAgent.run or resume; a chat agent's continue_turn)"
)
MAX_SHOWN = 300


@attrs.frozen
class Answered:
    """What an answer wrote and, with ``--agent``, what continuing the run gave."""

    what: str
    session_id: str
    claim: Checkpoint
    outcome: str

    @property
    def message(self) -> str:
        return f"{self.what}: recorded; {self.outcome}"


def parse_json(text: str, what: str) -> Any:
    """``text`` as plain JSON every store keeps; else a :class:`ValidationError` naming it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{what} is not JSON: {exc}") from None
    return check_value(value, what)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


async def waiting_in(store: Store, tenant_id: str, run_id: str) -> Checkpoint:
    """The checkpoint ``run_id`` names in this tenant (interrupt or held turn).

    :raises NotFoundError: no checkpoint of that id in this tenant (a wrong id, or another
        tenant's: both are 404, so ids of other tenants are not disclosed).
    """
    try:
        key = check_id(run_id, "run id")
    except ValidationError:
        raise NotFoundError(f"no waiting run {run_id!r} in this tenant") from None
    found = await store.get_checkpoint(tenant_id, key)
    if found is None:
        raise NotFoundError(f"no waiting run {key} in this tenant")
    return found


async def continue_run(
    store: Store, tenant_id: str, claim: Checkpoint, agents: Mapping[str, Any]
) -> str:
    """Run the graph agent of ``claim`` on its session (``--agent``); say what happened.

    Only when an agent of that id was given, works on this tenant, and sees the claim in
    its own store (it is the same store); otherwise the run waits for its agent.
    """
    agent = agents.get(claim.agent_id or "")
    later = CONTINUES.format(session=claim.session_id)
    if agent is None:
        return later
    if getattr(agent, "tenant_id", None) != tenant_id:
        return f"not continued here (--agent works on tenant {agent.tenant_id}); {later}"
    try:
        seen = await agent.persistency(claim.session_id).get_checkpoint(claim.id)
    except Exception as exc:  # an agent without a store: say so, keep the answer
        return f"not continued here (--agent has no store: {exc}); {later}"
    if seen is None:
        return f"not continued here (--agent uses another store); {later}"
    try:
        result = await agent.run(None, session_id=claim.session_id)
    except Exception as exc:
        return f"continuing the run failed: {type(exc).__name__}: {exc}"
    if isinstance(result, Interrupted):
        return (
            f"the run continued and waits again at interrupt {result.interrupt_id} "
            f"(node {result.node})"
        )
    return f"the run continued and finished: {_short(result)}"


async def resume_run(
    store: Store, tenant_id: str, run_id: str, value_text: str, agents: Mapping[str, Any]
) -> Answered:
    """Answer interrupt ``run_id`` with the JSON ``value_text`` (``threadline runs resume``)."""
    target = await waiting_in(store, tenant_id, run_id)
    value = parse_json(value_text, "the resume value")
    claim = await record_resume(store, tenant_id, target.id, value)
    outcome = await continue_run(store, tenant_id, claim, agents)
    return Answered(
        f"resumed interrupt {target.id} with {_short(value)}", claim.session_id, claim, outcome
    )


async def _run_of(store: Store, tenant_id: str, run_id: str) -> WaitingRun | None:
    target = await waiting_in(store, tenant_id, run_id)
    found = await list_waiting(store, tenant_id, session_id=target.session_id)
    return found[0] if found else None


async def approve_call(
    store: Store,
    tenant_id: str,
    run_id: str,
    call_id: str,
    arguments_text: str | None,
    agents: Mapping[str, Any],
) -> Answered:
    """Approve held call ``call_id`` of run ``run_id`` (``threadline approvals approve``).

    ``arguments_text`` is the arguments as JSON: when they differ from the model's they
    are recorded as edited (with the originals), as ``--args`` does.
    """
    target = await waiting_in(store, tenant_id, run_id)
    edited: dict[str, Any] | None = None
    if arguments_text is not None and arguments_text.strip():
        parsed = parse_json(arguments_text, "the arguments")
        if not isinstance(parsed, dict):
            raise ValidationError("the arguments must be a JSON object")
        current = await _run_of(store, tenant_id, run_id)
        calls = current.calls if current is not None else ()
        original = next((c.arguments for c in calls if c.id == call_id), None)
        edited = None if parsed == original else parsed
    run, claim, _ = await record_decision(
        store,
        tenant_id,
        call_id,
        approved=True,
        arguments=edited,
        session_id=target.session_id,
    )
    what = f"approved {call_id}" + (f" with arguments {_short(edited)}" if edited else "")
    outcome = await _after_decision(store, tenant_id, run, claim, agents)
    return Answered(what, run.session_id, claim, outcome)


async def reject_call(
    store: Store,
    tenant_id: str,
    run_id: str,
    call_id: str,
    reason: str,
    agents: Mapping[str, Any],
) -> Answered:
    """Reject held call ``call_id`` (``threadline approvals reject``): the model reads
    ``rejected: REASON``."""
    target = await waiting_in(store, tenant_id, run_id)
    run, claim, _ = await record_decision(
        store,
        tenant_id,
        call_id,
        approved=False,
        reason=reason.strip() or "rejected",
        session_id=target.session_id,
    )
    outcome = await _after_decision(store, tenant_id, run, claim, agents)
    return Answered(f"rejected {call_id}", run.session_id, claim, outcome)


async def _after_decision(
    store: Store, tenant_id: str, run: WaitingRun, claim: Checkpoint, agents: Mapping[str, Any]
) -> str:
    if run.kind == "interrupt":  # a graph node's ctx.call_tool: resumed with the decision
        return await continue_run(store, tenant_id, claim, agents)
    return CONTINUES.format(session=run.session_id)
