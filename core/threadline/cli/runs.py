"""``threadline runs`` and ``threadline approvals``: runs waiting for a person.

``runs list`` shows the tenant's graph runs waiting at ``ctx.interrupt`` and chat turns
holding tool calls for approval; ``runs show`` one of them; ``runs resume ID --value
JSON`` answers an interrupt and ``approvals approve|reject CALL_ID`` decides a held call.
Agents' code does not run here: the answer is recorded (a ``resume`` or
``approval_decision`` checkpoint) and the run goes on when its agent next runs the
session (``GraphAgent.run``; a chat agent's ``continue_turn``), in any process.
"""

from __future__ import annotations

import json
from typing import Any

import click

from threadline.cli.app import with_store
from threadline.cli.options import (
    json_option,
    print_json,
    print_table,
    store_option,
    tenant_options,
)
from threadline.errors import ValidationError
from threadline.store import Store

__all__ = ["approvals_group", "runs_group"]

CONTINUES = (
    "recorded; the run goes on when its agent next runs session {session} "
    "(GraphAgent.run or resume; a chat agent's continue_turn)"
)


def _json_value(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{what} is not JSON: {exc}") from None


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


@click.group(name="runs")
def runs_group() -> None:
    """Runs waiting for a person: graph interrupts and tool calls held for approval."""


@runs_group.command(name="list")
@store_option
@tenant_options
@click.option("--only-user", is_flag=True, help="Only the runs of --user.")
@json_option
def runs_list(
    store: str | None, tenant_id: str, user_id: str, only_user: bool, as_json: bool
) -> None:
    """The tenant's waiting runs, oldest first, with their payloads, age and agent."""
    from threadline.runtime.waiting import list_waiting

    found = with_store(
        store,
        lambda db: list_waiting(db, tenant_id, user_id=user_id if only_user else None),
        create=False,
    )
    if as_json:
        print_json([run.to_dict() for run in found])
        return
    print_table(
        [
            (
                run.kind,
                run.id,
                run.session_id,
                run.strategy or run.agent_id or "",
                run.node or "",
                ", ".join(f"{c.name} {c.id}" for c in run.calls),
                _age(run.age.total_seconds()),
            )
            for run in found
        ],
        ["kind", "id", "session", "agent", "node", "calls", "age"],
    )


@runs_group.command(name="show")
@click.argument("run_id")
@store_option
@tenant_options
def runs_show(run_id: str, store: str | None, tenant_id: str, user_id: str) -> None:
    """One waiting run as JSON: by its id (interrupt or held turn) or its session id."""
    from threadline.runtime.waiting import list_waiting

    found = with_store(store, lambda db: list_waiting(db, tenant_id), create=False)
    match = [r for r in found if run_id in (r.id, r.session_id)]
    if not match:
        raise click.ClickException(f"no run waits under {run_id} in this tenant")
    print_json(match[0].to_dict())


@runs_group.command(name="resume")
@click.argument("run_id")
@click.option("--value", default="null", show_default=True, help="The answer, as JSON.")
@store_option
@tenant_options
def runs_resume(run_id: str, value: str, store: str | None, tenant_id: str, user_id: str) -> None:
    """Answer the interrupt a graph run waits at (RUN_ID: interrupt or session id)."""
    from threadline.runtime.waiting import record_resume

    answer = _json_value(value, "--value")

    async def work(db: Store) -> str:
        claim = await record_resume(db, tenant_id, run_id, answer)
        return claim.session_id

    session = with_store(store, work, create=False)
    click.echo(CONTINUES.format(session=session))


@click.group(name="approvals")
def approvals_group() -> None:
    """Decide tool calls held for approval (see ``threadline runs list``)."""


def _decide(
    store: str | None,
    tenant_id: str,
    call_id: str,
    *,
    approved: bool,
    arguments: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    from threadline.runtime.waiting import record_decision

    async def work(db: Store) -> str:
        run, _, _ = await record_decision(
            db, tenant_id, call_id, approved=approved, arguments=arguments, reason=reason
        )
        return run.session_id

    session = with_store(store, work, create=False)
    click.echo(CONTINUES.format(session=session))


@approvals_group.command(name="approve")
@click.argument("call_id")
@click.option("--args", "arguments", default=None, help="Run it with these arguments (JSON).")
@store_option
@tenant_options
def approvals_approve(
    call_id: str, arguments: str | None, store: str | None, tenant_id: str, user_id: str
) -> None:
    """Approve a held tool call (--args: edited arguments, recorded with the original)."""
    edited = None if arguments is None else _json_value(arguments, "--args")
    if edited is not None and not isinstance(edited, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--args")
    _decide(store, tenant_id, call_id, approved=True, arguments=edited)


@approvals_group.command(name="reject")
@click.argument("call_id")
@click.option("--reason", default="rejected", show_default=True, help="Sent to the model.")
@store_option
@tenant_options
def approvals_reject(
    call_id: str, reason: str, store: str | None, tenant_id: str, user_id: str
) -> None:
    """Reject a held tool call: the model reads ``rejected: REASON`` as its result."""
    _decide(store, tenant_id, call_id, approved=False, reason=reason)
