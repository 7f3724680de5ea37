"""Models to query parameters and rows back to models.

Writing goes through :mod:`threadline_postgres.codec` so NUL characters and large
floats survive; reading rebuilds models with :func:`threadline.models.trusted`,
which skips validation: the rows were validated when they were written, and the
window read is a hot path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from threadline.errors import StoreError, ValidationError
from threadline.models import (
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    ToolCall,
    trusted,
)
from threadline.storekit.delta import EncodedHistory, apply_record
from threadline_postgres.codec import (
    decode_opt,
    decode_text,
    dump_json_text,
    dump_opt_jsonb,
    encode_opt,
    encode_text,
    escape_json_text,
    load_jsonb,
)

__all__ = [
    "AGENT_COLUMNS",
    "API_CALL_COLUMNS",
    "CHECKPOINT_COLUMNS",
    "MESSAGE_COLUMNS",
    "PROVIDER_COLUMNS",
    "SESSION_COLUMNS",
    "agent_from_row",
    "api_call_from_row",
    "apply_history",
    "chain_history",
    "checkpoint_from_row",
    "history_param",
    "message_from_row",
    "message_params",
    "provider_from_row",
    "session_from_row",
]


MESSAGE_COLUMNS = (
    "id, session_id, tenant_id, seq, role, content, user_id, agent_id, tool_calls, "
    "tool_call_id, name, status, metadata, created_at"
)
SESSION_COLUMNS = "id, tenant_id, user_id, agent_id, title, metadata, created_at, updated_at"
API_CALL_COLUMNS = (
    "id, session_id, tenant_id, user_id, agent_id, request_message_id, response_message_id, "
    "model, status, error_message, error_code, prompt_tokens, completion_tokens, total_tokens, "
    "latency_ms, time_to_first_token_ms, tokens_per_second, response_id, metadata, created_at"
)
PROVIDER_COLUMNS = (
    "id, tenant_id, name, type, api_base, api_key_ref, enabled, metadata, created_at, updated_at"
)
AGENT_COLUMNS = (
    "id, tenant_id, code, name, system_prompt, model, temperature, max_tokens, window_rounds, "
    "response_format, custom_params, provider_id, enabled, version, created_at, updated_at"
)
CHECKPOINT_COLUMNS = (
    "id, session_id, tenant_id, agent_id, version, parent_id, node_id, input, input_type, "
    "state, properties, tombstone, created_at, history_base, history_delta, chain_depth, "
    "history_tag"
)


_new = object.__new__
_set = object.__setattr__
_MESSAGE_FIELDS = (
    "session_id", "tenant_id", "role", "content", "user_id", "agent_id", "tool_calls",
    "tool_call_id", "name", "status", "metadata", "id", "seq", "created_at",
)  # fmt: skip


# -- JSON values that also come back to the caller ------------------------------------------


def json_param(value: Any, field: str) -> tuple[str, Any]:
    """``(jsonb text, JSON copy of value)``: the copy is what the store hands back.

    The copy makes a returned model equal to the one a later read builds (tuples become
    lists, keys become strings), as the reference store does.
    """
    text = dump_json_text(value, field)
    copy: Any = {} if text == "{}" else json.loads(text)
    return escape_json_text(text), copy


# -- messages ----------------------------------------------------------------------------------


def tool_calls_param(calls: Sequence[ToolCall]) -> tuple[str | None, list[str] | None, Any]:
    """``(jsonb text, call ids for the GIN index, tool calls copied)`` for a message."""
    if not calls:
        return None, None, ()
    raw = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    text, copy = json_param(raw, "tool call arguments")
    copied = tuple(
        trusted(ToolCall, id=c["id"], name=c["name"], arguments=c["arguments"]) for c in copy
    )
    return text, [encode_text(c.id) for c in calls], copied


def message_params(message: Message) -> tuple[tuple[Any, ...], Message]:
    """Query parameters for ``message`` (after session and tenant) and the copy to return.

    Order: id, role, content, user_id, agent_id, tool_calls, call_ids, tool_call_id, name,
    status, metadata, created_at. Raises :class:`ValidationError` before anything is sent.
    """
    calls_text, call_ids, calls_copy = tool_calls_param(message.tool_calls)
    if message.metadata:
        meta_text, meta_copy = json_param(message.metadata, "metadata")
    else:
        meta_text, meta_copy = "{}", {}
    params = (
        message.id,
        message.role,
        encode_text(message.content),
        message.user_id,
        message.agent_id,
        calls_text,
        call_ids,
        encode_opt(message.tool_call_id),
        encode_opt(message.name),
        message.status,
        meta_text,
        message.created_at,
    )
    copy = _new(Message)  # what the store returns: the caller's values, JSON copied
    for field in _MESSAGE_FIELDS:
        _set(copy, field, getattr(message, field))
    _set(copy, "tool_calls", calls_copy)
    _set(copy, "metadata", meta_copy)
    return params, copy


def with_seq(copy: Message, seq: int) -> Message:
    """Set ``seq`` on a copy made by :func:`message_params` and return it.

    The copy is private to the call that made it (nobody else holds it yet), so setting
    the field in place is safe and saves building a second object per message.
    """
    object.__setattr__(copy, "seq", seq)
    return copy


def _tool_calls(text: str | None) -> tuple[ToolCall, ...]:
    if text is None:
        return ()
    return tuple(
        trusted(ToolCall, id=c["id"], name=c["name"], arguments=c["arguments"])
        for c in load_jsonb(text)
    )


def message_from_row(r: Any) -> Message:
    """A :class:`Message` from a row selected with :data:`MESSAGE_COLUMNS`.

    The hottest read path (every window), so the fields are set one by one rather than
    through :func:`~threadline.models.trusted`'s keyword loop: half the cost per row.
    """
    m = _new(Message)
    _set(m, "id", r[0])
    _set(m, "session_id", r[1])
    _set(m, "tenant_id", r[2])
    _set(m, "seq", r[3])
    _set(m, "role", r[4])
    content = r[5]
    _set(m, "content", decode_text(content) if "\x01" in content else content)
    _set(m, "user_id", r[6])
    _set(m, "agent_id", r[7])
    calls = r[8]
    _set(m, "tool_calls", () if calls is None else _tool_calls(calls))
    _set(m, "tool_call_id", decode_opt(r[9]))
    _set(m, "name", decode_opt(r[10]))
    _set(m, "status", r[11])
    metadata = r[12]
    _set(m, "metadata", {} if metadata == "{}" else load_jsonb(metadata))
    created = r[13]
    _set(m, "created_at", created if created.tzinfo is not None else moment(created))
    return m


def moment(value: datetime) -> datetime:
    """A ``timestamptz`` as read: aware UTC. asyncpg stores the aware ``datetime.min`` and
    ``datetime.max`` as ``-infinity`` / ``infinity`` and reads those back naive."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


