"""threadline.graph Persistency on memory://: checkpoints, resume, tombstones, rollback."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import pytest_asyncio

import threadline
from threadline import Checkpoint, ConflictError, NotFoundError
from threadline.graph import (
    FINISH,
    GraphAgent,
    GraphContext,
    Persistency,
    RollbackError,
    Strategy,
    inverse_of,
)
from threadline.ids import new_id


class Crash(Exception):
    """Stands in for a process dying in the middle of a node."""


@dataclasses.dataclass
class Draft:
    title: str
    words: int


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


def pipeline(calls: Counter[str], crash: dict[str, str | None]) -> Strategy:
    """plan -> write -> review -> finish; each node counts its calls and may crash."""
    s = Strategy("pipeline")

    def maybe_crash(name: str) -> None:
        calls[name] += 1
        if crash.get("at") == name:
            raise Crash(name)

    @s.node("plan")
    async def plan(ctx: GraphContext, topic: str) -> str:
        maybe_crash("plan")
        ctx.append("user", topic)
        ctx.state["topic"] = topic
        return topic.upper()

    @s.node("write")
    async def write(ctx: GraphContext, heading: str) -> Draft:
        maybe_crash("write")
        ctx.append("assistant", f"draft of {heading}")
        ctx.state["drafts"] = ctx.state.get("drafts", 0) + 1
        return Draft(heading, 3)

    @s.node("review")
    async def review(ctx: GraphContext, draft: Draft) -> str:
        assert isinstance(draft, Draft)  # rebuilt from its type name after a resume
        maybe_crash("review")
        ctx.append("assistant", f"reviewed {draft.title}")
        return f"{draft.title} ({draft.words} words, {ctx.state['drafts']} draft)"

    s.edge(s.start, plan).edge(plan, write).edge(write, review).edge(review, s.finish)
    return s


def make_agent(
    store: Any, calls: Counter[str], crash: dict[str, str | None], **kw: Any
) -> GraphAgent:
    persistency = Persistency(store, **kw)
    return GraphAgent(pipeline(calls, crash), provider="echo", features=[persistency])


async def test_automatic_checkpoint_after_every_node(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    agent = make_agent(store, calls, {})
    sid = new_id()
    assert await agent.run("tides", session_id=sid) == "TIDES (3 words, 1 draft)"
    checkpoints = await agent.persistency(sid).get_checkpoints()
    assert [c.version for c in checkpoints] == [1, 2, 3, 4]
    assert [c.node_id for c in checkpoints] == ["write", "review", FINISH, None]
    assert [c.properties["after"] for c in checkpoints] == ["plan", "write", "review", "review"]
    assert [c.properties["kind"] for c in checkpoints] == ["auto", "auto", "auto", "tombstone"]
    assert [c.tombstone for c in checkpoints] == [False, False, False, True]
    first, second, third, tomb = checkpoints
    assert (first.input, first.input_type) == ("TIDES", "str")
    assert second.input == {"title": "TIDES", "words": 3}
    assert second.input_type == f"{Draft.__module__}:Draft"
    assert (third.input, third.input_type) == ("TIDES (3 words, 1 draft)", "str")
    assert [m.content for m in first.history] == ["tides"]
    assert [m.content for m in second.history] == ["tides", "draft of TIDES"]
    assert first.state == {"topic": "tides"}
    assert second.state == {"topic": "tides", "drafts": 1}
    assert [c.parent_id for c in checkpoints] == [None, first.id, second.id, third.id]
    assert all(c.tenant_id == agent.tenant_id and c.session_id == sid for c in checkpoints)
    assert all(c.agent_id == agent.agent_id for c in checkpoints)
    assert tomb.history == third.history and tomb.state == third.state
    session = await store.get_session(agent.tenant_id, sid)
    assert session is not None and session.title == "pipeline"
    assert session.user_id == agent.user_id and session.agent_id == agent.agent_id


async def test_crash_then_resume_at_the_saved_node(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {"at": "review"}
    agent = make_agent(store, calls, crash)
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run("tides", session_id=sid)
    latest = await agent.persistency(sid).get_latest_checkpoint()
    assert latest is not None and latest.node_id == "review" and not latest.tombstone
    crash["at"] = None
    # A new agent object (as after a restart); the input is not used when resuming.
    again = make_agent(store, calls, crash)
    assert await again.run("ignored", session_id=sid) == "TIDES (3 words, 1 draft)"
    assert calls == Counter(plan=1, write=1, review=2)
    tomb = await again.persistency(sid).get_latest_checkpoint()
    assert tomb is not None and tomb.tombstone and tomb.parent_id is not None
    assert [m.content for m in tomb.history] == ["tides", "draft of TIDES", "reviewed TIDES"]
    assert [c.version for c in await again.persistency(sid).get_checkpoints()] == [1, 2, 3, 4]


async def test_crash_in_the_first_node_starts_over(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {"at": "plan"}
    agent = make_agent(store, calls, crash)
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run("tides", session_id=sid)
    assert await agent.persistency(sid).get_checkpoints() == []
    crash["at"] = None
    assert await agent.run("moons", session_id=sid) == "MOONS (3 words, 1 draft)"


async def test_tombstone_makes_the_next_run_start_fresh(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    agent = make_agent(store, calls, {})
    sid = new_id()
    await agent.run("tides", session_id=sid)
    assert await agent.run("moons", session_id=sid) == "MOONS (3 words, 1 draft)"
    assert calls == Counter(plan=2, write=2, review=2)
    checkpoints = await agent.persistency(sid).get_checkpoints()
    assert [c.version for c in checkpoints] == list(range(1, 9))
    assert checkpoints[4].parent_id is None  # a fresh run starts a new lineage
    assert [m.content for m in checkpoints[4].history] == ["moons"]


async def test_resumes_from_the_last_checkpoint_not_the_last_tombstone(
    store: threadline.Store,
) -> None:
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {}
    agent = make_agent(store, calls, crash)
    sid = new_id()
    await agent.run("tides", session_id=sid)
    crash["at"] = "write"
    with pytest.raises(Crash):
        await agent.run("moons", session_id=sid)
    crash["at"] = None
    assert await agent.run("x", session_id=sid) == "MOONS (3 words, 1 draft)"
    assert calls == Counter(plan=2, write=3, review=2)


async def test_manual_checkpoints_only_without_automatic(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    s = Strategy("manual")
    crash = {"at": "b"}

    @s.node("a")
    async def a(ctx: GraphContext, n: int) -> int:
        calls["a"] += 1
        return n + 1

    @s.node("b")
    async def b(ctx: GraphContext, n: int) -> int:
        calls["b"] += 1
        saved = await ctx.persistency().create_checkpoint(properties={"note": "entering b"})
        assert saved is not None and saved.node_id == "b" and saved.input == n
        ctx.state["b"] = "ran"
        if crash["at"] == "b":
            raise Crash("b")
        return n * 10

    s.edge(s.start, a).edge(a, b).edge(b, s.finish)
    agent = GraphAgent(s, provider="echo", features=[Persistency(store, automatic=False)])
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run(1, session_id=sid)
    (manual,) = await agent.persistency(sid).get_checkpoints()
    assert manual.properties["kind"] == "manual" and manual.properties["note"] == "entering b"
    crash["at"] = ""
    assert await agent.run(1, session_id=sid) == 20
    assert calls == Counter(a=1, b=2)
    kinds = [c.properties["kind"] for c in await agent.persistency(sid).get_checkpoints()]
    assert kinds == ["manual", "manual", "tombstone"]


# -- rollback ----------------------------------------------------------------------------


class Travel:
    """Tools with inverses, and a record of what was done and undone, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def tools(self) -> list[Any]:
        log = self.log

        def reserve_seat(seat: str) -> str:
            log.append(f"reserve {seat}")
            return f"seat {seat}"

        @inverse_of(reserve_seat)
        def release_seat(seat: str) -> None:
            log.append(f"release {seat}")

        def book_hotel(hotel: str) -> str:
            log.append(f"book {hotel}")
            return f"booking-{hotel}"

        async def cancel_hotel(hotel: str, tool_result: str) -> None:
            log.append(f"cancel {hotel} ({tool_result})")

        def charge(amount: int) -> str:
            log.append(f"charge {amount}")
            return "ok"

        def refund(amount: int) -> None:
            log.append(f"refund {amount}")

        self.inverses: dict[Any, Callable[..., Any]] = {book_hotel: cancel_hotel, "charge": refund}
        return [reserve_seat, book_hotel, charge]


