"""Usage reports (``threadline_summarize_usage``) from the rollup of migration 0010.

The whole UTC days of the period (all of history in one row per group and model when the
period is open at both ends) are read from ``usage_rollup`` (calls per status and
token sums per day, group and model) and ``usage_histogram`` (latency and time to first
token per log bucket), which triggers keep in every write's transaction
(:mod:`threadline_sqlite.usage_rollup`): a report costs what the period's rollup rows
are, not its calls. The parts of a day at either end of the period are read from the
calls themselves (``idx_api_call_usage``, migration 0007) and bucketed the same way.
Counts, tokens and cost are exact; percentiles come from the histograms, within
:data:`threadline.usage.RELATIVE_ERROR` (1.97 %) of the exact ones.
"""

from __future__ import annotations

from typing import Any

from threadline.storekit.sync import SyncStore
from threadline.usage import LATENCY, TTFT, UsageQuery, UsageRow, UsageSums, split_period
from threadline_sqlite.rows import to_us
from threadline_sqlite.usage_rollup import STATUS_COLUMNS
from threadline_sqlite.worker import connection

__all__ = ["UsageHooks"]

_DAY_KEY = "strftime('%Y-%m-%d', {day}, 'unixepoch')"
_KEYS = {
    "model": "model",
    "agent": "agent_id",
    "user": "user_id",
    "session": "session_id",
    "day": _DAY_KEY.format(day="created_at / 1000000"),
}
# group_by -> (dim, key of usage_rollup, key of usage_histogram, the column grouped on: a
# plain column, so the whole-history level is grouped in its primary key's order)
_ROLLUP = {
    "model": ("m", "model", "key", "key"),
    "agent": ("a", "nullif(key, '')", "nullif(key, '')", "key"),
    "user": ("u", "nullif(key, '')", "nullif(key, '')", "key"),
    "session": ("s", "key", "key", "key"),
    "day": ("m", *[_DAY_KEY.format(day="day * 86400")] * 2, "day"),
}
_SUMS = (
    "SELECT {key}, model, "
    + ", ".join(f"sum({s})" for s in STATUS_COLUMNS)
    + ", sum(prompt), sum(completion), sum(total) FROM usage_rollup "
    "WHERE tenant_id = ? AND dim = ?{days} GROUP BY {group}, model"
)
# One row per group and metric, its buckets and counts as text lists (one Python row for
# ~100 buckets: reading a row costs more than splitting its lists).
_HIST_ALL = (  # the whole-history level: one row per bucket already, in key order
    "SELECT {key}, metric, group_concat(bucket), group_concat(n) FROM usage_histogram "
    "WHERE tenant_id = ? AND dim = ?{days} GROUP BY {group}, metric"
)
_HIST = (
    "SELECT k, metric, group_concat(bucket), group_concat(n) FROM (SELECT {key} AS k, "
    "metric, bucket, sum(n) AS n FROM usage_histogram WHERE tenant_id = ? AND dim = ?{days} "
    "GROUP BY {group}, metric, bucket) GROUP BY k, metric"
)
_CALLS = (
    "SELECT {key}, model, status, coalesce(prompt_tokens, 0), coalesce(completion_tokens, 0), "
    "coalesce(total_tokens, coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), "
    "latency_ms, time_to_first_token_ms "
    "FROM entity_api_call INDEXED BY idx_api_call_usage WHERE tenant_id = ?{period}"
)


class UsageHooks(SyncStore):
    """Summarize a tenant's API calls of a period from the rollup and the period's edges."""

    def summarize_usage(self, tenant_id: str, query: UsageQuery) -> list[UsageRow]:
        db = connection()
        sums = UsageSums(query)
        args: list[Any]
        days, edges = split_period(query.since, query.until)
        if days is not None:
            dim, key, hist_key, group = _ROLLUP[query.group_by]
            where, args = "", [tenant_id, dim]
            if days == (None, None) and query.group_by != "day":
                args[1] = dim.upper()  # the whole history: one row per group and model
                where = " AND day = 0"
            for day, op in zip(days, (">=", "<")):
                if day is not None:
                    where += f" AND day {op} ?"
                    args.append(day)
            sql = _SUMS.format(key=key, days=where, group=group)
            for row in db.execute(sql, args):
                sums.add(row[0], row[1], dict(zip(STATUS_COLUMNS, row[2:7])), *row[7:])
            hist = _HIST_ALL if args[1].isupper() else _HIST
            sql = hist.format(key=hist_key, days=where, group=group)
            for k, metric, buckets, counts in db.execute(sql, args):
                sums.add_buckets(k, metric, map(int, buckets.split(",")),
                                 map(int, counts.split(",")))  # fmt: skip
        key = _KEYS[query.group_by]
        for since, until in edges:
            where, args = "", [tenant_id]
            for bound, op in ((since, ">="), (until, "<")):
                if bound is not None:
                    where += f" AND created_at {op} ?"
                    args.append(to_us(bound))
            for k, model, status, prompt, completion, total, latency, ttft in db.execute(
                _CALLS.format(key=key, period=where), args
            ):
                sums.add(k, model, {status: 1}, prompt, completion, total)
                sums.add_value(k, LATENCY, latency)
                sums.add_value(k, TTFT, ttft)
        return sums.rows()
