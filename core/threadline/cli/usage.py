"""``threadline usage``: model calls, tokens, latency and cost of a tenant, per group."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from threadline.cli.app import with_store
from threadline.cli.options import json_option, print_json, print_table, store_option

__all__ = ["parse_moment", "usage_command"]

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGO = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")


def parse_moment(text: str, now: datetime) -> datetime:
    """``7d``/``12h``/``30m``/``2w`` before ``now``, or an ISO date or time (UTC if no zone)."""
    match = _AGO.match(text.lower())
    if match is not None:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time ago (7d, 12h, 30m, 2w) nor an ISO date or time "
            "(2026-03-01, 2026-03-01T12:00:00+00:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_moment(value, datetime.now(timezone.utc))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _cost(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


@click.command(name="usage")
@store_option
@click.option(
    "--tenant",
    "tenant_id",
    envvar="TENANT_ID",
    default=None,
    help="Tenant id ($TENANT_ID; default: the local tenant).",
)
@click.option("--since", callback=_moment, help="From (inclusive): 7d, 12h, or an ISO date/time.")
@click.option("--until", callback=_moment, help="Until (exclusive): 7d, 12h, or an ISO date/time.")
@click.option(
    "--by",
    "group_by",
    type=click.Choice(["model", "agent", "user", "session", "day"]),
    default="model",
    show_default=True,
    help="What a row sums.",
)
@json_option
def usage_command(
    store: str | None,
    tenant_id: str | None,
    since: datetime | None,
    until: datetime | None,
    group_by: str,
    as_json: bool,
) -> None:
    """Model calls per model, agent, user, session or day: calls by status, tokens, latency
    and time-to-first-token p50/p95 (ms) and cost (USD, from the providers' prices)."""
    from threadline.runtime.agent import LOCAL_TENANT_ID
    from threadline.store import Store

    if since is not None and until is not None and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="'--since'")

    async def work(db: Store) -> Any:
        return await db.usage(
            tenant_id or LOCAL_TENANT_ID, since=since, until=until, group_by=group_by
        )

    report = with_store(store, work, create=False)
    if as_json:
        print_json(report.to_dict())
        return
    statuses = sorted({s for r in report.rows for s in r.by_status})
    print_table(
        [
            (
                "(none)" if r.key is None else r.key,
                r.calls,
                *(r.by_status.get(s, 0) for s in statuses),
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                _ms(r.latency_p50_ms),
                _ms(r.latency_p95_ms),
                _ms(r.ttft_p50_ms),
                _ms(r.ttft_p95_ms),
                _cost(r.cost_usd),
            )
            for r in report.rows
        ],
        [
            group_by,
            "calls",
            *statuses,
            "prompt",
            "completion",
            "total",
            "p50 ms",
            "p95 ms",
            "ttft p50",
            "ttft p95",
            "cost $",
        ],  # fmt: skip
    )
    if report.rows:
        cost = _cost(report.cost_usd) or "unpriced"
        click.echo(f"{report.calls} calls, {report.total_tokens} tokens, cost {cost}")
