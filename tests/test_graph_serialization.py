"""threadline.graph serialisation: what inputs and state a checkpoint can hold."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import pytest_asyncio

import threadline
from threadline.graph import (
    CheckpointSerializationError,
    CheckpointWarning,
    GraphAgent,
    GraphContext,
    Persistency,
    Serializer,
    Strategy,
)
from threadline.graph.serialization import UnserialisableValue
from threadline.ids import new_id
from threadline.models import MAX_JSON_DEPTH


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Point:
    x: int
    y: int
    _label: str = "p"


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    lines: list[tuple[str, decimal.Decimal]]
    colour: Colour
    at: dt.datetime
    where: Point
    tags: frozenset[str] = frozenset()
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.total = len(self.lines)


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents

    __hash__ = None  # type: ignore[assignment]


def an_order() -> Order:
    return Order(
        id=uuid.uuid4(),
        lines=[("tea", decimal.Decimal("2.50")), ("cake", decimal.Decimal("4"))],
        colour=Colour.BLUE,
        at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        where=Point(1, 2, label="shop"),
        tags=frozenset({"b", "a"}),
    )


def test_round_trips_of_supported_types() -> None:
    s = Serializer()
    values: list[Any] = [
        None,
        True,
        3,
        2.5,
        "text",
        [1, [2, "3"]],
        {"a": {"b": [None]}},
        (1, 2),
        {3, 1},
        dt.date(2025, 1, 2),
        an_order(),
        {"$type": "looks like a tag", "$value": 1},
        {"nested": (Colour.RED, {"$type": 1})},
    ]
    for value in values:
        encoded = s.encode(value)
        assert json.loads(json.dumps(encoded, allow_nan=False)) == encoded
        assert s.decode(encoded) == value
        payload, type_name = s.encode_typed(value)
        rebuilt = s.decode_typed(payload, type_name)
        assert rebuilt == value and type(rebuilt) is type(value)
    assert s.encode_typed(an_order())[1] == f"{__name__}:Order"
    assert s.encode_typed((1, "a")) == ([1, "a"], "tuple")
    assert s.encode_typed("x") == ("x", "str")
    assert s.encode_typed(None) == (None, "None")


def test_registered_codecs() -> None:
    s = Serializer().register(Money, lambda m: m.cents, Money, name="money")
    payload, type_name = s.encode_typed(Money(250))
    assert (payload, type_name) == (250, "money")
    assert s.decode_typed(payload, type_name) == Money(250)
    assert s.decode(s.encode({"price": [Money(1)]})) == {"price": [Money(1)]}
    with pytest.raises(ValueError, match="reserved"):
        s.register(Money, lambda m: m.cents, Money, name="dict")


def test_unserialisable_values_name_their_path_and_type() -> None:
    s = Serializer()

    @dataclasses.dataclass
    class Local:
        n: int

    cases: list[tuple[Any, str, str]] = [
        ({"conn": threading.Lock()}, "value['conn']", "lock"),
        ([1, object()], "value[1]", "object"),
        (float("nan"), "value", "float"),
        ({1: "int key"}, "value key 1", "int"),
        (Local(1), "value", "Local"),
        (Money(1), "value", "Money"),
    ]
    for value, path, type_part in cases:
        with pytest.raises(UnserialisableValue) as caught:
            s.encode(value)
        assert caught.value.path == path
        assert type_part in caught.value.type_name
    with pytest.raises(UnserialisableValue, match="not importable"):
        s.encode(Local(1))


def opaque_strategy(calls: Counter[str], make_input: Any, make_state: Any) -> Strategy:
    s = Strategy("opaque")

    @s.node("load")
    async def load(ctx: GraphContext, text: str) -> Any:
        calls["load"] += 1
        ctx.state["ok"] = text
        ctx.state["handle"] = make_state()
        return make_input()

    @s.node("use")
    async def use(ctx: GraphContext, value: Any) -> str:
        calls["use"] += 1
        return type(value).__name__

    s.edge(s.start, load).edge(load, use).edge(use, s.finish)
    return s


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


async def test_unserialisable_input_is_a_clear_error(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    strategy = opaque_strategy(calls, object, lambda: 1)
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(store)])
    sid = new_id()
    with pytest.raises(CheckpointSerializationError) as caught:
        await agent.run("x", session_id=sid)
    error = caught.value
    assert "the input of node 'use' (after node 'load')" in str(error)
    assert "type 'object'" in str(error) and "strict=False" in str(error)
    assert (error.node, error.type_name, error.path) == ("use", "object", "input")
    assert isinstance(error, threadline.ValidationError)
    assert await agent.persistency(sid).get_checkpoints() == []


async def test_unserialisable_state_is_a_clear_error(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    strategy = opaque_strategy(calls, lambda: "fine", threading.Lock)
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(store)])
    with pytest.raises(CheckpointSerializationError) as caught:
        await agent.run("x")
    message = str(caught.value)
    assert "state['handle']" in message and "lock'" in message
    assert "after node 'load'" in message
    assert caught.value.node == "load"


async def test_checks_hold_without_storage_too() -> None:
    strategy = opaque_strategy(Counter(), object, lambda: 1)
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(None)])
    with pytest.raises(CheckpointSerializationError, match="node 'use'"):
        await agent.run("x")


async def test_lenient_mode_warns_and_skips(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    strategy = opaque_strategy(calls, object, threading.Lock)
    agent = GraphAgent(strategy, provider="echo", features=[Persistency(store, strict=False)])
    sid = new_id()
    with pytest.warns(CheckpointWarning) as record:
        assert await agent.run("x", session_id=sid) == "object"
    messages = [str(w.message) for w in record]
    assert any("the input of node 'use'" in m and "skipping this checkpoint" in m for m in messages)
    assert any("leaving out state['handle']" in m for m in messages)
    checkpoints = await agent.persistency(sid).get_checkpoints()
    # the checkpoint before `use` was skipped; the later ones leave the lock out
    assert [c.node_id for c in checkpoints] == ["__finish__", None]
    assert all(c.state == {"ok": "x"} for c in checkpoints)


async def test_dataclass_input_survives_a_resume(store: threadline.Store) -> None:
    calls: Counter[str] = Counter()
    s = Strategy("orders")
    fail = {"now": True}

    @s.node("take")
    async def take(ctx: GraphContext, text: str) -> Order:
        calls["take"] += 1
        ctx.state["colours"] = {Colour.RED, Colour.BLUE}
        return an_order()

    @s.node("ship")
    async def ship(ctx: GraphContext, order: Order) -> str:
        calls["ship"] += 1
        if fail["now"]:
            raise RuntimeError("crash")
        assert ctx.state["colours"] == {Colour.RED, Colour.BLUE}
        return f"{type(order).__name__} {order.where.x},{order.where.y} {order.lines[0][1]}"

    s.edge(s.start, take).edge(take, ship).edge(ship, s.finish)
    agent = GraphAgent(s, provider="echo", features=[Persistency(store)])
    sid = new_id()
    with pytest.raises(RuntimeError):
        await agent.run("x", session_id=sid)
    fail["now"] = False
    assert await agent.run("x", session_id=sid) == "Order 1,2 2.50"
    assert calls == Counter(take=1, ship=2)


def nested(depth: int) -> list[Any]:
    """A list ``depth`` containers deep: ``[[[]]]`` is 3."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def contains_itself() -> list[Any]:
    loop: list[Any] = [1]
    loop.append({"again": loop})
    return loop


