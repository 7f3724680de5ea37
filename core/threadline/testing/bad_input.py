"""Conformance: hostile input gets an exact round trip or a typed error, never damage."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from threadline import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    Store,
    ThreadlineError,
    ToolCall,
    ValidationError,
)
from threadline.ids import new_id
from threadline.models import MAX_INT, MAX_JSON_DEPTH
from threadline.testing._support import Conversation, new_conversation, without_seq

HOSTILE_TEXT = [
    "",
    "NUL\x00inside",
    "\x00",
    "emoji 🧵🚀👩🏽‍💻",
    "RTL \u202eevil\u202c עברית العربية",
    "combining e\u0301 and zero\u200bwidth",
    "'; DROP TABLE entity_message; --",
    'quote " backslash \\ percent %s %(x)s $1 ?',
    "line\r\nbreaks\rand\ttabs",
    "\ufeffBOM and \uffff noncharacter",
    "max \U0010ffff plane",
]


async def _snapshot(conv: Conversation) -> list[Message]:
    return await conv.messages()


def deep(depth: int) -> dict[str, Any]:
    """A dict exactly ``depth`` containers deep, alternating dicts and lists."""
    value: Any = {}
    for level in range(depth - 1):  # the outermost wrap (the last) is a dict
        value = {"k": value} if (depth - level) % 2 == 0 else [value]
    return value  # type: ignore[no-any-return]


def _json_fields(conv: Conversation, bad: Any) -> dict[str, Callable[[], object]]:
    """Every model field that holds caller JSON, filled with ``bad``."""
    t, s = conv.tenant_id, conv.id
    return {
        "message metadata": lambda: conv.message("user", "x", metadata=bad),
        "tool call arguments": lambda: conv.message(
            "assistant", tool_calls=[ToolCall(id="c1", name="f", arguments=bad)]
        ),
        "tool call dict": lambda: conv.message(
            "assistant", tool_calls=[{"id": "c1", "name": "f", "arguments": bad}]
        ),
        "session metadata": lambda: Session(tenant_id=t, metadata=bad),
        "checkpoint state": lambda: Checkpoint(tenant_id=t, session_id=s, state=bad),
        "checkpoint input": lambda: Checkpoint(tenant_id=t, session_id=s, input=bad),
        "checkpoint properties": lambda: Checkpoint(tenant_id=t, session_id=s, properties=bad),
        "api call metadata": lambda: ApiCall(
            tenant_id=t, session_id=s, model="m", status="success", metadata=bad
        ),
        "agent custom params": lambda: AgentRecord(
            tenant_id=t, code="c", name="n", custom_params=bad
        ),
        "agent response format": lambda: AgentRecord(
            tenant_id=t, code="c", name="n", response_format=bad
        ),
        "provider metadata": lambda: ProviderRecord(tenant_id=t, name="p", metadata=bad),
    }


@pytest.mark.asyncio
class BadInputConformance:
    """Invalid ids, NUL bytes, 5 MB payloads, any Unicode: round trip or typed error."""

    async def test_invalid_ids_raise_validation_error(self, store: Store) -> None:
        for bad in ("not-a-uuid", "../../etc/passwd", "", "1; DROP TABLE x", "\x00"):
            with pytest.raises(ValidationError):
                await store.get_session(new_id(), bad)
            with pytest.raises(ValidationError):
                await store.get_messages(bad, new_id())
            with pytest.raises(ValidationError):
                Message(session_id=bad, tenant_id=new_id(), role="user")
        with pytest.raises(ValidationError):
            Message(session_id=new_id(), tenant_id=new_id(), role="robot")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await store.load_window(new_id(), new_id(), -1)

    async def test_hostile_text_round_trips_or_is_refused(self, store: Store) -> None:
        conv = await new_conversation(store)
        kept = await conv.add("user", "already stored")
        for text in HOSTILE_TEXT:
            before = await _snapshot(conv)
            message = conv.message(
                "assistant", text, metadata={"k" + text: text}, name=text or None
            )
            try:
                stored = await store.save_message(message)
            except ValidationError:
                assert await _snapshot(conv) == before, f"store changed after refusing {text!r}"
                continue
            assert without_seq(stored) == message
            assert (await conv.messages())[-1] == stored, f"{text!r} did not round-trip"
        assert (await conv.messages())[0] == kept

    async def test_hostile_text_in_sessions_and_configs(self, store: Store) -> None:
        tenant = new_id()
        for text in HOSTILE_TEXT[1:]:
            session = Session(tenant_id=tenant, title=text, metadata={"t": text})
            try:
                stored = await store.create_session(session)
            except ValidationError:
                assert await store.get_session(tenant, session.id) is None
            else:
                assert stored == session
                assert await store.get_session(tenant, session.id) == session
            config = AgentConfig(
                agent=AgentRecord(tenant_id=tenant, code="c" + text, name=text, system_prompt=text)
            )
            try:
                await store.save_agent_config(config)
            except ValidationError:
                assert await store.load_agent_config(tenant_id=tenant, code="c" + text) is None
            else:
                assert await store.load_agent_config(tenant_id=tenant, code="c" + text) == config

    async def test_lone_surrogates_are_refused(self, store: Store) -> None:
        conv = await new_conversation(store)
        with pytest.raises(ValidationError):
            conv.message("user", "broken \ud800 text")
        with pytest.raises(ValidationError):
            Session(tenant_id=new_id(), title="\udfff")
        assert await conv.messages() == []

    async def test_five_megabytes_round_trip(self, store: Store) -> None:
        conv = await new_conversation(store)
        big = ("threadline ✓ " * 400_000)[: 5 * 1024 * 1024]
        message = conv.message("assistant", big, metadata={"blob": big[:100_000]})
        try:
            stored = await store.save_message(message)
        except ThreadlineError:
            assert await conv.messages() == []
            return
        [read] = await conv.messages()
        assert read == stored and read.content == big

    async def test_non_json_values_are_refused_whole(self, store: Store) -> None:
        conv = await new_conversation(store)
        kept = await conv.add("user", "kept")
        for bad in ({"x": object()}, {"nan": math.nan}, {"s": {1, 2}}):
            with pytest.raises(ValidationError):
                await store.save_message(conv.message("assistant", "x", metadata=bad))
            with pytest.raises(ValidationError):
                await store.save_messages(
                    [conv.message("assistant", "ok"), conv.message("user", "x", metadata=bad)]
                )
        assert await conv.messages() == [kept]
        assert (await conv.add("assistant", "next")).seq == 2

    async def test_lone_surrogates_nested_in_json_are_refused(self, store: Store) -> None:
        conv = await new_conversation(store)
        with pytest.raises(ValidationError):
            await store.save_message(conv.message("user", "ok", metadata={"k": "bad \udc00"}))
        assert await conv.messages() == []

    async def test_json_numbers_round_trip_exactly(self, store: Store) -> None:
        conv = await new_conversation(store)
        numbers = {"big_float": 1e23, "tiny": 5e-324, "big_int": 2**70, "neg": -0.5, "one": 1.0}
        stored = await store.save_message(conv.message("user", "n", metadata=numbers))
        [read] = await conv.messages()
        assert read.metadata == numbers == stored.metadata
        assert {k: type(v) for k, v in read.metadata.items()} == {
            k: type(v) for k, v in numbers.items()
        }

    async def test_json_nested_too_deep_is_refused(self, store: Store) -> None:
        """10,000 levels (and anything past MAX_JSON_DEPTH) is a ValidationError, never a
        RecursionError, in every JSON field; the limit itself round-trips."""
        conv = await new_conversation(store)
        kept = await conv.add("user", "kept")
        for depth in (MAX_JSON_DEPTH + 1, 10_000):
            for field, build in _json_fields(conv, deep(depth)).items():
                with pytest.raises(ValidationError, match="nested more than"):
                    build()
                    pytest.fail(f"{field} accepted {depth} levels")
        at_limit = deep(MAX_JSON_DEPTH)
        stored = await store.save_message(conv.message("assistant", "deep", metadata=at_limit))
        assert (await conv.messages())[-1] == stored and stored.metadata == at_limit
        state = await store.create_checkpoint(
            Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, state=at_limit, input=[1])
        )
        assert await store.get_checkpoint(conv.tenant_id, state.id) == state
        # A dict changed after the model was built is refused by the stores' codec.
        changed = conv.message("assistant", "changed")
        changed.metadata["deep"] = deep(10_000)
        with pytest.raises(ValidationError):
            await store.save_message(changed)
        assert await conv.messages() == [kept, stored]

    async def test_dict_keys_that_are_not_str_are_refused(self, store: Store) -> None:
        """JSON would store ``{1: "a"}`` as ``{"1": "a"}``: refused instead, at any depth."""
        conv = await new_conversation(store)
        kept = await conv.add("user", "kept")
        for bad in ({1: "a"}, {"ok": {None: 1}}, {"l": [{True: 1}]}, {"f": {(1, 2): 1}}):
            for field, build in _json_fields(conv, bad).items():
                with pytest.raises(ValidationError, match="not a str"):
                    build()
                    pytest.fail(f"{field} accepted {bad!r}")
        changed = conv.message("assistant", "changed")
        changed.metadata[1] = "a"  # type: ignore[index]
        with pytest.raises(ValidationError):
            await store.save_message(changed)
        assert await conv.messages() == [kept]

    async def test_counts_beyond_64_bits_are_refused_alike(self, store: Store) -> None:
        """Every store takes counts up to 2**63-1 and refuses larger ones the same way."""
        conv = await new_conversation(store)
        first = await conv.add_round(1)
        rest = await conv.add_round(2, tool=True)
        everything = first + rest
        t, s = conv.tenant_id, conv.id
        assert await store.load_window(t, s, MAX_INT) == everything
        assert await store.get_messages(t, s, limit=MAX_INT) == everything
        assert await store.get_messages(t, s, after_seq=MAX_INT) == []
        assert await store.list_sessions(t, limit=MAX_INT) == [await store.get_session(t, s)]
        assert await store.list_sessions(t, offset=MAX_INT) == []
        assert await store.prune_checkpoints(t, s, keep=MAX_INT) == 0
        calls: dict[str, Callable[[int], Awaitable[object]]] = {
            "load_window": lambda n: store.load_window(t, s, n),
            "get_messages limit": lambda n: store.get_messages(t, s, limit=n),
            "get_messages after_seq": lambda n: store.get_messages(t, s, after_seq=n),
            "list_sessions limit": lambda n: store.list_sessions(t, limit=n),
            "list_sessions offset": lambda n: store.list_sessions(t, offset=n),
            "prune_checkpoints keep": lambda n: store.prune_checkpoints(t, s, keep=n),
        }
        for huge in (MAX_INT + 1, 2**70):
            for name, call in calls.items():
                with pytest.raises(ValidationError, match="at most"):
                    await call(huge)
                    pytest.fail(f"{name} accepted {huge}")
        assert await conv.messages() == everything
