"""Options shared by the ``threadline`` commands: store, tenant, user, output format."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter(
            "is empty: give a store URL (sqlite:///chat.db, postgresql://host/db, ...) or "
            "leave --store out to use the default store",
            ctx,
            param,
        )
    return value


def store_option(f: F) -> F:
    """``--store URL`` (default: ``$THREADLINE_STORE``, ``$DATABASE_URL``, the embedded SQLite)."""
    return click.option(
        "--store",
        envvar="THREADLINE_STORE",
        default=None,
        callback=_not_empty,
        help="Store URL (default: $THREADLINE_STORE, $DATABASE_URL, else the embedded SQLite).",
    )(f)


def tenant_options(f: F) -> F:
    from threadline.runtime.agent import LOCAL_TENANT_ID, LOCAL_USER_ID

    f = click.option(
        "--user",
        "user_id",
        envvar="USER_ID",
        default=LOCAL_USER_ID,
        show_default=True,
        help="User id ($USER_ID).",
    )(f)
    return click.option(
        "--tenant",
        "tenant_id",
        envvar="TENANT_ID",
        default=LOCAL_TENANT_ID,
        show_default=True,
        help="Tenant id ($TENANT_ID).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def store_url(value: str | None, *, create: bool = True) -> str:
    """The URL given, else the default store's (its folder made only when ``create``)."""
    import os

    from threadline.runtime.agent import STORE_ENV_VARS, default_database_path, default_store_url

    if value is not None:
        return value
    if create:
        return default_store_url()
    for var in STORE_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return f"sqlite:///{default_database_path()}"


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    """A plain aligned table for people."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
