"""``threadline checkpoints``: list, show and roll back the checkpoints of a session."""

from __future__ import annotations

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
from threadline.models import Checkpoint, ToolCall
from threadline.store import Store

__all__ = ["checkpoints_group", "rollback_copy"]

NO_INVERSES = (
    "inverse tools do not run from the command line (they live in the agent's code): "
    "tool calls made after the target checkpoint are recorded as not undone"
)


def _summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as JSON without its history (the message count instead)."""
    data = checkpoint.to_dict()
    del data["history"]
    data["messages"] = len(checkpoint.history)
    return data


def _kind(checkpoint: Checkpoint) -> str:
    kind = checkpoint.properties.get("kind")
    return kind if isinstance(kind, str) else ""


async def _session_checkpoints(db: Store, tenant_id: str, session_id: str) -> list[Checkpoint]:
    if await db.get_session(tenant_id, session_id) is None:
        raise click.ClickException(f"no session {session_id} for this tenant")
    return await db.list_checkpoints(tenant_id, session_id=session_id)


def rollback_copy(
    target: Checkpoint, latest: Checkpoint | None
) -> tuple[Checkpoint, list[ToolCall]]:
    """The checkpoint a rollback to ``target`` writes, without running inverse tools.

    Like a graph agent's ``rollback_to_checkpoint``: a copy of the target (its node,
    input, history and state) whose parent is the target, so the session's next run
    resumes there. The tool calls of the latest history that the target's lacks would
    need their inverses; they are returned (newest first) and recorded as skipped.
    """
    from threadline.graph.rollback import UndoReport, calls_after

    current = latest.history if latest is not None else ()
    skipped = [call for call, _ in calls_after(current, target.history)]
    properties: dict[str, Any] = {
        "after": target.properties.get("after"),
        "rolled_back_to": target.id,
        "rolled_back_to_version": target.version,
        **UndoReport(skipped=tuple(call.id for call in skipped)).properties(),
        "kind": "rollback",
        "rolled_back_by": "cli",
    }
    if "strategy" in target.properties:
        properties["strategy"] = target.properties["strategy"]
    copy = Checkpoint(
        tenant_id=target.tenant_id,
        session_id=target.session_id,
        agent_id=target.agent_id,
        node_id=target.node_id,
        input=target.input,
        input_type=target.input_type,
        history=target.history,
        state=target.state,
        properties=properties,
        parent_id=target.id,
    )
    return copy, skipped


@click.group(name="checkpoints")
def checkpoints_group() -> None:
    """List, show and roll back the checkpoints of a session (graph agents' runs)."""


@checkpoints_group.command(name="list")
@click.argument("session_id")
@store_option
@tenant_options
@json_option
def checkpoints_list(
    session_id: str, store: str | None, tenant_id: str, user_id: str, as_json: bool
) -> None:
    """A session's checkpoints, oldest first (--json: without histories, with a message count)."""
    found = with_store(
        store, lambda db: _session_checkpoints(db, tenant_id, session_id), create=False
    )
    if as_json:
        print_json([_summary(c) for c in found])
        return
    print_table(
        [
            (
                c.version,
                c.id,
                c.node_id or "",
                _kind(c),
                c.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "yes" if c.tombstone else "",
            )
            for c in found
        ],
        ["version", "id", "node", "kind", "created (UTC)", "tombstone"],
    )


@checkpoints_group.command(name="show")
@click.argument("checkpoint_id")
@store_option
@tenant_options
def checkpoints_show(checkpoint_id: str, store: str | None, tenant_id: str, user_id: str) -> None:
    """Print one checkpoint as JSON, with its whole history."""
    found = with_store(store, lambda db: db.get_checkpoint(tenant_id, checkpoint_id), create=False)
    if found is None:
        raise click.ClickException(f"no checkpoint {checkpoint_id} for this tenant")
    print_json(found.to_dict())


@checkpoints_group.command(
    name="rollback",
    epilog="Inverse tools do not run from the command line: they are code of the agent. "
    "Tool calls made after the target are listed and recorded as not undone "
    "(skipped_tool_calls); undo their effects yourself, or roll back from inside the "
    "agent (ctx.persistency().rollback_to_checkpoint) to run the inverses.",
)
@click.argument("session_id")
@click.argument("checkpoint_id")
@store_option
@tenant_options
@json_option
def checkpoints_rollback(
    session_id: str,
    checkpoint_id: str,
    store: str | None,
    tenant_id: str,
    user_id: str,
    as_json: bool,
) -> None:
    """Roll a session back to CHECKPOINT_ID: its next run resumes from there.

    Writes a copy of the target (node, input, history, state) as the session's latest
    checkpoint, as a graph agent's rollback does, without running inverse tools.
    """

    async def work(db: Store) -> tuple[Checkpoint, Checkpoint, list[ToolCall]]:
        target = await db.get_checkpoint(tenant_id, checkpoint_id)
        if target is None or target.session_id != session_id:
            raise click.ClickException(
                f"no checkpoint {checkpoint_id} in session {session_id} for this tenant"
            )
        if target.tombstone or target.node_id is None:
            raise click.ClickException(
                f"checkpoint {target.id} marks a finished run; roll back to one written during it"
            )
        latest = await db.get_latest_checkpoint(tenant_id, session_id, agent_id=target.agent_id)
        copy, skipped = rollback_copy(target, latest)
        return target, await db.create_checkpoint(copy), skipped

    target, written, skipped = with_store(store, work, create=False)
    if as_json:
        print_json(
            {
                "rolled_back_to": _summary(target),
                "checkpoint": _summary(written),
                "not_undone_tool_calls": [call.to_dict() for call in skipped],
                "note": NO_INVERSES,
            }
        )
        return
    click.echo(
        f"rolled session {session_id} back to version {target.version} (node "
        f"{target.node_id!r}): wrote checkpoint {written.id} (version {written.version})"
    )
    if skipped:
        listed = ", ".join(f"{call.name} ({call.id})" for call in skipped)
        click.echo(f"warning: {len(skipped)} tool call(s) not undone: {listed}", err=True)
    click.echo(f"note: {NO_INVERSES}", err=True)
