# mypy: disable-error-code="misc"
# (mypy's attrs plugin cannot follow converter factories such as _price("..."))
"""Usage and cost of model calls: the query, the report and the per-model prices.

:meth:`threadline.Store.usage` sums a tenant's API calls of a period per group (``model``,
``agent``, ``user``, ``session`` or UTC ``day``) into :class:`UsageRow` s. Prices are USD per
million tokens, kept per model in a provider's ``metadata["prices"]``
(``{"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}}``), checked when the
:class:`~threadline.models.ProviderRecord` is made. Percentiles interpolate linearly between
the two nearest values (PostgreSQL's ``percentile_cont``), over the calls that have a value.

A store may answer from a rollup kept on write instead of the calls themselves (SQLite and
PostgreSQL do, migration ``0010``): sums per UTC day and group, and for the percentiles a
log-bucket histogram of latency and time to first token. A value ``v`` falls in bucket
``k`` when ``BUCKET_BOUNDS[k - 1] <= v < BUCKET_BOUNDS[k]`` (:func:`bucket_of`, PostgreSQL's
``width_bucket``); the bounds are ``1.04 ** e`` for ``e`` from -118 to 470 (0.0098 ms to
1.0e8 ms) and a bucket stands for ``2 * lo * hi / (lo + hi)`` (:func:`bucket_value`), within
:data:`RELATIVE_ERROR` (1.97 %) of every value in it. A percentile interpolated between two
such values is within the same relative error of the exact one. Values under the lowest
bound count as 0 (off by less than 0.01 ms), values over the highest as 1.0e8 ms.
:class:`UsageSums` adds rollup rows, histogram buckets and raw calls into the report's rows.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, get_args

import attrs

from threadline.errors import ConfigurationError, ValidationError
from threadline.models import ApiCall, ProviderRecord, check_utc

__all__ = [
    "BUCKET_BOUNDS",
    "GROUP_BYS",
    "PRICES_KEY",
    "RELATIVE_ERROR",
    "GroupBy",
    "ModelPrice",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "UsageSums",
    "bucket_of",
    "bucket_value",
    "check_prices",
    "percentile",
    "prices_of",
    "split_period",
    "summarize_calls",
]

GroupBy = Literal["model", "agent", "user", "session", "day"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
PRICES_KEY = "prices"
"""The provider metadata key holding per-model prices."""
PERCENTILES = (0.5, 0.95)


def _price(field: str) -> Any:
    def convert(value: object) -> float:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or number < 0:
            raise ValidationError(f"{field} must be a finite number >= 0, got {value!r}")
        return float(number)

    return convert


_PRICE_FIELDS = {"input_per_million", "output_per_million"}


@attrs.frozen
class ModelPrice:
    """What one model costs: USD per million prompt (input) and completion (output) tokens."""

    input_per_million: float = attrs.field(converter=_price("input_per_million"))
    output_per_million: float = attrs.field(converter=_price("output_per_million"))

    @classmethod
    def parse(cls, model: str, value: object) -> ModelPrice:
        """A price from its metadata form ``{"input_per_million": x, "output_per_million": y}``."""
        if isinstance(value, ModelPrice):
            return value
        if not isinstance(value, Mapping) or set(value) != _PRICE_FIELDS:
            raise ValidationError(
                f"price of {model!r} must be {{'input_per_million': number, "
                f"'output_per_million': number}}, got {value!r}"
            )
        return cls(value["input_per_million"], value["output_per_million"])

    def to_dict(self) -> dict[str, float]:
        return {
            "input_per_million": self.input_per_million,
            "output_per_million": self.output_per_million,
        }


def check_prices(value: object) -> dict[str, ModelPrice]:
    """A ``model -> price`` mapping (metadata form or :class:`ModelPrice`), checked."""
    if not isinstance(value, Mapping):
        raise ValidationError(f"prices must be a mapping of model name to price, got {value!r}")
    out: dict[str, ModelPrice] = {}
    for model, price in value.items():
        if not isinstance(model, str) or not model.strip():
            raise ValidationError(f"a priced model needs a non-empty name, got {model!r}")
        out[model] = ModelPrice.parse(model, price)
    return out


def prices_of(providers: Iterable[ProviderRecord]) -> dict[str, ModelPrice]:
    """The per-model prices of a tenant's providers; one model priced two ways is an error."""
    out: dict[str, ModelPrice] = {}
    where: dict[str, str] = {}
    for provider in providers:
        for model, price in check_prices(provider.metadata.get(PRICES_KEY, {})).items():
            if model in out and out[model] != price:
                raise ConfigurationError(
                    f"model {model!r} has different prices in providers {where[model]!r} and "
                    f"{provider.name!r}: make them agree or pass prices= explicitly"
                )
            out[model], where[model] = price, provider.name
    return out