def travel_strategy(calls: Counter[str], on_check: Any = None) -> Strategy:
    """search -> book -> check -> finish; ``on_check(ctx, n)`` runs inside ``check``."""
    s = Strategy("travel")

    @s.node("search")
    async def search(ctx: GraphContext, city: str) -> str:
        calls["search"] += 1
        await ctx.call_tool("reserve_seat", seat="1A")
        return city

    @s.node("book")
    async def book(ctx: GraphContext, city: str) -> str:
        calls["book"] += 1
        ctx.state["booked"] = calls["book"]
        await ctx.llm(f'tool:book_hotel {{"hotel": "{city}"}}')  # the model calls the tool
        await ctx.call_tool("charge", amount=100)
        return city

    @s.node("check")
    async def check(ctx: GraphContext, city: str) -> str:
        calls["check"] += 1
        if on_check is not None:
            await on_check(ctx, calls["check"])
        return f"trip to {city}"

    s.edge(s.start, search).edge(search, book).edge(book, check).edge(check, s.finish)
    return s


def travel_agent(
    store: Any, travel: Travel, calls: Counter[str], on_check: Any = None
) -> GraphAgent:
    tools = travel.tools()
    return GraphAgent(
        travel_strategy(calls, on_check),
        provider="echo",
        tools=tools,
        features=[Persistency(store, rollback_tools=travel.inverses)],
    )


