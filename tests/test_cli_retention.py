"""Retention commands, in process, on a named memory store (through a local group)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import click
import pytest
from click.testing import CliRunner

import threadline
from threadline import Checkpoint, Message, Session
from threadline.cli.retention import (
    erase_user_command,
    parse_duration,
    prune_checkpoints_command,
    prune_sessions_command,
)
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.ids import new_id


@click.group()
def cli() -> None:
    """A stand-in root until the commands are registered in threadline.cli."""


@cli.group(name="sessions")
def sessions() -> None:
    """Sessions."""


@cli.group(name="checkpoints")
def checkpoints() -> None:
    """Checkpoints."""


cli.add_command(erase_user_command)
sessions.add_command(prune_sessions_command)
checkpoints.add_command(prune_checkpoints_command)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"THREADLINE_STORE": f"memory://cli-{new_id()}", "TENANT_ID": new_id()}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def seed(url: str, tenant: str, user: str, *, checkpoints: int = 0, old: bool = False) -> str:
    """A session with a message and a chain of checkpoints; its id."""

    async def go() -> str:
        store = await threadline.connect(url)
        try:
            at = datetime(2020, 1, 1, tzinfo=timezone.utc) if old else None
            fields = {} if at is None else {"created_at": at, "updated_at": at}
            session = await store.create_session(Session(tenant_id=tenant, user_id=user, **fields))
            if not old:
                await store.save_message(
                    Message(session_id=session.id, tenant_id=tenant, role="user", content="hi")
                )
            parent = None
            for i in range(checkpoints):
                parent = await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=tenant,
                        session_id=session.id,
                        node_id=f"n{i}",
                        parent_id=None if parent is None else parent.id,
                    )
                )
            return session.id
        finally:
            await store.close()

    return asyncio.run(go())


def test_parse_duration() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("30d") == timedelta(days=30)
    for bad in ("", "30", "d", "0d", "-3d", "3y"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_erase_user_dry_run_then_for_real(env: dict[str, str]) -> None:
    url, tenant, user = env["THREADLINE_STORE"], env["TENANT_ID"], new_id()
    seed(url, tenant, user, checkpoints=2)
    other_user = new_id()
    seed(url, tenant, other_user)
    args = ("erase-user", "--user", user)
    dry = json.loads(invoke(*args, "--dry-run", "--json"))
    assert dry["dry_run"] is True
    assert (dry["sessions"], dry["messages"], dry["checkpoints"]) == (1, 1, 2)
    assert (dry["messages_redacted"], dry["checkpoints_redacted"]) == (0, 0)
    assert "would delete" in invoke(*args, "--dry-run")
    done = json.loads(invoke(*args, "--json"))
    assert (done["sessions"], done["messages"], done["checkpoints"]) == (1, 1, 2)
    human = invoke(*args)
    assert "deleted" in human and "sessions" in human
    assert json.loads(invoke(*args, "--json"))["sessions"] == 0
    survivor = json.loads(invoke("erase-user", "--user", other_user, "--dry-run", "--json"))
    assert survivor["sessions"] == 1


def test_erase_user_needs_a_user(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["erase-user"])
    assert result.exit_code != 0 and "--user" in result.output


def test_sessions_prune_by_age(env: dict[str, str]) -> None:
    url, tenant, user = env["THREADLINE_STORE"], env["TENANT_ID"], new_id()
    seed(url, tenant, user, old=True)
    seed(url, tenant, new_id(), old=True)
    seed(url, tenant, user)
    dry = json.loads(invoke("sessions", "prune", "--older-than", "30d", "--dry-run", "--json"))
    assert dry["sessions"] == 2 and dry["dry_run"] is True
    out = invoke("sessions", "prune", "--older-than", "30d", "--user", user)
    assert out.startswith("deleted 1 session(s)")
    assert json.loads(invoke("sessions", "prune", "--older-than", "12h", "--json"))["sessions"] == 1
    assert json.loads(invoke("sessions", "prune", "--older-than", "90m", "--json"))["sessions"] == 0
    bad = CliRunner().invoke(cli, ["sessions", "prune", "--older-than", "soon"])
    assert bad.exit_code != 0 and "not a duration" in bad.output


def test_checkpoints_prune_keeps_the_newest(env: dict[str, str]) -> None:
    url, tenant = env["THREADLINE_STORE"], env["TENANT_ID"]
    session = seed(url, tenant, new_id(), checkpoints=5)
    dry = json.loads(invoke("checkpoints", "prune", session, "--keep", "2", "--dry-run", "--json"))
    assert dry["checkpoints"] == 3
    assert invoke("checkpoints", "prune", session, "--keep", "2").startswith(
        "deleted 3 checkpoint(s)"
    )
    again = json.loads(invoke("checkpoints", "prune", session, "--keep", "2", "--json"))
    assert again["checkpoints"] == 0
    zero = CliRunner().invoke(cli, ["checkpoints", "prune", session, "--keep", "0"])
    assert zero.exit_code != 0
    missing = CliRunner().invoke(cli, ["checkpoints", "prune", new_id(), "--keep", "1"])
    assert missing.exit_code != 0 and "no session" in missing.output


def test_sessions_prune_spares_a_graph_that_just_wrote_a_checkpoint(env: dict[str, str]) -> None:
    """Issue 11: a graph's checkpoints are its session's activity, so prune keeps it.

    The session was created a day ago (a long conversation); the graph ran just now and
    wrote only checkpoints (no messages, no model call). ``--older-than 3s`` must not
    count it, and the sessions list (most recently active first) must put it before a
    session last touched an hour ago.
    """
    url, tenant, user = env["THREADLINE_STORE"], env["TENANT_ID"], new_id()
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    strategy = Strategy("long-run")

    @strategy.node("plan")
    async def plan(ctx: GraphContext, topic: str) -> str:
        ctx.state["topic"] = topic
        return topic.upper()

    strategy.edge(strategy.start, plan).edge(plan, strategy.finish)

    async def run_graph() -> tuple[str, str, list[str]]:
        store = await threadline.connect(url)
        try:
            idle = await store.create_session(
                Session(tenant_id=tenant, user_id=user, created_at=an_hour_ago)
            )
            session = await store.create_session(
                Session(tenant_id=tenant, user_id=user, created_at=yesterday, title="long-run")
            )
            agent = GraphAgent(strategy, provider="echo", features=[Persistency(store)],
                               tenant_id=tenant, user_id=user)  # fmt: skip
            assert await agent.run("tides", session_id=session.id) == "TIDES"
            checkpoints = await store.list_checkpoints(tenant, session_id=session.id)
            assert [c.tombstone for c in checkpoints][-1] is True  # the run finished
            assert await store.get_messages(tenant, session.id) == []  # checkpoints only
            listed = [s.id for s in await store.list_sessions(tenant)]
            return session.id, idle.id, listed
        finally:
            await store.close()

    graph, idle, listed = asyncio.run(run_graph())
    assert listed == [graph, idle]  # most recently active first
    dry = json.loads(invoke("sessions", "prune", "--older-than", "3s", "--dry-run", "--json"))
    assert dry["sessions"] == 1  # the idle one only
    assert json.loads(invoke("sessions", "prune", "--older-than", "3s", "--json"))["sessions"] == 1
    again = json.loads(invoke("sessions", "prune", "--older-than", "3s", "--dry-run", "--json"))
    assert again["sessions"] == 0

    async def left() -> list[str]:
        store = await threadline.connect(url)
        try:
            return [s.id for s in await store.list_sessions(tenant)]
        finally:
            await store.close()

    assert asyncio.run(left()) == [graph]
