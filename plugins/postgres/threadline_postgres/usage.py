"""Usage reports (``threadline_summarize_usage``) as one aggregate query on the usage index.

The period's calls come from ``entity_api_call_usage`` (migration 0007: ``(tenant_id,
created_at)`` including every column used, so an index-only scan once the table is
vacuumed). One ``GROUP BY`` returns per group the calls by status (``FILTER``), the token
sums, the cost (the query's prices joined as an ``unnest`` of arrays) and the exact
percentiles (``percentile_cont``, which skips ``NULL`` s).
"""

from __future__ import annotations

from typing import Any

from threadline.hookspecs import hookimpl
from threadline.models import API_CALL_STATUSES
from threadline.usage import PERCENTILES, UsageQuery, UsageRow, row_order
from threadline_postgres.pool import PooledStore

__all__ = ["UsageReports"]

_STATUSES = tuple(sorted(API_CALL_STATUSES))
_KEYS = {
    "model": "c.model",
    "agent": "c.agent_id::text",
    "user": "c.user_id::text",
    "session": "c.session_id::text",
    "day": "to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
_PCT = "ARRAY[" + ", ".join(str(p) for p in PERCENTILES) + "]::float8[]"
_SELECT = (
    "SELECT {key} AS k, count(*) AS calls, "
    + ", ".join(f"count(*) FILTER (WHERE c.status = '{s}') AS \"{s}\"" for s in _STATUSES)
    + ", sum(coalesce(c.prompt_tokens, 0))::bigint AS prompt, "
    "sum(coalesce(c.completion_tokens, 0))::bigint AS completion, "
    "sum(coalesce(c.total_tokens, coalesce(c.prompt_tokens, 0) "
    "+ coalesce(c.completion_tokens, 0)))::bigint AS total, "
    f"percentile_cont({_PCT}) WITHIN GROUP (ORDER BY c.latency_ms) AS latency, "
    f"percentile_cont({_PCT}) WITHIN GROUP (ORDER BY c.time_to_first_token_ms) AS ttft, "
    "sum(coalesce(c.prompt_tokens, 0) * p.inp + coalesce(c.completion_tokens, 0) * p.outp) "
    "AS cost_units, count(p.model) AS priced "
    "FROM {table} c LEFT JOIN unnest($2::text[], $3::float8[], $4::float8[]) "
    "AS p(model, inp, outp) ON p.model = c.model "
    "WHERE c.tenant_id = $1::uuid{period} GROUP BY 1"
)


def _pair(values: list[float | None] | None) -> tuple[float | None, float | None]:
    return (None, None) if values is None else (values[0], values[1])


def _row(r: Any) -> UsageRow:
    latency, ttft = _pair(r["latency"]), _pair(r["ttft"])
    return UsageRow(
        key=r["k"],
        calls=r["calls"],
        by_status={s: r[s] for s in _STATUSES if r[s]},
        prompt_tokens=r["prompt"],
        completion_tokens=r["completion"],
        total_tokens=r["total"],
        latency_p50_ms=latency[0],
        latency_p95_ms=latency[1],
        ttft_p50_ms=ttft[0],
        ttft_p95_ms=ttft[1],
        cost_usd=r["cost_units"] / 1e6 if r["priced"] else None,
        unpriced_calls=r["calls"] - r["priced"],
    )


class UsageReports(PooledStore):
    """Summarize a tenant's API calls of a period in one query."""

    @hookimpl
    async def threadline_summarize_usage(self, tenant_id: str, query: UsageQuery) -> list[UsageRow]:
        """One aggregate over the usage index (see the module)."""
        args: list[Any] = [tenant_id, [m for m, _ in query.prices],
                           [p.input_per_million for _, p in query.prices],
                           [p.output_per_million for _, p in query.prices]]  # fmt: skip
        period = ""
        for bound, op in ((query.since, ">="), (query.until, "<")):
            if bound is not None:
                args.append(bound)
                period += f" AND c.created_at {op} ${len(args)}::timestamptz"
        sql = _SELECT.format(
            key=_KEYS[query.group_by], table=self.config.table("entity_api_call"), period=period
        )
        rows = await self._fetch("summarize_usage", sql, *args)
        return sorted((_row(r) for r in rows), key=row_order)