async def test_rollback_inside_a_node_undoes_tools_newest_first(store: threadline.Store) -> None:
    travel, calls = Travel(), Counter[str]()
    seen: dict[str, Any] = {}

    async def on_check(ctx: GraphContext, n: int) -> None:
        if n > 1:
            return
        p = ctx.persistency()
        before_book = (await p.get_checkpoints())[0]
        assert before_book.node_id == "book"
        restored = await p.rollback_to_checkpoint(before_book.id)
        seen["restored"] = restored
        seen["history"] = ctx.history
        seen["state"] = dict(ctx.state)
        seen["target"] = before_book

    agent = travel_agent(store, travel, calls, on_check)
    sid = new_id()
    assert await agent.run("Oslo", session_id=sid) == "trip to Oslo"
    assert travel.log == [
        "reserve 1A",
        "book Oslo",
        "charge 100",
        "refund 100",  # newest first
        "cancel Oslo (booking-Oslo)",  # the inverse asked for the recorded result
        "book Oslo",  # the run went on from the restored node
        "charge 100",
    ]
    assert calls == Counter(search=1, book=2, check=2)
    target, restored = seen["target"], seen["restored"]
    assert seen["history"] == target.history and seen["state"] == {}
    assert restored.node_id == "book" and restored.parent_id == target.id
    assert restored.history == target.history and restored.input == target.input
    assert restored.properties["kind"] == "rollback"
    assert restored.properties["rolled_back_to"] == target.id
    assert len(restored.properties["undone_tool_calls"]) == 2
    kinds = [c.properties["kind"] for c in await agent.persistency(sid).get_checkpoints()]
    # the rollback's own checkpoint replaces the automatic one after `check`
    assert kinds == ["auto", "auto", "rollback", "auto", "auto", "tombstone"]