def _group_by(_inst: object, _attr: object, value: object) -> None:
    if value not in GROUP_BYS:
        raise ValidationError(f"group_by must be one of {', '.join(GROUP_BYS)}; got {value!r}")


def _opt_utc(field: str) -> Any:
    def convert(value: object) -> datetime | None:
        return None if value is None else check_utc(value, field)

    return convert


def _frozen_prices(value: object) -> tuple[tuple[str, ModelPrice], ...]:
    if isinstance(value, tuple):
        value = dict(value)
    return tuple(sorted(check_prices(value).items()))


@attrs.frozen
class UsageQuery:
    """A tenant's calls with ``since <= created_at < until`` (either open), grouped by
    ``group_by``, costed with ``prices`` (``(model, ModelPrice)`` pairs, sorted)."""

    group_by: GroupBy = attrs.field(default="model", validator=_group_by)
    since: datetime | None = attrs.field(default=None, converter=_opt_utc("since"))
    until: datetime | None = attrs.field(default=None, converter=_opt_utc("until"))
    prices: tuple[tuple[str, ModelPrice], ...] = attrs.field(
        factory=tuple, converter=_frozen_prices
    )

    def __attrs_post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValidationError(
                f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})"
            )

    def includes(self, at: datetime) -> bool:
        """True when a call made ``at`` falls in the period."""
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    def key(self, call: ApiCall) -> str | None:
        """The group a call belongs to (``None``: it has no agent or user)."""
        if self.group_by == "model":
            return call.model
        if self.group_by == "agent":
            return call.agent_id
        if self.group_by == "user":
            return call.user_id
        if self.group_by == "session":
            return call.session_id
        return call.created_at.date().isoformat()


@attrs.frozen
class UsageRow:
    """One group's calls: counts, tokens, latency and time-to-first-token percentiles (ms,
    over the calls that recorded one) and cost in USD (``None``: no call had a priced model).

    ``total_tokens`` counts a call's ``total_tokens``, or prompt + completion when it has
    none; ``unpriced_calls`` are the calls whose model has no price.
    """

    key: str | None
    calls: int
    by_status: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    cost_usd: float | None
    unpriced_calls: int

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class UsageReport:
    """A usage report: the query's period and grouping, one row per group (key order,
    calls without a key last)."""

    tenant_id: str
    group_by: str
    since: datetime | None
    until: datetime | None
    rows: tuple[UsageRow, ...]

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rows)

    @property
    def cost_usd(self) -> float | None:
        """The whole period's cost (``None``: nothing priced)."""
        costs = [r.cost_usd for r in self.rows if r.cost_usd is not None]
        return math.fsum(costs) if costs else None

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "group_by": self.group_by,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "calls": self.calls,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "rows": [r.to_dict() for r in self.rows],
        }


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """``percentile_cont(p)`` of ascending ``ordered``: linear between the nearest two."""
    return percentile_of_ranks(len(ordered), ordered, p)


def row_order(row: UsageRow) -> tuple[bool, str]:
    """Rows in key order, the keyless group last."""
    return (row.key is None, row.key or "")


class _Group:
    def __init__(self) -> None:
        self.by_status: dict[str, int] = {}
        self.prompt = self.completion = self.total = 0
        self.latency: list[float] = []
        self.ttft: list[float] = []
        self.cost_units = 0.0  # USD * 1e6, divided once at the end (as the SQL stores do)
        self.priced = 0

    def add(self, call: ApiCall, price: ModelPrice | None) -> None:
        self.by_status[call.status] = self.by_status.get(call.status, 0) + 1
        prompt, completion = call.prompt_tokens or 0, call.completion_tokens or 0
        self.prompt += prompt
        self.completion += completion
        self.total += call.total_tokens if call.total_tokens is not None else prompt + completion
        if call.latency_ms is not None:
            self.latency.append(call.latency_ms)
        if call.time_to_first_token_ms is not None:
            self.ttft.append(call.time_to_first_token_ms)
        if price is not None:
            self.priced += 1
            self.cost_units += prompt * price.input_per_million
            self.cost_units += completion * price.output_per_million

    def row(self, key: str | None) -> UsageRow:
        calls = sum(self.by_status.values())
        self.latency.sort()
        self.ttft.sort()
        return UsageRow(
            key=key,
            calls=calls,
            by_status={s: self.by_status[s] for s in sorted(self.by_status)},
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            total_tokens=self.total,
            latency_p50_ms=percentile(self.latency, 0.5),
            latency_p95_ms=percentile(self.latency, 0.95),
            ttft_p50_ms=percentile(self.ttft, 0.5),
            ttft_p95_ms=percentile(self.ttft, 0.95),
            cost_usd=self.cost_units / 1e6 if self.priced else None,
            unpriced_calls=calls - self.priced,
        )


