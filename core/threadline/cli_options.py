"""Options shared by the ``threadline`` commands: store, tenant, user, output format."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def store_option(f: F) -> F:
    return click.option(
        "--store",
        envvar="THREADLINE_STORE",
        default=None,
        help="Store URL (default: $THREADLINE_STORE, $DATABASE_URL, else the embedded SQLite).",
    )(f)


def tenant_options(f: F) -> F:
    from threadline.agent import LOCAL_TENANT_ID, LOCAL_USER_ID

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


def store_url(value: str | None) -> str:
    from threadline.agent import default_store_url

    return value or default_store_url()


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
