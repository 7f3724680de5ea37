"""Usage reports (``threadline_summarize_usage``) from the rollup of migration 0010.

The whole UTC days of the period (all of history in one row per group and model when the
period is open at both ends) are read from ``usage_rollup`` (calls per status and
token sums per day, group and model) and ``usage_histogram`` (latency and time to first
token per log bucket), which statement triggers keep in every write's transaction
(:mod:`threadline_postgres.usage_rollup`): a report costs what the period's rollup rows
are, not its calls. The parts of a day at either end of the period are read from the
calls themselves (``entity_api_call_usage``, migration 0007, an index-only scan) and
bucketed the same way. Counts, tokens and cost are exact; percentiles come from the
histograms, within :data:`threadline.usage.RELATIVE_ERROR` (1.97 %) of the exact ones.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from threadline.hookspecs import hookimpl
from threadline.usage import LATENCY, TTFT, UsageQuery, UsageRow, UsageSums, split_period
from threadline_postgres.pool import PooledStore
from threadline_postgres.usage_rollup import STATUS_COLUMNS

__all__ = ["UsageReports"]

_EPOCH = date(1970, 1, 1)
_KEYS = {
    "model": "model",
    "agent": "agent_id::text",
    "user": "user_id::text",
    "session": "session_id::text",
    "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
# group_by -> (dim, key of usage_rollup, key of usage_histogram, the column grouped on)
_ROLLUP = {
    "model": ("m", "model", "key", "key"),
    "agent": ("a", "nullif(key, '')", "nullif(key, '')", "key"),
    "user": ("u", "nullif(key, '')", "nullif(key, '')", "key"),
    "session": ("s", "key", "key", "key"),
    "day": ("m", *["to_char(day, 'YYYY-MM-DD')"] * 2, "day"),
}
_SUMS = (
    "SELECT {key} AS k, model, "
    + ", ".join(f"sum({s})::bigint" for s in STATUS_COLUMNS)
    + ", sum(prompt)::bigint, sum(completion)::bigint, sum(total)::bigint "
    "FROM {table} WHERE tenant_id = $1::uuid AND dim = '{dim}'{days} GROUP BY {group}, model"
)
# One row per group and metric, its buckets and counts as arrays (decoded in C); the
# whole-history level has one row per bucket already, read in its key's order.
_HIST_ALL = (
    "SELECT {key} AS k, metric, array_agg(bucket), array_agg(n) FROM {table} "
    "WHERE tenant_id = $1::uuid AND dim = '{dim}'{days} GROUP BY {group}, metric"
)
_HIST = (
    "SELECT k, metric, array_agg(bucket), array_agg(n) FROM (SELECT {key} AS k, metric, "
    "bucket, sum(n)::bigint AS n FROM {table} WHERE tenant_id = $1::uuid AND dim = '{dim}'"
    "{days} GROUP BY {group}, metric, bucket) AS h GROUP BY k, metric"
)
_CALLS = (
    "SELECT {key} AS k, model, status, coalesce(prompt_tokens, 0), "
    "coalesce(completion_tokens, 0), coalesce(total_tokens, coalesce(prompt_tokens, 0) "
    "+ coalesce(completion_tokens, 0)), latency_ms, time_to_first_token_ms "
    "FROM {table} WHERE tenant_id = $1::uuid{period}"
)


class UsageReports(PooledStore):
    """Summarize a tenant's API calls of a period from the rollup and the period's edges."""

    @hookimpl
    async def threadline_summarize_usage(self, tenant_id: str, query: UsageQuery) -> list[UsageRow]:
        """The period's whole days from the rollup, its edges from the calls."""
        sums = UsageSums(query)
        days, edges = split_period(query.since, query.until)
        args: list[Any]
        if days is not None:
            dim, key, hist_key, group = _ROLLUP[query.group_by]
            where, args = "", [tenant_id]
            if days == (None, None) and query.group_by != "day":
                dim = dim.upper()  # the whole history: one row per group and model
                where = " AND day = DATE '1970-01-01'"
            for day, op in zip(days, (">=", "<")):
                if day is not None:
                    args.append(_EPOCH + timedelta(days=day))
                    where += f" AND day {op} ${len(args)}::date"
            table = self.config.table("usage_rollup")
            sql = _SUMS.format(key=key, table=table, dim=dim, days=where, group=group)
            for r in await self._fetch("summarize_usage", sql, *args):
                sums.add(r[0], r[1], dict(zip(STATUS_COLUMNS, r[2:7])), r[7], r[8], r[9])
            table = self.config.table("usage_histogram")
            for k, metric, bucket, n in await self._fetch(
                "summarize_usage",
                (_HIST_ALL if dim.isupper() else _HIST).format(
                    key=hist_key, table=table, dim=dim, days=where, group=group
                ),
                *args,
            ):
                sums.add_buckets(k, metric, bucket, n)
        key = _KEYS[query.group_by]
        for since, until in edges:
            where, args = "", [tenant_id]
            for bound, op in ((since, ">="), (until, "<")):
                if bound is not None:
                    args.append(bound)
                    where += f" AND created_at {op} ${len(args)}::timestamptz"
            sql = _CALLS.format(key=key, table=self.config.table("entity_api_call"), period=where)
            for k, model, status, prompt, completion, total, latency, ttft in await self._fetch(
                "summarize_usage", sql, *args
            ):
                sums.add(k, model, {status: 1}, prompt, completion, total)
                sums.add_value(k, LATENCY, latency)
                sums.add_value(k, TTFT, ttft)
        return sums.rows()
