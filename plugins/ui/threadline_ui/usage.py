"""API-call tables and the usage charts, drawn as inline SVG (no chart service, no script)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import attrs

from threadline.models import ApiCall
from threadline_ui.config import Price

__all__ = ["Bar", "Chart", "Usage", "summarise"]

CHART_WIDTH = 560
CHART_HEIGHT = 140
LATENCY_BINS = 10


@attrs.frozen
class Bar:
    """One bar of a chart: its box in SVG units and its label."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: float


@attrs.frozen
class Chart:
    title: str
    bars: list[Bar]
    maximum: float
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT

    @property
    def first_label(self) -> str:
        return self.bars[0].label if self.bars else ""

    @property
    def last_label(self) -> str:
        return self.bars[-1].label if self.bars else ""


@attrs.frozen
class CallRow:
    call: ApiCall
    cost: float | None


@attrs.frozen
class Usage:
    """Totals, rows and charts of a list of API calls."""

    rows: list[CallRow]
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    charts: list[Chart]


def cost_of(call: ApiCall, prices: Mapping[str, Price]) -> float | None:
    """USD for one call: ``metadata["cost_usd"]`` when recorded, else from ``prices``."""
    recorded = call.metadata.get("cost_usd")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return float(recorded)
    price = prices.get(call.model)
    return price.cost(call.prompt_tokens, call.completion_tokens) if price else None


def _bars(title: str, values: Sequence[tuple[str, float]]) -> Chart:
    maximum = max((v for _, v in values), default=0.0)
    n = max(len(values), 1)
    slot = CHART_WIDTH / n
    bars = []
    for i, (label, value) in enumerate(values):
        height = 0.0 if maximum <= 0 else (CHART_HEIGHT - 16) * value / maximum
        bars.append(
            Bar(
                round(i * slot + slot * 0.1, 2),
                round(CHART_HEIGHT - height, 2),
                round(max(slot * 0.8, 1), 2),
                round(height, 2),
                label,
                value,
            )
        )
    return Chart(title, bars, maximum)


def _buckets(calls: Sequence[ApiCall]) -> tuple[list[datetime], timedelta, str]:
    first = min(c.created_at for c in calls).astimezone(timezone.utc)
    last = max(c.created_at for c in calls).astimezone(timezone.utc)
    if last - first <= timedelta(hours=2):
        step, fmt = timedelta(minutes=5), "%H:%M"
        start = first.replace(minute=first.minute - first.minute % 5, second=0, microsecond=0)
    elif last - first <= timedelta(days=2):
        step, fmt = timedelta(hours=1), "%m-%d %H:00"
        start = first.replace(minute=0, second=0, microsecond=0)
    else:
        step, fmt = timedelta(days=1), "%Y-%m-%d"
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    edges = [start]
    while edges[-1] + step <= last:
        edges.append(edges[-1] + step)
    return edges[-60:], step, fmt


def summarise(calls: Sequence[ApiCall], prices: Mapping[str, Price]) -> Usage:
    """Totals, per-call rows (newest first) and three charts: calls and tokens over time,
    and the latency distribution."""
    rows = [CallRow(c, cost_of(c, prices)) for c in reversed(calls)]
    costs = [r.cost for r in rows if r.cost is not None]
    charts: list[Chart] = []
    if calls:
        edges, step, fmt = _buckets(calls)
        counts = [0.0] * len(edges)
        tokens = [0.0] * len(edges)
        for c in calls:
            at = c.created_at.astimezone(timezone.utc)
            index = min(max(int((at - edges[0]) / step), 0), len(edges) - 1)
            counts[index] += 1
            tokens[index] += c.total_tokens or 0
        labels = [e.strftime(fmt) for e in edges]
        charts.append(_bars("API calls over time", list(zip(labels, counts))))
        charts.append(_bars("Tokens over time", list(zip(labels, tokens))))
        latencies = [c.latency_ms for c in calls if c.latency_ms is not None]
        if latencies:
            low, high = min(latencies), max(latencies)
            width = (high - low) / LATENCY_BINS or 1.0
            bins = [0.0] * LATENCY_BINS
            for value in latencies:
                bins[min(int((value - low) / width), LATENCY_BINS - 1)] += 1
            charts.append(
                _bars(
                    "Latency distribution (ms)",
                    [(f"{low + i * width:.0f}", v) for i, v in enumerate(bins)],
                )
            )
    return Usage(
        rows,
        len(calls),
        sum(1 for c in calls if c.status != "success"),
        sum(c.prompt_tokens or 0 for c in calls),
        sum(c.completion_tokens or 0 for c in calls),
        sum(c.total_tokens or 0 for c in calls),
        sum(costs) if costs else None,
        charts,
    )