def summarize_calls(calls: Iterable[ApiCall], query: UsageQuery) -> list[UsageRow]:
    """The report's rows from the calls themselves (the core default and the reference)."""
    prices = dict(query.prices)
    groups: dict[str | None, _Group] = {}
    for call in calls:
        if query.includes(call.created_at):
            key = query.key(call)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group()
            group.add(call, prices.get(call.model))
    return sorted((g.row(k) for k, g in groups.items()), key=row_order)


Aggregate = tuple[Any, str, str, int, int, int, int]
"""A SQL store's partial sums: (key, model, status, calls, prompt, completion, total tokens)."""
Percentiles = tuple["float | None", "float | None", "float | None", "float | None"]
"""Latency p50, p95 and time-to-first-token p50, p95 of one group."""


def rows_from_aggregates(
    aggregates: Iterable[Aggregate],
    percentiles: Mapping[Any, Percentiles],
    query: UsageQuery,
) -> list[UsageRow]:
    """The report's rows from sums per (key, model, status), as a SQL store reads them.

    Cost is priced per model from the token sums: ``(prompt * input + completion * output)``
    summed over the group's models, then divided by 1e6 (the default's sum, regrouped).
    """
    prices = dict(query.prices)
    groups: dict[Any, _Group] = {}
    for key, model, status, calls, prompt, completion, total in aggregates:
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        group.by_status[status] = group.by_status.get(status, 0) + calls
        group.prompt += prompt
        group.completion += completion
        group.total += total
        price = prices.get(model)
        if price is not None:
            group.priced += calls
            group.cost_units += prompt * price.input_per_million
            group.cost_units += completion * price.output_per_million
    rows = []
    for key, group in groups.items():
        row = group.row(None if key is None else str(key))
        p = percentiles.get(key, (None, None, None, None))
        rows.append(
            attrs.evolve(
                row, latency_p50_ms=p[0], latency_p95_ms=p[1], ttft_p50_ms=p[2], ttft_p95_ms=p[3]
            )
        )
    return sorted(rows, key=row_order)


def percentile_of_ranks(
    n: int, values: Mapping[int, float] | Sequence[float], p: float
) -> float | None:
    """``percentile_cont(p)`` of ``n`` ascending values, of which ``values`` needs to hold
    only the ranks (0-based) ``floor(p * (n - 1))`` and the next one."""
    if n == 0:
        return None
    h = p * (n - 1)
    lo, hi = math.floor(h), math.ceil(h)
    return values[lo] + (values[hi] - values[lo]) * (h - lo)


# -- rollups: day-split periods and log-bucket histograms -----------------------------------

GAMMA = 1.04
"""Each histogram bucket's upper bound over its lower one. Part of the stored format of
migration 0010 (SQLite and PostgreSQL): never change it, add a new format instead."""
BUCKET_EXPONENTS = (-118, 470)
BUCKET_BOUNDS: tuple[float, ...] = tuple(
    GAMMA**e for e in range(BUCKET_EXPONENTS[0], BUCKET_EXPONENTS[1] + 1)
)
"""Bucket ``k`` holds ``BUCKET_BOUNDS[k - 1] <= v < BUCKET_BOUNDS[k]``; 0 holds what is
below the first bound, ``len(BUCKET_BOUNDS)`` what is at or over the last."""
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)
"""The most a bucket's value (so a percentile from a histogram) is off, relative: 1.97 %."""
LATENCY, TTFT = 0, 1
"""The histogram ``metric`` of latency and of time to first token."""
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY = timedelta(days=1)


def bucket_of(value: float) -> int:
    """The histogram bucket of ``value`` (``width_bucket(value, BUCKET_BOUNDS)``)."""
    return bisect.bisect_right(BUCKET_BOUNDS, value)


def bucket_value(bucket: int) -> float:
    """The value that stands for ``bucket``: the harmonic mean of its bounds."""
    if bucket <= 0:
        return 0.0
    if bucket >= len(BUCKET_BOUNDS):
        return BUCKET_BOUNDS[-1]
    lo, hi = BUCKET_BOUNDS[bucket - 1], BUCKET_BOUNDS[bucket]
    return 2 * lo * hi / (lo + hi)


def histogram_percentile(histogram: Mapping[int, int], p: float) -> float | None:
    """``percentile_cont(p)`` of the values a ``bucket -> count`` histogram stands for."""
    n = sum(histogram.values())
    if n <= 0:
        return None
    h = p * (n - 1)
    wanted = {math.floor(h), math.ceil(h)}
    values: dict[int, float] = {}
    seen = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        for rank in wanted:
            if seen <= rank < seen + count:
                values[rank] = bucket_value(bucket)
        seen += count
        if len(values) == len(wanted):
            break
    return percentile_of_ranks(n, values, p)


