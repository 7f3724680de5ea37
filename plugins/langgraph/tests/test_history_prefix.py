"""A step's history reuses the previous step's conversion only while the messages are the same."""

from __future__ import annotations

import attrs
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from threadline_langgraph.messages import MessageCodec, is_message_list

TENANT = "00000000-0000-7000-8000-000000000001"
SESSION = "00000000-0000-7000-8000-000000000002"


def history(codec: MessageCodec, messages: list, session: str = SESSION) -> tuple:
    return codec.to_history(messages, tenant_id=TENANT, session_id=session, user_id=None)


def test_a_grown_list_reuses_the_stored_prefix() -> None:
    codec = MessageCodec(JsonPlusSerializer())
    first = [HumanMessage(content="hi", id="a"), AIMessage(content="hello", id="b")]
    before = history(codec, first)
    after = history(codec, [*first, HumanMessage(content="more", id="c")])
    assert after[:2] == before and all(x is y for x, y in zip(after, before))
    assert [m.content for m in after] == ["hi", "hello", "more"]


def test_a_message_changed_in_place_is_converted_again() -> None:
    codec = MessageCodec(JsonPlusSerializer())
    first = [HumanMessage(content="hi", id="a"), AIMessage(content="hello", id="b")]
    history(codec, first)
    first[1].content = "edited"
    assert [m.content for m in history(codec, first)] == ["hi", "edited"]
    first[1].id = "b2"
    assert history(codec, first)[1].metadata["lc"]["id"] == "b2"


def test_a_replaced_message_and_another_session_are_converted_again() -> None:
    codec = MessageCodec(JsonPlusSerializer())
    first = [HumanMessage(content="hi", id="a"), AIMessage(content="hello", id="b")]
    history(codec, first)
    replaced = [first[0], AIMessage(content="other", id="b")]
    assert [m.content for m in history(codec, replaced)] == ["hi", "other"]
    other = "00000000-0000-7000-8000-000000000003"
    assert {m.session_id for m in history(codec, replaced, other)} == {other}


def test_after_a_read_the_history_is_made_of_the_stored_objects() -> None:
    # The store finds a delta's shared prefix by identity first: the next history written
    # must hold the objects the store returned, not equal copies of them.
    codec = MessageCodec(JsonPlusSerializer())
    first = [HumanMessage(content="hi", id="a"), AIMessage(content="hello", id="b")]
    written = history(codec, first)
    read = tuple(attrs.evolve(m) for m in written)
    assert codec.from_history(read) == first
    again = history(codec, [*first, HumanMessage(content="more", id="c")])
    assert all(x is y for x, y in zip(again, read))


def test_a_grown_list_with_a_message_changed_in_place_is_converted_again() -> None:
    codec = MessageCodec(JsonPlusSerializer())
    first = [HumanMessage(content="hi", id="a"), AIMessage(content="hello", id="b")]
    assert history(codec, first) is history(codec, list(first))  # unchanged: the same tuple
    first[0].content = "edited"
    grown = history(codec, [*first, HumanMessage(content="more", id="c")])
    assert [m.content for m in grown] == ["edited", "hello", "more"]
    first[1].id = "b2"
    grown = history(codec, [*first, HumanMessage(content="more", id="c")])
    assert grown[1].metadata["lc"]["id"] == "b2"


class Note(AIMessage):
    """A message subclass: still a message."""


def test_message_lists_are_told_by_their_items() -> None:
    hi, note = HumanMessage(content="hi"), Note(content="n")
    assert is_message_list([hi, note, hi])
    assert not is_message_list([hi, "hi"])
    assert not is_message_list(["hi", hi])
    assert not is_message_list([])
    assert not is_message_list((hi,))
