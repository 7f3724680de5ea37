"""Models: validation, UUIDv7 ids, UTC times and exact JSON round trips."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    ToolCall,
    ValidationError,
    models,
)
from threadline.codec import dump_json
from threadline.ids import check_id, new_id
from threadline.models import MAX_JSON_DEPTH, check_json, from_json, to_json

T, S = new_id(), new_id()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def test_new_ids_are_uuid7_unique_and_ordered() -> None:
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    ms = int(ids[0].replace("-", "")[:12], 16)
    now_ms = datetime.now(timezone.utc).timestamp() * 1000
    assert abs(now_ms - ms) < 5000


def test_check_id_normalises_and_refuses() -> None:
    raw = uuid.uuid4()
    assert check_id(raw) == str(raw)
    assert check_id(str(raw).upper()) == str(raw)
    for bad in ("", "abc", "../x", 42, None, "00000000-0000-0000-0000-00000000000g"):
        with pytest.raises(ValidationError):
            check_id(bad, "session_id")


@given(content=st.text(), metadata=st.dictionaries(st.text(), json_values, max_size=4))
def test_message_json_round_trip_is_exact(content: str, metadata: dict[str, object]) -> None:
    message = Message(
        session_id=S,
        tenant_id=T,
        role="assistant",
        content=content,
        user_id=new_id(),
        agent_id=new_id(),
        tool_calls=[ToolCall(id="c1", name="f", arguments={"a": metadata})],
        tool_call_id=None,
        name="n",
        status="streaming",
        metadata=metadata,
        seq=7,
    )
    assert from_json(Message, to_json(message)) == message


def test_every_model_round_trips() -> None:
    provider = ProviderRecord(tenant_id=T, name="p", api_key_ref="env:KEY", api_base="http://x")
    agent = AgentRecord(
        tenant_id=T,
        code="c",
        name="n",
        temperature=0.5,
        max_tokens=10,
        window=3,
        response_format={"type": "json_object"},
        custom_params={"seed": 1},
        provider_id=provider.id,
    )
    history = (Message(session_id=S, tenant_id=T, role="user", content="hi", seq=1),)
    objects = [
        Session(tenant_id=T, user_id=new_id(), title="t", metadata={"x": [1]}),
        ApiCall(
            tenant_id=T,
            session_id=S,
            model="m",
            status="timeout",
            prompt_tokens=1,
            latency_ms=3.25,
            error_message="slow",
        ),
        Checkpoint(
            tenant_id=T,
            session_id=S,
            node_id="n",
            input={"q": 1},
            input_type="dict",
            history=history,
            state={"k": "v"},
            tombstone=True,
            version=3,
            parent_id=new_id(),
            properties={"p": None},
        ),
        AgentConfig(agent=agent, provider=provider),
        AgentConfig(agent=attrs.evolve(agent, provider_id=None)),
    ]
    for obj in objects:
        assert from_json(type(obj), to_json(obj)) == obj


def test_times_are_aware_utc() -> None:
    local = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5)))
    message = Message(session_id=S, tenant_id=T, role="user", created_at=local)
    assert message.created_at.utcoffset() == timedelta(0)
    assert message.created_at == local
    with pytest.raises(ValidationError, match="timezone-aware"):
        Message(session_id=S, tenant_id=T, role="user", created_at=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "robot"},
        {"role": "tool"},  # a tool message must say which call it answers
        {"role": "user", "status": "done"},
        {"role": "user", "content": b"bytes"},
        {"role": "user", "content": "lone \ud800"},
        {"role": "user", "metadata": ["not", "a", "mapping"]},
        {"role": "user", "seq": 0},
        {"role": "user", "tool_calls": "call"},
    ],
)
def test_invalid_messages_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Message(session_id=S, tenant_id=T, **fields)  # type: ignore[arg-type]


def test_unknown_json_fields_are_refused() -> None:
    data = Session(tenant_id=T).to_dict() | {"tenant": "x"}
    with pytest.raises(ValidationError, match="unknown Session field"):
        Session.from_dict(data)
    with pytest.raises(ValidationError, match="invalid JSON"):
        from_json(Session, "{not json")


def test_literal_api_keys_never_show_in_repr() -> None:
    literal = ProviderRecord(tenant_id=T, name="p", api_key_ref="sk-live-SECRET")
    assert "SECRET" not in repr(literal)
    assert "SECRET" not in repr(
        AgentConfig(
            agent=AgentRecord(tenant_id=T, code="c", name="n", provider_id=literal.id),
            provider=literal,
        )
    )
    reference = ProviderRecord(tenant_id=T, name="p", api_key_ref="env:OPENAI_API_KEY")
    assert "env:OPENAI_API_KEY" in repr(reference)


def test_agent_config_checks_its_rows() -> None:
    provider = ProviderRecord(tenant_id=new_id(), name="p")
    with pytest.raises(ValidationError, match="different tenants"):
        AgentConfig(agent=AgentRecord(tenant_id=T, code="c", name="n"), provider=provider)
    with pytest.raises(ValidationError, match="code"):
        AgentRecord(tenant_id=T, code="  ", name="n")


def _deep(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_json_depth_limit_is_exact_and_documented() -> None:
    limit = MAX_JSON_DEPTH
    assert f"MAX_JSON_DEPTH` ({limit})" in (models.__doc__ or "")
    assert check_json(_deep(limit), "metadata") == _deep(limit)
    with pytest.raises(ValidationError, match=f"metadata is nested more than {limit} levels"):
        check_json(_deep(limit + 1), "metadata")
    lists: object = []
    for _ in range(limit):
        lists = [lists]
    with pytest.raises(ValidationError, match="checkpoint input is nested"):
        Checkpoint(tenant_id=T, session_id=S, input=lists)
    assert check_json("scalar", "x") == "scalar" and check_json(None, "x") is None


def test_a_value_that_contains_itself_is_refused_not_a_crash() -> None:
    loop: dict[str, object] = {}
    loop["a"] = loop
    loop["b"] = [loop, loop]
    with pytest.raises(ValidationError, match="contains itself"):
        Message(session_id=S, tenant_id=T, role="user", metadata=loop)
    with pytest.raises(ValidationError):
        dump_json(loop, "metadata")


def test_dict_keys_must_be_str_but_str_subclasses_pass() -> None:
    class Key(str):
        pass

    assert check_json({Key("a"): {"b": [1]}}, "metadata") == {"a": {"b": [1]}}
    for bad in ({1: "a"}, {"a": [{2.5: 1}]}, {None: 1}, {b"k": 1}):
        with pytest.raises(ValidationError, match="not a str"):
            Session(tenant_id=T, metadata=bad)
        with pytest.raises(ValidationError, match="not a str"):
            dump_json(bad, "metadata")


def test_json_text_nested_too_deep_is_a_validation_error() -> None:
    text = '{"id":"' + new_id() + '","metadata":' + "[" * 10_000 + "]" * 10_000 + "}"
    with pytest.raises(ValidationError, match="nested"):
        from_json(Session, text)
    good = Session(tenant_id=T, metadata=_deep(MAX_JSON_DEPTH))
    with pytest.raises(ValidationError, match="tool arguments is nested"):
        Message.from_dict(
            {
                "session_id": S,
                "tenant_id": T,
                "role": "assistant",
                "tool_calls": [{"id": "c", "name": "f", "arguments": _deep(MAX_JSON_DEPTH + 1)}],
            }
        )
    assert from_json(Session, to_json(good)) == good
