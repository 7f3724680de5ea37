"""Conformance: usage reports (``Store.usage``) count, sum, rank and price every store alike.

A store that overrides ``threadline_summarize_usage`` must return what the core default
(:func:`threadline.usage.summarize_calls` over the store's own ``list_api_calls``) does:
the same groups, counts, tokens and cost, and percentiles within
:data:`threadline.usage.RELATIVE_ERROR` of the exact ones (a store may rank from a
log-bucket histogram).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from threadline import (
    ApiCall,
    ConfigurationError,
    ProviderRecord,
    Session,
    Store,
    ValidationError,
)
from threadline.ids import new_id
from threadline.plugins.dispatch import Binding
from threadline.storekit.defaults import DEFAULTS
from threadline.testing._support import Conversation, new_conversation
from threadline.usage import (
    GROUP_BYS,
    RELATIVE_ERROR,
    ModelPrice,
    UsageQuery,
    UsageReport,
    UsageRow,
)

_DAY = datetime(2026, 3, 14, tzinfo=timezone.utc)
_PRICES = {
    "big": ModelPrice(2.5, 10.0),
    "small": {"input_per_million": 0.125, "output_per_million": 0.5},
}


_PERCENTILES = ("latency_p50_ms", "latency_p95_ms", "ttft_p50_ms", "ttft_p95_ms")
PERCENTILE_TOLERANCE = RELATIVE_ERROR * (1 + 1e-9)
"""How far (relative) an override's percentile may be from the exact one."""


def _close(a: Any, b: Any, rel: float = 1e-9) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return bool(a == b)


def assert_same_rows(got: list[UsageRow], want: list[UsageRow]) -> None:
    """Equal rows: cost to 1e-9 relative (stores sum in their order), percentiles within
    :data:`PERCENTILE_TOLERANCE`, everything else exactly."""
    assert [r.key for r in got] == [r.key for r in want]
    for g, w in zip(got, want):
        gd, wd = g.to_dict(), w.to_dict()
        for k in wd:
            rel = PERCENTILE_TOLERANCE if k in _PERCENTILES else 1e-9
            assert _close(gd[k], wd[k], rel), (k, gd, wd)


async def default_rows(store: Store, tenant_id: str, query: UsageQuery) -> list[UsageRow]:
    """The core default's answer on ``store``'s own hooks (what an override must match)."""
    binding = Binding(store.pm, store.primary)
    rows = await DEFAULTS["threadline_summarize_usage"].function(
        binding, tenant_id=tenant_id, query=query
    )
    return sorted(rows, key=lambda r: (r.key is None, r.key or ""))


ROLLUP_PERIODS = [
    (None, None),
    (_DAY + timedelta(hours=7), None),
    (None, _DAY + timedelta(days=2, hours=3)),
    (_DAY + timedelta(hours=30), _DAY + timedelta(hours=31)),
]
"""Whole history, open-ended and part-day periods: a rollup's whole days and edges."""


async def fill_usage_calls(store: Store, tenant: str, users: list[str]) -> list[ApiCall]:
    """Save 60 calls an hour apart over 2.5 days in three sessions of two users: two models,
    failures, missing tokens, latencies and agents (what a usage rollup must sum right)."""
    sessions = [
        await store.create_session(Session(tenant_id=tenant, user_id=users[i % 2]))
        for i in range(3)
    ]
    saved = []
    for i in range(60):
        s = sessions[i % 3]
        saved.append(
            await store.save_api_call(
                ApiCall(
                    tenant_id=tenant, session_id=s.id, user_id=s.user_id,
                    agent_id=None if i % 4 == 0 else users[i % 2],
                    model=("big", "small")[i % 2], status=("success", "failed")[i % 5 == 0],
                    prompt_tokens=100 + i, completion_tokens=None if i % 6 == 0 else i,
                    latency_ms=None if i % 7 == 0 else 10.0 * (i + 1),
                    time_to_first_token_ms=float(i % 9), created_at=_DAY + timedelta(hours=i),
                )
            )
        )  # fmt: skip
    return saved


async def assert_usage_matches_default(store: Store, tenant: str) -> None:
    """Every ``group_by`` over every period of :data:`ROLLUP_PERIODS` answers as the core
    default does on the same calls (a store's own usage override, e.g. a rollup)."""
    for group_by in GROUP_BYS:
        for since, until in ROLLUP_PERIODS:
            query = UsageQuery(group_by, since, until, _PRICES)  # type: ignore[arg-type]
            report = await store.usage(tenant, since=since, until=until, group_by=group_by,
                                       prices=_PRICES)  # fmt: skip
            assert_same_rows(list(report.rows), await default_rows(store, tenant, query))


