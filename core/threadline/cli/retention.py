"""Retention commands: ``erase-user``, ``sessions prune`` and ``checkpoints prune``.

Each takes ``--dry-run`` (report what would go, change nothing) and ``--json``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import click

from threadline.cli.app import with_store
from threadline.cli.options import json_option, print_json, print_table, store_option
from threadline.store import ERASE_KINDS, Store

__all__ = [
    "erase_user_command",
    "parse_duration",
    "prune_checkpoints_command",
    "prune_sessions_command",
]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``90m``, ``12h``, ``30d`` (also ``s`` and ``w``) as a :class:`timedelta` (> 0)."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use a number and s, m, h, d or w: 30d)")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"a duration must be more than zero, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _tenant_option(f: click.decorators.FC) -> click.decorators.FC:
    from threadline.runtime.agent import LOCAL_TENANT_ID

    return click.option(
        "--tenant",
        "tenant_id",
        envvar="TENANT_ID",
        default=LOCAL_TENANT_ID,
        show_default=True,
        help="Tenant id ($TENANT_ID).",
    )(f)


_dry_run = click.option("--dry-run", is_flag=True, help="Report what would go; change nothing.")


def _verb(dry_run: bool) -> str:
    return "would delete" if dry_run else "deleted"


@click.command(name="erase-user")
@store_option
@_tenant_option
@click.option("--user", "user_id", required=True, help="The user whose data goes.")
@_dry_run
@json_option
def erase_user_command(
    store: str | None, tenant_id: str, user_id: str, dry_run: bool, as_json: bool
) -> None:
    """Delete a user's sessions in a tenant with their messages, API calls and checkpoints."""

    async def work(db: Store) -> dict[str, int]:
        return await db.erase_user(tenant_id, user_id, dry_run=dry_run)

    counts = with_store(store, work, create=False)
    if as_json:
        print_json({"tenant_id": tenant_id, "user_id": user_id, "dry_run": dry_run, **counts})
        return
    click.echo(f"{_verb(dry_run)} for user {user_id} in tenant {tenant_id}:")
    print_table([(kind, counts.get(kind, 0)) for kind in ERASE_KINDS], ("kind", "rows"))


@click.command(name="prune")
@store_option
@_tenant_option
@click.option(
    "--older-than",
    required=True,
    callback=_duration,
    help="Sessions last updated longer ago than this (90m, 12h, 30d).",
)
@click.option("--user", "user_id", default=None, help="Only this user's sessions.")
@_dry_run
@json_option
def prune_sessions_command(
    store: str | None,
    tenant_id: str,
    older_than: timedelta,
    user_id: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete sessions not updated for a while, with everything in them."""
    before = datetime.now(timezone.utc) - older_than

    async def work(db: Store) -> int:
        return await db.delete_sessions_before(tenant_id, before, user_id=user_id, dry_run=dry_run)

    count = with_store(store, work, create=False)
    if as_json:
        print_json(
            {
                "tenant_id": tenant_id,
                "user_id": user_id,
                "before": before.isoformat(),
                "dry_run": dry_run,
                "sessions": count,
            }
        )
        return
    click.echo(f"{_verb(dry_run)} {count} session(s) last updated before {before.isoformat()}")


@click.command(name="prune")
@click.argument("session_id")
@store_option
@_tenant_option
@click.option(
    "--keep",
    required=True,
    type=click.IntRange(min=1),
    help="How many of the newest checkpoints to keep.",
)
@_dry_run
@json_option
def prune_checkpoints_command(
    session_id: str, store: str | None, tenant_id: str, keep: int, dry_run: bool, as_json: bool
) -> None:
    """Delete a session's older checkpoints, keeping the newest KEEP readable and whole."""

    async def work(db: Store) -> int:
        if await db.get_session(tenant_id, session_id) is None:
            raise click.ClickException(f"no session {session_id} for this tenant")
        return await db.prune_checkpoints(tenant_id, session_id, keep=keep, dry_run=dry_run)

    count = with_store(store, work, create=False)
    if as_json:
        print_json(
            {
                "tenant_id": tenant_id,
                "session_id": session_id,
                "keep": keep,
                "dry_run": dry_run,
                "checkpoints": count,
            }
        )
        return
    click.echo(f"{_verb(dry_run)} {count} checkpoint(s) of session {session_id}, kept {keep}")
