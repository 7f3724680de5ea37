"""Tool approvals on memory, SQLite, PostgreSQL and fsspec: a held payment is approved from a
second process and another rejected in a third; graph nodes hold calls through
``ctx.call_tool``; decisions race and hostile arguments fail typed, writing nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hitl_support import (
    CHAT,
    STORES,
    TENANT,
    USER,
    chat_agent,
    chat_main,
    hitl_postgres,  # noqa: F401  (fixture)
    make_url,
    note,
    pay_tool,
    run_child,
)

import threadline
from threadline.errors import ValidationError
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.graph.errors import InterruptError, ToolRejectedError
from threadline.graph.interrupts import Interrupted
from threadline.ids import new_id
from threadline.runtime.approvals import ApprovalRequired, requires_approval
from threadline.runtime.waiting import (
    ApprovalPendingError,
    NotWaitingError,
    list_waiting,
)


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


async def in_child(url: str, *args: str) -> dict[str, Any]:
    """Run ``chat_main`` in a fresh process (in this one for a memory store)."""
    if url.startswith("memory://"):
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            await chat_main([args[0], url, *args[1:]])
        return json.loads(out.getvalue())  # type: ignore[no-any-return]
    done = await asyncio.to_thread(run_child, CHAT, args[0], url, *args[1:])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def test_approved_in_a_second_process_rejected_in_a_third(url: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log.txt")
    store = await threadline.connect(url)
    try:
        paid, refused = new_id(), new_id()
        first = (await in_child(url, "chat", paid, log))["call_id"]
        second = (await in_child(url, "chat", refused, log))["call_id"]
        waiting = await list_waiting(store, TENANT, user_id=USER)
        assert sorted(w.session_id for w in waiting) == sorted([paid, refused])
        assert all(w.kind == "approval" and w.calls[0].name == "pay" for w in waiting)
        assert not Path(log).exists()  # nothing paid while held
        approved = await in_child(url, "approve", first, log, '{"to": "ada", "amount": 5}')
        assert approved == {"text": "Echo: paid 5 to ada"}
        rejected = await in_child(url, "reject", second, log, "over budget")
        assert rejected == {"text": "Echo: rejected: over budget"}
        late = await in_child(url, "reject", first, log, "too late")
        assert late["error"] == "NotWaitingError"
        assert Path(log).read_text().split("\n")[:-1] == ["pay ada 5"]
        history = await store.load_window(TENANT, paid)
        tool = next(m for m in history if m.role == "tool")
        assert tool.metadata["approval"]["arguments"] == {"to": "ada", "amount": 5}
        assert tool.metadata["approval"]["original_arguments"] == {"to": "ada", "amount": 10}
        held = next(m for m in history if m.role == "assistant" and m.tool_calls)
        assert held.metadata["approval"] == {"held": [first]}
        refused_tool = next(m for m in await store.load_window(TENANT, refused) if m.role == "tool")
        assert refused_tool.content == "rejected: over budget"
        assert refused_tool.metadata["error"] == "rejected"
        assert await list_waiting(store, TENANT) == []
    finally:
        await store.close()


async def test_held_turn_blocks_new_turns_and_bad_decisions_write_nothing(
    url: str, tmp_path: Path
) -> None:
    log = str(tmp_path / "log.txt")
    store = await threadline.connect(url)
    try:
        agent: Any = await chat_agent(store, log, new_id())
        pieces = [p async for p in agent.chat_stream('tool:pay {"to": "bo", "amount": 1}')]
        assert pieces[-1] == "" and isinstance(pieces[-1], ApprovalRequired)
        call = pieces[-1].calls[0]
        with pytest.raises(ApprovalPendingError):
            await agent.chat("something else")
        before = await store.list_checkpoints(TENANT, session_id=agent.session_id)
        for bad in ({"to": "x\x00"}, {"amount": float("inf")}, {"n": "y" * 1_100_000}, ["list"]):
            with pytest.raises(ValidationError):
                [p async for p in agent.approve(call.id, arguments=bad)]
        with pytest.raises(NotWaitingError):
            [p async for p in agent.approve("call_unknown")]
        assert await store.list_checkpoints(TENANT, session_id=agent.session_id) == before
        assert [c.id for c in await agent.pending_approvals()] == [call.id]
        racers = [await chat_agent(store, log) for _ in range(2)]
        outcomes = await asyncio.gather(
            *(_drain(a.approve(call.id)) for a in racers), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], NotWaitingError), outcomes
        assert Path(log).read_text().count("pay bo 1") == 1  # the tool ran once
        assert await agent.chat("and now?") == "Echo: and now?"
    finally:
        await store.close()


async def _drain(stream: Any) -> str:
    return "".join([p async for p in stream])


async def test_policy_and_builder_list_hold_only_some_calls(tmp_path: Path) -> None:
    log = str(tmp_path / "log.txt")

    @requires_approval(when=lambda to, amount: amount > 100)
    def refund(to: str, amount: float) -> str:
        """Refund someone."""
        note(log, f"refund {amount}")
        return "refunded"

    def wipe() -> str:
        """Delete everything."""
        return "wiped"

    store = await threadline.connect(f"memory://{new_id()}")
    agent = await (
        threadline.AgentBuilder("x")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_tools([refund, wipe])
        .with_approval(["wipe"])
        .build()
    )
    assert await agent.chat('tool:refund {"to": "a", "amount": 5}') == "Echo: refunded"
    big = [p async for p in agent.chat_stream('tool:refund {"to": "a", "amount": 500}')]
    assert isinstance(big[-1], ApprovalRequired)
    await _drain(agent.reject(big[-1].calls[0].id, "no"))
    held = [p async for p in agent.chat_stream("tool:wipe")]
    assert isinstance(held[-1], ApprovalRequired) and held[-1].calls[0].name == "wipe"
    await store.close()


def graph_payer(store: object, log: str) -> GraphAgent:
    strategy = Strategy("payer")

    @strategy.node("pay")
    async def pay(ctx: GraphContext, amount: float) -> str:
        note(log, "node")
        try:
            return await ctx.call_tool("pay", to="ada", amount=amount)
        except ToolRejectedError as exc:
            return f"not paid: {exc.reason}"

    strategy.edge(strategy.start, pay).edge(pay, strategy.finish)
    return GraphAgent(
        strategy,
        provider="echo",
        tenant_id=TENANT,
        user_id=USER,
        tools=[pay_tool(log)],  # type: ignore[list-item]
        features=[Persistency(store)],
    )


async def test_graph_nodes_hold_calls_through_call_tool(url: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log.txt")
    store = await threadline.connect(url)
    try:
        agent = graph_payer(store, log)
        yes, no = new_id(), new_id()
        held = await agent.run(10.0, session_id=yes)
        assert isinstance(held, Interrupted) and held.payload["type"] == "approval"
        [call] = held.payload["calls"]
        assert (call["name"], call["arguments"]) == ("pay", {"to": "ada", "amount": 10.0})
        [waiting] = await agent.waiting()
        assert waiting.calls[0].id == call["id"]
        other = graph_payer(store, log)  # another process's agent object
        done = await other.approve(call["id"], arguments={"to": "ada", "amount": 7})
        assert done == "paid 7 to ada"
        with pytest.raises(InterruptError):
            await other.reject(call["id"], "late")
        refused = await agent.run(3.0, session_id=no)
        assert await agent.reject(refused.payload["calls"][0]["id"], "nope") == "not paid: nope"
        assert Path(log).read_text().split("\n")[:-1] == [
            "node",
            "node",
            "pay ada 7",
            "node",
            "node",
        ]
        tomb = (await agent.persistency(yes).get_checkpoints())[-1]
        result = tomb.history[-1]
        assert result.metadata["approval"]["original_arguments"] == {"to": "ada", "amount": 10.0}
    finally:
        await store.close()
