"""Usage reports (``threadline_summarize_usage``) answered by SQL on the usage index.

The period's calls are read from ``idx_api_call_usage`` (migration 0007: ``(tenant_id,
created_at)`` covering every column used), summed per (group, model, status) in one query
and priced per model in Python. SQLite has no ``percentile_cont``: a second query ranks each
group's values with ``row_number()`` and returns only the two ranks around each percentile,
which :func:`threadline.usage.percentile_of_ranks` interpolates, so the percentiles are exact
(the same numbers as PostgreSQL's) at the cost of one sort of the period's values.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from threadline.storekit.sync import SyncStore
from threadline.usage import (
    PERCENTILES,
    Percentiles,
    UsageQuery,
    UsageRow,
    percentile_of_ranks,
    rows_from_aggregates,
)
from threadline_sqlite.rows import to_us
from threadline_sqlite.worker import connection

__all__ = ["UsageHooks"]

_KEYS = {
    "model": "model",
    "agent": "agent_id",
    "user": "user_id",
    "session": "session_id",
    "day": "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
}
_FROM = "FROM entity_api_call INDEXED BY idx_api_call_usage WHERE tenant_id = ?"
_SUMS = (
    "SELECT {key}, model, status, count(*), sum(coalesce(prompt_tokens, 0)), "
    "sum(coalesce(completion_tokens, 0)), sum(coalesce(total_tokens, "
    "coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0))) {where} "
    "GROUP BY 1, 2, 3"
)
_AROUND = " OR ".join(
    f"(i BETWEEN CAST((n - 1) * {p} AS INTEGER) AND CAST((n - 1) * {p} AS INTEGER) + 1)"
    for p in PERCENTILES
)
_RANKS = (
    "SELECT k, n, i, v FROM (SELECT {key} AS k, {column} AS v, "
    "row_number() OVER (PARTITION BY {key} ORDER BY {column}) - 1 AS i, "
    "count(*) OVER (PARTITION BY {key}) AS n {where} AND {column} IS NOT NULL) "
    f"WHERE {_AROUND}"
)


class UsageHooks(SyncStore):
    """Summarize a tenant's API calls of a period from the usage index."""

    def summarize_usage(self, tenant_id: str, query: UsageQuery) -> list[UsageRow]:
        where, args = _FROM, [tenant_id]
        if query.since is not None:
            where += " AND created_at >= ?"
            args.append(to_us(query.since))  # type: ignore[arg-type]
        if query.until is not None:
            where += " AND created_at < ?"
            args.append(to_us(query.until))  # type: ignore[arg-type]
        key = _KEYS[query.group_by]
        db = connection()
        sums = db.execute(_SUMS.format(key=key, where=where), args).fetchall()
        found: dict[Any, list[float | None]] = defaultdict(lambda: [None] * 4)
        for c, column in enumerate(("latency_ms", "time_to_first_token_ms")):
            ranks: dict[Any, tuple[int, dict[int, float]]] = {}
            sql = _RANKS.format(key=key, column=column, where=where)
            for k, n, i, v in db.execute(sql, args):
                ranks.setdefault(k, (n, {}))[1][i] = v
            for k, (n, values) in ranks.items():
                for j, p in enumerate(PERCENTILES):
                    found[k][2 * c + j] = percentile_of_ranks(n, values, p)
        percentiles: dict[Any, Percentiles] = {k: tuple(v) for k, v in found.items()}  # type: ignore[misc]
        return rows_from_aggregates(sums, percentiles, query)
