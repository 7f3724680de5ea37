"""``threadline sessions fork`` and ``threadline sessions branches``: branch a conversation."""

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
from threadline.models import Session
from threadline.store import Store
from threadline.store.branching import forked_from


@click.command(name="fork")
@click.argument("session_id")
@click.option(
    "--at",
    "at",
    required=True,
    metavar="ID",
    help="The message (kept, with everything before it) or checkpoint id to fork at.",
)
@click.option("--title", default=None, help="The fork's title (default: the session's).")
@store_option
@tenant_options
@json_option
def fork_command(
    session_id: str,
    at: str,
    title: str | None,
    store: str | None,
    tenant_id: str,
    user_id: str,
    as_json: bool,
) -> None:
    """Make a new session holding SESSION_ID's history up to a message or checkpoint.

    The new session's metadata records where it came from (``forked_from``); the source
    is left as it is. Prints the new session's id.
    """

    async def work(db: Store) -> tuple[Session, int]:
        fork = await db.fork_session(tenant_id, session_id, at=at, title=title)
        return fork, await db.count_messages(tenant_id, fork.id)

    fork, count = with_store(store, work, create=False)
    if as_json:
        print_json(fork.to_dict() | {"messages": count})
    else:
        click.echo(f"forked {session_id} at {at} -> {fork.id} ({count} messages)")


@click.command(name="branches")
@click.argument("session_id")
@store_option
@tenant_options
@json_option
def branches_command(
    session_id: str, store: str | None, tenant_id: str, user_id: str, as_json: bool
) -> None:
    """List the sessions forked from SESSION_ID (by fork, edit or regenerate), oldest first."""

    async def work(db: Store) -> list[tuple[Session, int]]:
        found = await db.list_branches(tenant_id, session_id)
        return [(s, await db.count_messages(tenant_id, s.id)) for s in found]

    rows = with_store(store, work, create=False)
    if as_json:
        print_json([s.to_dict() | {"messages": n} for s, n in rows])
        return
    print_table([_row(s, n) for s, n in rows], ["id", "created (UTC)", "at", "kind", "messages"])


def _row(session: Session, count: int) -> list[Any]:
    origin = forked_from(session) or {}
    kind = session.metadata.get("branch_reason") or origin.get("kind", "")
    created = session.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return [session.id, created, origin.get("at", ""), kind, count]