# -- sessions, API calls, providers, agents ------------------------------------------------------


def session_from_row(r: Any) -> Session:
    """A :class:`Session` from a row selected with :data:`SESSION_COLUMNS`."""
    return trusted(
        Session,
        id=r[0],
        tenant_id=r[1],
        user_id=r[2],
        agent_id=r[3],
        title=decode_opt(r[4]),
        metadata=load_jsonb(r[5], {}),
        created_at=moment(r[6]),
        updated_at=moment(r[7]),
    )


def api_call_from_row(r: Any) -> ApiCall:
    """An :class:`ApiCall` from a row selected with :data:`API_CALL_COLUMNS`."""
    return trusted(
        ApiCall,
        id=r[0],
        session_id=r[1],
        tenant_id=r[2],
        user_id=r[3],
        agent_id=r[4],
        request_message_id=r[5],
        response_message_id=r[6],
        model=decode_text(r[7]),
        status=r[8],
        error_message=decode_opt(r[9]),
        error_code=decode_opt(r[10]),
        prompt_tokens=r[11],
        completion_tokens=r[12],
        total_tokens=r[13],
        latency_ms=r[14],
        time_to_first_token_ms=r[15],
        tokens_per_second=r[16],
        response_id=decode_opt(r[17]),
        metadata=load_jsonb(r[18], {}),
        created_at=moment(r[19]),
    )


def provider_from_row(r: Any, offset: int = 0) -> ProviderRecord:
    """A :class:`ProviderRecord` from :data:`PROVIDER_COLUMNS` starting at ``offset``."""
    o = offset
    return trusted(
        ProviderRecord,
        id=r[o],
        tenant_id=r[o + 1],
        name=decode_text(r[o + 2]),
        type=decode_text(r[o + 3]),
        api_base=decode_opt(r[o + 4]),
        api_key_ref=decode_opt(r[o + 5]),
        enabled=r[o + 6],
        metadata=load_jsonb(r[o + 7], {}),
        created_at=moment(r[o + 8]),
        updated_at=moment(r[o + 9]),
    )