def day_number(at: datetime) -> int:
    """The UTC day of ``at`` as days since 1970-01-01."""
    return (at - EPOCH) // _DAY


def day_start(day: int) -> datetime:
    return EPOCH + day * _DAY


Span = tuple["datetime | None", "datetime | None"]


def split_period(
    since: datetime | None, until: datetime | None
) -> tuple[tuple[int | None, int | None] | None, list[Span]]:
    """A period as whole UTC days ``(first, end)`` (``first <= day < end``, ``None``: open;
    ``None`` when no whole day is in it) and the parts outside them, to be read from the
    calls: at most a part of a day before and one after."""
    first = None if since is None else day_number(since)
    if since is not None and first is not None and day_start(first) < since:
        first += 1
    end = None if until is None else day_number(until)
    if first is not None and end is not None and first >= end:
        return None, [(since, until)]
    edges: list[Span] = []
    if since is not None and first is not None and day_start(first) > since:
        edges.append((since, day_start(first)))
    if until is not None and end is not None and day_start(end) < until:
        edges.append((day_start(end), until))
    return (first, end), edges


class _Sums:
    __slots__ = ("by_status", "completion", "cost_units", "hist", "priced", "prompt", "total")

    def __init__(self) -> None:
        self.by_status: dict[str, int] = {}
        self.prompt = self.completion = self.total = self.priced = 0
        self.cost_units = 0.0
        self.hist: tuple[dict[int, int], dict[int, int]] = ({}, {})


class UsageSums:
    """A report's rows from partial sums: rollup rows (calls per status and token sums per
    group and model), histogram buckets, and raw calls' values (bucketed the same way)."""

    def __init__(self, query: UsageQuery) -> None:
        self.prices = dict(query.prices)
        self.groups: dict[Any, _Sums] = {}

    def _group(self, key: Any) -> _Sums:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Sums()
        return group

    def add(
        self,
        key: Any,
        model: str,
        by_status: Mapping[str, int],
        prompt: int,
        completion: int,
        total: int,
    ) -> None:
        """One group's calls of one model: counts per status and token sums."""
        group = self._group(key)
        calls = 0
        for status, count in by_status.items():
            if count:
                group.by_status[status] = group.by_status.get(status, 0) + count
                calls += count
        group.prompt += prompt
        group.completion += completion
        group.total += total
        price = self.prices.get(model)
        if price is not None:
            group.priced += calls
            group.cost_units += prompt * price.input_per_million
            group.cost_units += completion * price.output_per_million

    def add_bucket(self, key: Any, metric: int, bucket: int, count: int) -> None:
        """``count`` values of ``metric`` (:data:`LATENCY` or :data:`TTFT`) in ``bucket``."""
        if count:
            hist = self._group(key).hist[metric]
            hist[bucket] = hist.get(bucket, 0) + count

    def add_buckets(
        self, key: Any, metric: int, buckets: Iterable[int], counts: Iterable[int]
    ) -> None:
        """Many buckets of one group and metric at once (``buckets[i]`` holds ``counts[i]``)."""
        hist = self._group(key).hist[metric]
        get = hist.get
        for bucket, count in zip(buckets, counts):
            if count:
                hist[bucket] = get(bucket, 0) + count

    def add_value(self, key: Any, metric: int, value: float | None) -> None:
        """One call's value of ``metric`` (``None``: it recorded none)."""
        if value is not None:
            hist = self._group(key).hist[metric]
            bucket = bucket_of(value)
            hist[bucket] = hist.get(bucket, 0) + 1

    def rows(self) -> list[UsageRow]:
        """One row per group with calls (a rollup keeps groups whose calls were deleted)."""
        rows = []
        for key, g in self.groups.items():
            calls = sum(g.by_status.values())
            if not calls:
                continue
            latency, ttft = g.hist
            rows.append(
                UsageRow(
                    key=None if key is None else str(key),
                    calls=calls,
                    by_status={s: g.by_status[s] for s in sorted(g.by_status)},
                    prompt_tokens=g.prompt,
                    completion_tokens=g.completion,
                    total_tokens=g.total,
                    latency_p50_ms=histogram_percentile(latency, 0.5),
                    latency_p95_ms=histogram_percentile(latency, 0.95),
                    ttft_p50_ms=histogram_percentile(ttft, 0.5),
                    ttft_p95_ms=histogram_percentile(ttft, 0.95),
                    cost_usd=g.cost_units / 1e6 if g.priced else None,
                    unpriced_calls=calls - g.priced,
                )
            )
        return sorted(rows, key=row_order)
