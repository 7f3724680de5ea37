"""Conformance: hostile input gets an exact round trip or a typed error, never damage."""

from __future__ import annotations

import math

import pytest

from threadline import (
    AgentConfig,
    AgentRecord,
    Message,
    Session,
    Store,
    ThreadlineError,
    ValidationError,
)
from threadline.ids import new_id
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
