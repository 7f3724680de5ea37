"""``threadline usage`` and ``agents add --price``, in process, on a named memory store."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner, Result

import threadline
from threadline import ApiCall, Session
from threadline.cli import cli
from threadline.cli.usage import parse_moment
from threadline.ids import new_id

NOW = datetime.now(timezone.utc)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"THREADLINE_STORE": f"memory://usage-{new_id()}", "TENANT_ID": new_id()}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def seed(env: dict[str, str]) -> None:
    """Two models over three days: 'big' is priced by the provider, 'other' is not."""

    async def go() -> None:
        store = await threadline.connect(env["THREADLINE_STORE"])
        t = env["TENANT_ID"]
        session = await store.create_session(Session(tenant_id=t))
        for i, (model, days, status) in enumerate(
            [("big", 0, "success"), ("big", 1, "failed"), ("other", 2, "success"),
             ("big", 10, "success")]
        ):  # fmt: skip
            await store.save_api_call(
                ApiCall(tenant_id=t, session_id=session.id, model=model, status=status,  # type: ignore[arg-type]
                        prompt_tokens=1_000_000, completion_tokens=100_000 * (i + 1),
                        latency_ms=100.0 * (i + 1), created_at=NOW - timedelta(days=days))
            )  # fmt: skip
        await store.close()

    asyncio.run(go())


def test_agents_add_keeps_prices_that_usage_costs_calls_with(env: dict[str, str]) -> None:
    seed(env)
    added = run("agents", "add", "--code", "bot", "--price", "big=2.5,10", "--json")
    assert added.exit_code == 0, added.output
    prices = json.loads(added.output)["provider"]["metadata"]["prices"]
    assert prices == {"big": {"input_per_million": 2.5, "output_per_million": 10.0}}
    result = run("usage", "--json", "--since", "7d")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = {r["key"]: r for r in report["rows"]}
    assert report["calls"] == 3 and set(rows) == {"big", "other"}
    assert rows["big"]["by_status"] == {"failed": 1, "success": 1}
    assert rows["big"]["cost_usd"] == pytest.approx(2 * 2.5 + 0.3 * 10)  # 2M in, 0.3M out
    assert rows["other"]["cost_usd"] is None and rows["other"]["unpriced_calls"] == 1
    assert rows["big"]["latency_p50_ms"] == 150.0


def test_the_table_by_day_and_the_whole_period(env: dict[str, str]) -> None:
    seed(env)
    result = run("usage", "--by", "day")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["day", "calls", "failed", "success"]
    days = [line.split()[0] for line in lines[2:-1]]
    assert days == sorted(days) and len(days) == 4
    assert lines[-1] == "4 calls, 5000000 tokens, cost unpriced"
    until = (NOW - timedelta(days=5)).date().isoformat()
    older = json.loads(run("usage", "--json", "--until", until).output)
    assert older["calls"] == 1 and older["until"].startswith(until)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "is neither a time ago"),
        (["--by", "week"], "'week' is not one of"),
        (["--since", "1d", "--until", "2d"], "--since must be before --until"),
        (["--tenant", "nope"], "ValidationError"),
    ],
)
def test_mistakes_are_one_line_errors(env: dict[str, str], args: list[str], message: str) -> None:
    seed(env)
    result = run("usage", *args)
    assert result.exit_code in (1, 2)
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_prices_are_refused_and_nothing_is_saved(env: dict[str, str]) -> None:
    seed(env)
    for price in ("big=1", "big=x,1", "=1,2", "big=-1,2", "big=nan,1"):
        result = run("agents", "add", "--code", "bot", "--price", price)
        assert result.exit_code in (1, 2), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert json.loads(run("agents", "list", "--json").output) == []


def test_parse_moment() -> None:
    now = datetime(2026, 3, 14, 12, tzinfo=timezone.utc)
    assert parse_moment("7d", now) == now - timedelta(days=7)
    assert parse_moment(" 90m", now) == now - timedelta(minutes=90)
    assert parse_moment("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=timezone.utc)
    aware = parse_moment("2026-03-01T10:00:00+02:00", now)
    assert aware == datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="neither"):
        parse_moment("yesterday", now)