async def test_rollback_from_outside_in_another_agent(store: threadline.Store) -> None:
    travel, calls = Travel(), Counter[str]()
    agent = travel_agent(store, travel, calls)
    sid = new_id()
    await agent.run("Rome", session_id=sid)
    target = (await agent.persistency(sid).get_checkpoints())[0]
    travel.log.clear()
    # Another agent object (as in another process) finds the calls in the stored history.
    other = travel_agent(store, travel, calls)
    restored = await other.persistency(sid).rollback_to_checkpoint(target.id)
    assert travel.log == ["refund 100", "cancel Rome (booking-Rome)"]
    assert restored.node_id == "book" and not restored.tombstone
    latest = await other.persistency(sid).get_latest_checkpoint()
    assert latest == restored
    travel.log.clear()
    assert await other.run("unused", session_id=sid) == "trip to Rome"
    assert travel.log == ["book Rome", "charge 100"]
    assert calls == Counter(search=1, book=2, check=2)
    with pytest.raises(NotFoundError):
        await other.persistency(sid).rollback_to_checkpoint(new_id())
    tomb = await other.persistency(sid).get_latest_checkpoint()
    assert tomb is not None and tomb.tombstone
    with pytest.raises(threadline.ValidationError, match="finished run"):
        await other.persistency(sid).rollback_to_checkpoint(tomb.id)


async def test_failing_inverse_reports_and_still_rolls_back(store: threadline.Store) -> None:
    travel, calls = Travel(), Counter[str]()
    tools = travel.tools()

    def broken_refund(amount: int) -> None:
        raise RuntimeError("bank down")

    agent = GraphAgent(
        travel_strategy(calls),
        provider="echo",
        tools=tools,
        features=[Persistency(store, rollback_tools={**travel.inverses, "charge": broken_refund})],
    )
    sid = new_id()
    await agent.run("Lima", session_id=sid)
    target = (await agent.persistency(sid).get_checkpoints())[0]
    travel.log.clear()
    with pytest.raises(RollbackError, match="bank down") as caught:
        await agent.persistency(sid).rollback_to_checkpoint(target.id)
    assert travel.log == ["cancel Lima (booking-Lima)"]
    assert caught.value.failures[0][0] == "charge"
    written = caught.value.checkpoint
    assert written is not None and written.properties["failed_inverses"][0]["tool"] == "charge"
    assert await agent.persistency(sid).get_latest_checkpoint() == written


async def test_rollback_to_latest_inside_and_outside(store: threadline.Store) -> None:
    travel, calls = Travel(), Counter[str]()

    async def on_check(ctx: GraphContext, n: int) -> None:
        await ctx.call_tool("charge", amount=n)
        if n == 1:
            restored = await ctx.persistency().rollback_to_latest_checkpoint()
            assert restored is not None and restored.node_id == "check"
            assert restored.properties["after"] == "book"
            raise Crash("after rolling back")  # the rollback was written first

    agent = travel_agent(store, travel, calls, on_check)
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run("Kyiv", session_id=sid)
    assert travel.log[-2:] == ["charge 1", "refund 1"]
    assert await agent.run("-", session_id=sid) == "trip to Kyiv"
    assert calls == Counter(search=1, book=1, check=2)
    # outside a run: the latest checkpoint that is not a tombstone
    travel.log.clear()
    restored = await agent.persistency(sid).rollback_to_latest_checkpoint()
    assert restored is not None and restored.node_id == FINISH
    assert travel.log == []
    assert await agent.persistency(new_id()).rollback_to_latest_checkpoint() is None


async def test_set_execution_point_inside_and_outside(store: threadline.Store) -> None:
    travel, calls = Travel(), Counter[str]()

    async def on_check(ctx: GraphContext, n: int) -> None:
        if n == 1:
            note = ctx.message("user", "try Bergen instead")
            await ctx.persistency().set_execution_point("book", [note], "Bergen")

    agent = travel_agent(store, travel, calls, on_check)
    sid = new_id()
    assert await agent.run("Oslo", session_id=sid) == "trip to Bergen"
    assert calls == Counter(search=1, book=2, check=2)
    checkpoints = await agent.persistency(sid).get_checkpoints()
    jump = checkpoints[2]
    assert (jump.node_id, jump.input, jump.properties["after"]) == ("book", "Bergen", "check")
    assert [m.content for m in jump.history] == ["try Bergen instead"]

    p = agent.persistency(sid)
    with pytest.raises(threadline.graph.GraphError, match="no node named 'nowhere'"):
        await p.set_execution_point("nowhere")
    point = await p.set_execution_point("check", history=[], input="Tromsø", state={"k": 1})
    assert point is not None and point.properties["kind"] == "execution_point"
    assert await agent.run("-", session_id=sid) == "trip to Tromsø"
    assert calls == Counter(search=1, book=2, check=3)
    made = await p.create_checkpoint("search", "Bodø")
    assert made is not None and made.state == {"k": 1} and made.parent_id is not None
    assert await agent.run("-", session_id=sid) == "trip to Bodø"
    with pytest.raises(threadline.ValidationError, match="needs a node_id"):
        await p.create_checkpoint()