async def _call(conv: Conversation, at: datetime, **fields: Any) -> ApiCall:
    fields.setdefault("model", "big")
    fields.setdefault("status", "success")
    call = ApiCall(
        tenant_id=conv.tenant_id,
        session_id=conv.id,
        user_id=conv.session.user_id,
        created_at=at,
        **fields,
    )
    return await conv.store.save_api_call(call)


async def _mixed(store: Store) -> tuple[str, list[Conversation]]:
    """A tenant with three sessions (two users, two agents, keyless calls) over two days,
    and another tenant's calls that no report of the first may count."""
    agent_a, agent_b = new_id(), new_id()
    first = await new_conversation(store)
    t = first.tenant_id
    second = await new_conversation(store, tenant_id=t, user_id=first.session.user_id)
    third = await new_conversation(store, tenant_id=t)
    statuses = ("success", "success", "failed", "timeout", "rate_limited", "success")
    for i in range(24):
        conv = (first, second, third)[i % 3]
        at = _DAY + timedelta(hours=5 * i, microseconds=i * 37)
        await _call(
            conv,
            at,
            model=("big", "small", "unpriced")[i % 4 % 3],
            status=statuses[i % 6],
            agent_id=(agent_a, agent_b, None)[i % 5 % 3],
            prompt_tokens=None if i % 7 == 0 else 100 + 13 * i,
            completion_tokens=None if i % 5 == 0 else 7 * i,
            total_tokens=None if i % 2 else 1000 + i,
            latency_ms=None if i % 4 == 1 else 50.0 + (i * 37) % 23 + 0.25,
            time_to_first_token_ms=None if i % 3 == 2 else 5.0 + (i * 11) % 7,
        )
    intruder = await new_conversation(store)
    await _call(intruder, _DAY, prompt_tokens=10**6, latency_ms=1.0)
    return t, [first, second, third]