def agent_from_row(r: Any) -> AgentRecord:
    """An :class:`AgentRecord` from a row selected with :data:`AGENT_COLUMNS`."""
    return trusted(
        AgentRecord,
        id=r[0],
        tenant_id=r[1],
        code=decode_text(r[2]),
        name=decode_text(r[3]),
        system_prompt=decode_opt(r[4]),
        model=decode_opt(r[5]),
        temperature=r[6],
        max_tokens=r[7],
        window=r[8],
        response_format=load_jsonb(r[9]),
        custom_params=load_jsonb(r[10], {}),
        provider_id=r[11],
        enabled=r[12],
        version=r[13],
        created_at=moment(r[14]),
        updated_at=moment(r[15]),
    )


# -- checkpoint histories -------------------------------------------------------------------------


def _legacy_message(d: dict[str, Any]) -> Message:
    """A message of a ``history_delta`` written before migration 0002 (a JSON array)."""
    return trusted(
        Message,
        id=d["id"],
        session_id=d["session_id"],
        tenant_id=d["tenant_id"],
        user_id=d["user_id"],
        agent_id=d["agent_id"],
        seq=d["seq"],
        role=d["role"],
        content=d["content"],
        tool_calls=tuple(
            trusted(ToolCall, id=i, name=n, arguments=a) for i, n, a in d["tool_calls"]
        ),
        tool_call_id=d["tool_call_id"],
        name=d["name"],
        status=d["status"],
        metadata=d["metadata"],
        created_at=datetime.fromisoformat(d["created_at"]),
    )


def history_param(encoded: EncodedHistory) -> str:
    """The ``history_delta`` jsonb text of an encoded history record."""
    return escape_json_text(encoded.text)


def apply_history(history: list[Message], delta: str, tenant_id: str, session_id: str) -> None:
    """Turn the base's history into this row's, from its ``history_delta``."""
    record = load_jsonb(delta)
    if isinstance(record, list):  # before 0002: the messages after the whole base history
        history.extend(_legacy_message(d) for d in record)
    else:
        apply_record(history, record, tenant_id=tenant_id, session_id=session_id)


def chain_history(rows: Sequence[Any]) -> tuple[Message, ...]:
    """The history of ``rows[0]`` from its chain (:data:`CHECKPOINT_COLUMNS` rows, bases after)."""
    if rows[-1][13] is not None:
        raise StoreError(
            f"checkpoint {rows[-1][0]} is a delta on {rows[-1][13]}, which is missing; "
            "the store is damaged"
        )
    history: list[Message] = []
    for r in reversed(rows):
        apply_history(history, r[14], r[2], r[1])
    return tuple(history)


def checkpoint_from_row(r: Any, history: tuple[Message, ...]) -> Checkpoint:
    """A :class:`Checkpoint` from :data:`CHECKPOINT_COLUMNS` and its rebuilt history."""
    return trusted(
        Checkpoint,
        id=r[0],
        session_id=r[1],
        tenant_id=r[2],
        agent_id=r[3],
        version=r[4],
        parent_id=r[5],
        node_id=decode_opt(r[6]),
        input=load_jsonb(r[7]),
        input_type=decode_opt(r[8]),
        state=load_jsonb(r[9], {}),
        properties=load_jsonb(r[10], {}),
        tombstone=r[11],
        created_at=moment(r[12]),
        history=history,
    )


def checkpoint_params(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's JSON and text columns, encoded (raises ValidationError first)."""
    input_text = dump_opt_jsonb(checkpoint.input, "checkpoint input")
    state_text, state_copy = json_param(checkpoint.state, "checkpoint state")
    props_text, props_copy = json_param(checkpoint.properties, "checkpoint properties")
    input_copy = None if input_text is None else json.loads(dump_json_text(checkpoint.input, ""))
    return {
        "input": input_text,
        "state": state_text,
        "properties": props_text,
        "node_id": encode_opt(checkpoint.node_id),
        "input_type": encode_opt(checkpoint.input_type),
        "copies": {"input": input_copy, "state": state_copy, "properties": props_copy},
    }


def check_int_range(value: int | None, field: str) -> None:
    """Refuse an int a ``bigint`` column cannot hold, with a typed error."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise ValidationError(f"{field} is out of range for the PostgreSQL store: {value}")
