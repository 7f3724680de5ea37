"""``threadline checkpoints``: list, show and roll back a graph session, on a named memory store."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner, Result

from threadline.cli import cli as root
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy, inverse_of
from threadline.ids import new_id


class Crash(Exception):
    """Stands in for a process dying in the middle of a node."""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "THREADLINE_STORE": f"memory://cli-checkpoints-{new_id()}",
        "TENANT_ID": new_id(),
        "USER_ID": new_id(),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(root, ["checkpoints", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def refused(*args: str) -> str:
    result = CliRunner().invoke(root, ["checkpoints", *args])
    assert result.exit_code != 0 and result.exception is not None
    assert isinstance(result.exception, SystemExit), result.exception
    return result.output


def checkout_agent(env: dict[str, str], calls: Counter[str], log: list[str]) -> GraphAgent:
    """plan -> pay -> confirm -> finish; ``pay`` charges through a tool with an inverse."""
    s = Strategy("checkout")

    def charge(amount: int) -> str:
        log.append(f"charge {amount}")
        return "ok"

    @inverse_of(charge)
    def refund(amount: int) -> None:
        log.append(f"refund {amount}")

    @s.node("plan")
    async def plan(ctx: GraphContext, item: str) -> str:
        calls["plan"] += 1
        ctx.append("user", f"buy {item}")
        return item

    @s.node("pay")
    async def pay(ctx: GraphContext, item: str) -> str:
        calls["pay"] += 1
        await ctx.call_tool("charge", amount=5)
        return item

    @s.node("confirm")
    async def confirm(ctx: GraphContext, item: str) -> str:
        calls["confirm"] += 1
        if calls["confirm"] == 1:
            raise Crash("confirm")
        return f"bought {item}"

    s.edge(s.start, plan).edge(plan, pay).edge(pay, confirm).edge(confirm, s.finish)
    return GraphAgent(
        s,
        provider="echo",
        tools=[charge],
        tenant_id=env["TENANT_ID"],
        user_id=env["USER_ID"],
        features=[Persistency(env["THREADLINE_STORE"])],
    )


async def _run(agent: GraphAgent, session_id: str) -> Any:
    try:
        return await agent.run("tea", session_id=session_id)
    finally:
        await agent.close()


def crashed_session(env: dict[str, str]) -> tuple[str, Counter[str], list[str]]:
    """A session whose run crashed in ``confirm``, after paying."""
    calls: Counter[str] = Counter()
    log: list[str] = []
    session_id = new_id()
    with pytest.raises(Crash):
        asyncio.run(_run(checkout_agent(env, calls, log), session_id))
    return session_id, calls, log


def test_list_and_show(env: dict[str, str]) -> None:
    session_id, _, _ = crashed_session(env)
    listed = json.loads(invoke("list", session_id, "--json").output)
    assert [c["version"] for c in listed] == [1, 2]
    assert [c["node_id"] for c in listed] == ["pay", "confirm"]
    assert [c["messages"] for c in listed] == [1, 3]  # buy; then the tool call and its result
    assert all("history" not in c for c in listed)
    table = invoke("list", session_id).output.splitlines()
    assert table[0].split() == ["version", "id", "node", "kind", "created", "(UTC)", "tombstone"]
    assert table[2].split()[:4] == ["1", listed[0]["id"], "pay", "auto"]
    shown = json.loads(invoke("show", listed[1]["id"]).output)
    assert shown["id"] == listed[1]["id"] and shown["session_id"] == session_id
    assert [m["role"] for m in shown["history"]] == ["user", "assistant", "tool"]
    assert shown["history"][1]["tool_calls"][0]["name"] == "charge"


def test_rollback_writes_a_copy_the_next_run_resumes_from(env: dict[str, str]) -> None:
    session_id, calls, log = crashed_session(env)
    first, second = json.loads(invoke("list", session_id, "--json").output)
    result = invoke("rollback", session_id, first["id"])
    assert "back to version 1 (node 'pay')" in result.stdout
    assert "1 tool call(s) not undone: charge" in result.stderr
    assert "inverse tools do not run from the command line" in result.stderr
    listed = json.loads(invoke("list", session_id, "--json").output)
    assert [c["version"] for c in listed] == [1, 2, 3]
    written = json.loads(invoke("show", listed[-1]["id"]).output)
    assert written["parent_id"] == first["id"] and written["node_id"] == "pay"
    assert written["history"] == json.loads(invoke("show", first["id"]).output)["history"]
    props = written["properties"]
    assert props["kind"] == "rollback" and props["rolled_back_to"] == first["id"]
    assert props["rolled_back_to_version"] == 1 and props["rolled_back_by"] == "cli"
    assert props["strategy"] == "checkout" and props["after"] == "plan"
    assert len(props["skipped_tool_calls"]) == 1 and props["undone_tool_calls"] == []
    # The next run resumes at `pay` (the refund never ran: the CLI cannot run inverses).
    assert asyncio.run(_run(checkout_agent(env, calls, log), session_id)) == "bought tea"
    assert calls == Counter(plan=1, pay=2, confirm=2)
    assert log == ["charge 5", "charge 5"]
    assert second["node_id"] == "confirm"


def test_rollback_json_and_refusals(env: dict[str, str]) -> None:
    session_id, _, _ = crashed_session(env)
    first, second = json.loads(invoke("list", session_id, "--json").output)
    report = json.loads(invoke("rollback", session_id, second["id"], "--json").stdout)
    assert report["rolled_back_to"]["id"] == second["id"]
    assert report["checkpoint"]["version"] == 3 and report["not_undone_tool_calls"] == []
    assert "inverse tools do not run" in report["note"]
    assert "no checkpoint" in refused("rollback", new_id(), first["id"])  # another session
    assert "no checkpoint" in refused("rollback", session_id, new_id())
    assert "Inverse tools do not run" in invoke("rollback", "--help").output
    # A finished run's tombstone is no rollback target.
    calls: Counter[str] = Counter(confirm=1)
    asyncio.run(_run(checkout_agent(env, calls, []), session_id))
    tomb = json.loads(invoke("list", session_id, "--json").output)[-1]
    assert tomb["tombstone"] is True
    assert "finished run" in refused("rollback", session_id, tomb["id"])


def test_another_tenant_sees_and_changes_nothing(env: dict[str, str]) -> None:
    session_id, _, _ = crashed_session(env)
    first, _ = json.loads(invoke("list", session_id, "--json").output)
    other = new_id()
    assert "no session" in refused("list", session_id, "--tenant", other)
    assert "no checkpoint" in refused("show", first["id"], "--tenant", other)
    assert "no checkpoint" in refused("rollback", session_id, first["id"], "--tenant", other)
    assert len(json.loads(invoke("list", session_id, "--json").output)) == 2


def test_unknown_session(env: dict[str, str]) -> None:
    assert "no store at" in refused("list", new_id())  # the named store was never opened
    CliRunner().invoke(root, ["migrate", env["THREADLINE_STORE"]], catch_exceptions=False)
    assert "no session" in refused("list", new_id())