def test_encoding_past_the_json_depth_is_a_validation_error() -> None:
    s = Serializer()
    assert s.decode(s.encode(nested(MAX_JSON_DEPTH))) == nested(MAX_JSON_DEPTH)
    for value in (nested(MAX_JSON_DEPTH + 1), nested(10_000), contains_itself()):
        with pytest.raises(threadline.ValidationError, match=f"more than {MAX_JSON_DEPTH} levels"):
            s.encode(value)
        with pytest.raises(threadline.ValidationError):
            s.encode_typed(value)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    "make", [lambda: nested(MAX_JSON_DEPTH + 1), lambda: nested(10_000), contains_itself]
)
async def test_state_too_deep_for_a_checkpoint_stops_the_run_with_a_validation_error(
    store: threadline.Store, make: Any, strict: bool
) -> None:
    """A graph state nested past MAX_JSON_DEPTH (10,000 deep, or containing itself) is the
    ValidationError a checkpoint of such JSON gets, in strict mode or not; the checkpoints
    written before it stay readable."""
    s = Strategy("deep")

    @s.node("plan")
    async def plan(ctx: GraphContext, text: str) -> str:
        ctx.state["plan"] = text
        return text

    @s.node("grow")
    async def grow(ctx: GraphContext, text: str) -> str:
        ctx.state["tree"] = make()
        return text

    s.edge(s.start, plan).edge(plan, grow).edge(grow, s.finish)
    agent = GraphAgent(s, provider="echo", features=[Persistency(store, strict=strict)])
    sid = new_id()
    with pytest.raises(threadline.ValidationError, match="nested more than") as caught:
        await agent.run("x", session_id=sid)
    assert not isinstance(caught.value, RecursionError)
    checkpoints = await agent.persistency(sid).get_checkpoints()
    assert [c.node_id for c in checkpoints] == ["grow"]  # the one before the failing node
    assert checkpoints[-1].state == {"plan": "x"}