# -- storage -----------------------------------------------------------------------------


class SyncStorage:
    """Koog's custom provider contract, synchronous; versions assigned per session."""

    def __init__(self) -> None:
        self.saved: dict[str, list[Checkpoint]] = {}

    def get_checkpoints(self, agent_id: str) -> list[Checkpoint]:
        return list(self.saved.get(agent_id, []))

    def save_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        mine = self.saved.setdefault(checkpoint.agent_id or "", [])
        version = 1 + sum(c.session_id == checkpoint.session_id for c in mine)
        stored = attrs.evolve(checkpoint, version=version)
        mine.append(stored)
        return stored

    def get_latest_checkpoint(self, agent_id: str) -> Checkpoint | None:
        mine = self.saved.get(agent_id)
        return mine[-1] if mine else None


class AsyncStorage(SyncStorage):
    """The same contract with coroutines."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = asyncio.Lock()

    async def get_checkpoints(self, agent_id: str) -> list[Checkpoint]:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().get_checkpoints(agent_id)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:  # type: ignore[override]
        async with self.lock:
            await asyncio.sleep(0)
            return super().save_checkpoint(checkpoint)

    async def get_latest_checkpoint(self, agent_id: str) -> Checkpoint | None:  # type: ignore[override]
        return super().get_latest_checkpoint(agent_id)


@pytest.mark.parametrize("storage_class", [SyncStorage, AsyncStorage])
async def test_custom_storage_resumes_and_isolates(storage_class: type[SyncStorage]) -> None:
    storage = storage_class()
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {"at": "review"}
    agent = make_agent(storage, calls, crash)
    sid, other = new_id(), new_id()
    with pytest.raises(Crash):
        await agent.run("tides", session_id=sid)
    crash["at"] = None
    await agent.run("moons", session_id=other)  # another session of the same agent, finished
    assert await agent.run("-", session_id=sid) == "TIDES (3 words, 1 draft)"
    assert calls == Counter(plan=2, write=2, review=3)
    assert [c.version for c in await agent.persistency(sid).get_checkpoints()] == [1, 2, 3, 4]
    outsider = GraphAgent(
        pipeline(calls, crash), provider="echo", tenant_id=new_id(), features=[Persistency(storage)]
    )
    assert await outsider.persistency(sid).get_checkpoints() == []
    assert await outsider.persistency(sid).get_latest_checkpoint() is None


async def test_no_storage_keeps_nothing() -> None:
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {"at": "review"}
    agent = make_agent(None, calls, crash)
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run("tides", session_id=sid)
    assert await agent.persistency(sid).get_checkpoints() == []
    assert await agent.persistency(sid).get_latest_checkpoint() is None
    crash["at"] = None
    assert await agent.run("tides", session_id=sid) == "TIDES (3 words, 1 draft)"
    assert calls == Counter(plan=2, write=2, review=2)  # nothing to resume from


async def test_store_url_and_hook_object_storage() -> None:
    from threadline_memory.store import MemoryStore

    url = f"memory://graph-{new_id()}"
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {"at": "write"}
    agent = make_agent(url, calls, crash)
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run("tides", session_id=sid)
    await agent.close()  # closes the store Persistency opened from the URL
    crash["at"] = None
    again = make_agent(url, calls, crash)
    assert await again.run("-", session_id=sid) == "TIDES (3 words, 1 draft)"
    assert calls == Counter(plan=1, write=2, review=1)
    await again.close()

    hooks = make_agent(MemoryStore(), calls, crash)  # an object implementing the hooks
    await hooks.run("x", session_id=sid)
    assert len(await hooks.persistency(sid).get_checkpoints()) == 4


async def test_concurrent_checkpoints_get_unique_versions(store: threadline.Store) -> None:
    s = Strategy("fan-out")

    @s.node("spread")
    async def spread(ctx: GraphContext, n: int) -> int:
        p = ctx.persistency()
        made = await asyncio.gather(
            *(p.create_checkpoint("spread", i, properties={"branch": i}) for i in range(n))
        )
        return len({c.version for c in made if c is not None})

    s.edge(s.start, spread).edge(spread, s.finish)
    agent = GraphAgent(s, provider="echo", features=[Persistency(store)])
    other = GraphAgent(s, provider="echo", features=[Persistency(store)])
    sid = new_id()
    assert await agent.run(20, session_id=sid) == 20
    # two agents (as two processes would) writing to one session at once
    await asyncio.gather(
        *(
            a.persistency(sid).create_checkpoint("spread", i)
            for i in range(10)
            for a in (agent, other)
        )
    )
    versions = [c.version for c in await agent.persistency(sid).get_checkpoints()]
    assert versions == list(range(1, 43))


async def test_tenant_isolation(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    crash: dict[str, str | None] = {"at": "review"}
    owner = make_agent(store, calls, crash)
    sid = new_id()
    with pytest.raises(Crash):
        await owner.run("secret", session_id=sid)
    mine = await owner.persistency(sid).get_checkpoints()
    assert len(mine) == 2
    intruder = GraphAgent(
        pipeline(calls, crash), provider="echo", tenant_id=new_id(), features=[Persistency(store)]
    )
    p = intruder.persistency(sid)
    assert await p.get_checkpoints() == []
    assert await p.get_latest_checkpoint() is None
    assert await p.get_checkpoint(mine[0].id) is None
    with pytest.raises(NotFoundError):
        await p.rollback_to_checkpoint(mine[0].id)
    assert await p.rollback_to_latest_checkpoint() is None
    with pytest.raises(ConflictError):
        await p.set_execution_point("plan", [], "hijack")
    with pytest.raises(ConflictError):
        await intruder.run("hijack", session_id=sid)
    assert await owner.persistency(sid).get_checkpoints() == mine
    # another agent of the same tenant does not resume this agent's run either
    sibling = GraphAgent(pipeline(calls, crash), provider="echo", agent_id=new_id(),
                         features=[Persistency(store)])  # fmt: skip
    assert await sibling.persistency(sid).get_checkpoints() == []


async def test_a_checkpoint_the_strategy_cannot_resume_is_a_clear_error(
    store: threadline.Store,
) -> None:
    calls: Counter[str] = Counter()
    agent = make_agent(store, calls, {"at": "review"})
    sid = new_id()
    with pytest.raises(Crash):
        await agent.run("tides", session_id=sid)
    latest = await agent.persistency(sid).get_latest_checkpoint()
    assert latest is not None
    gone = attrs.evolve(latest, id=new_id(), node_id="retired", parent_id=latest.id)
    await store.create_checkpoint(gone)
    with pytest.raises(threadline.graph.GraphError, match="resumes at node 'retired'"):
        await agent.run("-", session_id=sid)
    moved = attrs.evolve(latest, id=new_id(), input_type="nowhere.at.all:Draft", parent_id=gone.id)
    await store.create_checkpoint(moved)
    with pytest.raises(threadline.graph.GraphError, match="cannot rebuild the input of node"):
        await agent.run("-", session_id=sid)


def test_inverse_registration() -> None:
    from threadline import Tool

    def ping(host: str) -> str:
        return host

    tool = Tool.from_function(ping)

    @inverse_of(tool)
    def unping(host: str) -> None: ...

    agent = GraphAgent(pipeline(Counter(), {}), provider="echo", tools=[tool])
    assert agent.inverses["ping"].function is unping
    with pytest.raises(threadline.ValidationError, match="not a tool of this agent"):
        GraphAgent(
            pipeline(Counter(), {}),
            provider="echo",
            tools=[tool],
            features=[Persistency(None, rollback_tools={"pong": unping})],
        )