class UsageConformance:
    """``Store.usage``: per-group counts, tokens, percentiles and cost, as the default."""

    async def test_usage_every_grouping_matches_the_default(self, store: Store) -> None:
        t, convs = await _mixed(store)
        edge = _DAY + timedelta(hours=65, microseconds=13 * 37)  # exactly call 13's time
        later, then = _DAY + timedelta(hours=20), _DAY + timedelta(days=2)
        periods = [(None, None), (later, None), (None, then), (_DAY + timedelta(hours=15), edge)]
        for group_by in GROUP_BYS:
            for since, until in periods:
                report = await store.usage(
                    t, since=since, until=until, group_by=group_by, prices=_PRICES
                )
                query = UsageQuery(group_by, since, until, _PRICES)  # type: ignore[arg-type]
                assert_same_rows(list(report.rows), await default_rows(store, t, query))
        everything = await store.usage(t, group_by="session", prices=_PRICES)
        assert everything.calls == 24
        assert {r.key for r in everything.rows} == {c.id for c in convs}

    async def test_usage_numbers_of_one_group(self, store: Store) -> None:
        conv = await new_conversation(store)
        at = _DAY + timedelta(minutes=1)
        for latency, ttft, status in ((40.0, 4.0, "success"), (10.0, None, "failed"),
                                      (30.0, 2.0, "success"), (20.0, 8.0, "timeout")):  # fmt: skip
            await _call(conv, at, prompt_tokens=1000, completion_tokens=200, status=status,
                        latency_ms=latency, time_to_first_token_ms=ttft)  # fmt: skip
        await _call(conv, at, model="small", total_tokens=7)  # no prompt/completion counts
        report = await store.usage(conv.tenant_id, prices=_PRICES)
        big, small = report.rows
        assert (big.key, big.calls, small.key, small.calls) == ("big", 4, "small", 1)
        assert big.by_status == {"failed": 1, "success": 2, "timeout": 1}
        assert (big.prompt_tokens, big.completion_tokens, big.total_tokens) == (4000, 800, 4800)
        assert (small.prompt_tokens, small.total_tokens) == (0, 7)
        tol = PERCENTILE_TOLERANCE
        assert big.latency_p50_ms == pytest.approx(25.0, rel=tol)
        assert big.latency_p95_ms == pytest.approx(38.5, rel=tol)
        assert big.ttft_p50_ms == pytest.approx(4.0, rel=tol)
        assert big.ttft_p95_ms == pytest.approx(7.6, rel=tol)
        assert small.latency_p50_ms is None and small.ttft_p95_ms is None
        assert big.cost_usd == pytest.approx((4000 * 2.5 + 800 * 10.0) / 1e6)
        assert small.cost_usd == 0.0 and small.unpriced_calls == 0
        assert report.cost_usd == pytest.approx(0.018)
        unpriced = await store.usage(conv.tenant_id, prices={})
        assert [r.cost_usd for r in unpriced.rows] == [None, None]
        assert [r.unpriced_calls for r in unpriced.rows] == [4, 1]

    async def test_usage_period_is_since_inclusive_until_exclusive(self, store: Store) -> None:
        conv = await new_conversation(store)
        edge = _DAY + timedelta(microseconds=123457)
        for at in (edge - timedelta(microseconds=1), edge, edge + timedelta(microseconds=1)):
            await _call(conv, at)
        calls = [
            (await store.usage(conv.tenant_id, since=s, until=u)).calls
            for s, u in ((edge, None), (None, edge), (edge, edge + timedelta(microseconds=1)))
        ]
        assert calls == [2, 1, 1]

    async def test_usage_days_are_utc_dates_and_keyless_calls_come_last(self, store: Store) -> None:
        conv = await new_conversation(store)
        midnight = _DAY + timedelta(days=1)
        await _call(conv, midnight - timedelta(microseconds=1), agent_id=new_id())
        await _call(conv, midnight)
        await _call(conv, midnight + timedelta(hours=23, minutes=59))
        by_day = await store.usage(conv.tenant_id, group_by="day")
        assert [(r.key, r.calls) for r in by_day.rows] == [("2026-03-14", 1), ("2026-03-15", 2)]
        by_agent = await store.usage(conv.tenant_id, group_by="agent")
        assert [r.calls for r in by_agent.rows] == [1, 2] and by_agent.rows[-1].key is None

    async def test_usage_reports_are_scoped_to_the_tenant(self, store: Store) -> None:
        conv = await new_conversation(store)
        await _call(conv, _DAY, prompt_tokens=5)
        assert (await store.usage(new_id())).rows == ()
        report = await store.usage(conv.tenant_id, group_by="user")
        assert [(r.key, r.prompt_tokens) for r in report.rows] == [(conv.session.user_id, 5)]
        assert await store.delete_session(conv.tenant_id, conv.id)
        assert (await store.usage(conv.tenant_id)).rows == ()

    async def test_usage_prices_come_from_the_providers(self, store: Store) -> None:
        conv = await new_conversation(store)
        await _call(conv, _DAY, prompt_tokens=2_000_000, completion_tokens=1_000_000)
        provider = ProviderRecord(
            tenant_id=conv.tenant_id,
            name="openai",
            metadata={"prices": {"big": {"input_per_million": 1, "output_per_million": 4}}},
        )
        try:
            await store.save_provider(provider)
        except ConfigurationError:
            pytest.skip("the store keeps no provider configs")
        report = await store.usage(conv.tenant_id)
        assert isinstance(report, UsageReport) and report.cost_usd == 6.0
        again = ProviderRecord(
            tenant_id=conv.tenant_id,
            name="azure",
            metadata={"prices": {"big": {"input_per_million": 2, "output_per_million": 4}}},
        )
        await store.save_provider(again)
        with pytest.raises(ConfigurationError, match="different prices"):
            await store.usage(conv.tenant_id)
        assert (await store.usage(conv.tenant_id, prices={})).cost_usd is None

    async def test_usage_bad_input_is_refused(self, store: Store) -> None:
        t = new_id()
        naive = datetime(2026, 1, 1)
        for kwargs in (
            {"group_by": "week"},
            {"since": naive},
            {"until": "2026-01-01"},
            {"since": _DAY, "until": _DAY},
            {"prices": {"big": {"input_per_million": -1, "output_per_million": 1}}},
            {"prices": {"big": {"input_per_million": float("nan"), "output_per_million": 1}}},
            {"prices": {"big": {"input": 1}}},
            {"prices": ["big"]},
        ):
            with pytest.raises(ValidationError):
                await store.usage(t, **kwargs)
        with pytest.raises(ValidationError):
            await store.usage("not an id")
        with pytest.raises(ValidationError):
            ProviderRecord(tenant_id=t, name="p", metadata={"prices": {"m": True}})
