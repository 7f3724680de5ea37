"""Models to query parameters, and rows (read by column name) back to models.

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

import attrs

from threadline.codec import dump_json
from threadline.errors import ValidationError
from threadline.models import (
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    ToolCall,
    builder,
    trusted,
)
from threadline.storekit.records import CheckpointRecord, ancestor
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
    "SHARED_KEY",
    "agent_from_row",
    "api_call_from_row",
    "checkpoint_params",
    "message_from_row",
    "message_params",
    "provider_from_row",
    "record_from_row",
    "record_param",
    "rewrite_columns",
    "session_from_row",
    "shared_messages",
    "unshare",
    "update_params",
]


MESSAGE_COLUMNS = (
    "id, session_id, tenant_id, seq, role, content, user_id, agent_id, tool_calls, "
    "tool_call_id, name, status, metadata, created_at"
)
SHARED_KEY = "threadline.shared_from"
"""The metadata key of a fork's message row that shares its content and tool calls: the id
of the row holding them (migration 0012; the row's own content is empty). Reads take it out
of the metadata they return. Kept in the metadata, not in a column of its own, so reads
need no column a schema before 0012 lacks (a store opened with ``migrate=False`` on an
older schema reads as before)."""


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
_build_message = builder(Message)


# -- JSON values that also come back to the caller ------------------------------------------


def json_param(value: Any, field: str) -> tuple[str, Any]:
    """``(jsonb text, JSON copy of value)``: the copy is what the store hands back.

    The copy makes a returned model equal to the one a later read builds (tuples become
    lists, keys become strings), as the reference store does.
    """
    text = dump_json_text(value, field)
    copy: Any = {} if text == "{}" else json.loads(text)
    return escape_json_text(text), copy


def moment(value: datetime) -> datetime:
    """A ``timestamptz`` as read: aware UTC. asyncpg stores the aware ``datetime.min`` and
    ``datetime.max`` as ``-infinity`` / ``infinity`` and reads those back naive."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def check_int_range(value: int | None, field: str) -> None:
    """Refuse an int a ``bigint`` column cannot hold, with a typed error."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise ValidationError(f"{field} is out of range for the PostgreSQL store: {value}")


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

    Order: id, role, content, user_id, agent_id, tool_calls, tool_call_id, name, status,
    metadata, created_at. Raises :class:`ValidationError` before anything is sent.
    """
    m = message
    if m.tool_calls:
        calls_text, _, calls_copy = tool_calls_param(m.tool_calls)
    else:
        calls_text, calls_copy = None, ()
    if m.metadata:
        meta_text, meta_copy = json_param(m.metadata, "metadata")
    else:
        meta_text, meta_copy = "{}", {}
    content, tool_call_id, name = m.content, m.tool_call_id, m.name
    params = (
        m.id,
        m.role,
        encode_text(content),
        m.user_id,
        m.agent_id,
        calls_text,
        encode_opt(tool_call_id),
        encode_opt(name),
        m.status,
        meta_text,
        m.created_at,
    )
    # What the store returns: the caller's values, JSON copied; built by the slot setters
    # (half the time of setting 16 fields through object.__setattr__).
    copy = _build_message(
        session_id=m.session_id, tenant_id=m.tenant_id, role=m.role, content=content,
        user_id=m.user_id, agent_id=m.agent_id, tool_calls=calls_copy,
        tool_call_id=tool_call_id, name=name, status=m.status, metadata=meta_copy, id=m.id,
        seq=m.seq, created_at=m.created_at,
    )  # fmt: skip
    return params, copy


def update_params(message: Message) -> tuple[Any, ...]:
    """A message's new content, tool calls, status, name and metadata, encoded."""
    calls_text, _, _ = tool_calls_param(message.tool_calls)
    meta, _ = json_param(message.metadata, "metadata")
    return (
        encode_text(message.content),
        calls_text,
        message.status,
        encode_opt(message.name),
        meta,
    )


def rewrite_columns(messages: Sequence[Message]) -> list[list[Any]]:
    """The arrays of a batch rewrite: ids, then :func:`update_params` and ``user_id`` per
    column (:attr:`Statements.rewrite_messages`)."""
    rows = [(m.id, *update_params(m), m.user_id) for m in messages]
    return [list(column) for column in zip(*rows)]


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

    The hottest read path (every window): the row is unpacked in the order of
    :data:`MESSAGE_COLUMNS` (faster than 14 lookups by name) and the model is built by
    its slot setters (:func:`~threadline.models.builder`), no validation.
    """
    (id_, session_id, tenant_id, seq, role, content, user_id, agent_id, tool_calls,
     tool_call_id, name, status, metadata, created_at) = r[:14]  # fmt: skip
    return _build_message(
        session_id=session_id, tenant_id=tenant_id, role=role,
        content=decode_text(content) if "\x01" in content else content,
        user_id=user_id, agent_id=agent_id,
        tool_calls=() if tool_calls is None else _tool_calls(tool_calls),
        tool_call_id=None if tool_call_id is None else decode_text(tool_call_id),
        name=None if name is None else decode_text(name), status=status,
        metadata={} if metadata == "{}" else load_jsonb(metadata), id=id_, seq=seq,
        created_at=created_at if created_at.tzinfo is not None else moment(created_at),
    )  # fmt: skip


def shared_messages(messages: list[Message]) -> list[Message]:
    """The messages read from a fork's shared rows (empty content, :data:`SHARED_KEY` in
    their metadata): their content and tool calls are still to be read from the row named."""
    return [m for m in messages if not m.content and SHARED_KEY in m.metadata]


def unshare(message: Message, content: str | None, tool_calls: str | None) -> None:
    """Fill ``message`` (built by :func:`message_from_row`, nobody else holds it yet) with
    the content and tool calls of the row it shares (as selected: encoded text, jsonb text;
    ``None`` content: that row is gone, the message keeps its own) and take
    :data:`SHARED_KEY` out of its metadata."""
    if content is not None:
        _set(message, "content", decode_text(content) if "\x01" in content else content)
        _set(message, "tool_calls", _tool_calls(tool_calls))
    _set(message, "metadata", {k: v for k, v in message.metadata.items() if k != SHARED_KEY})


# -- sessions, API calls, providers, agents ------------------------------------------------------


def session_from_row(r: Any) -> Session:
    """A :class:`Session` from a row selected with :data:`SESSION_COLUMNS`."""
    return trusted(
        Session,
        id=r["id"],
        tenant_id=r["tenant_id"],
        user_id=r["user_id"],
        agent_id=r["agent_id"],
        title=decode_opt(r["title"]),
        metadata=load_jsonb(r["metadata"], {}),
        created_at=moment(r["created_at"]),
        updated_at=moment(r["updated_at"]),
    )


def api_call_from_row(r: Any) -> ApiCall:
    """An :class:`ApiCall` from a row selected with :data:`API_CALL_COLUMNS`."""
    plain = (
        "id", "session_id", "tenant_id", "user_id", "agent_id", "request_message_id",
        "response_message_id", "status", "prompt_tokens", "completion_tokens", "total_tokens",
        "latency_ms", "time_to_first_token_ms", "tokens_per_second",
    )  # fmt: skip
    return trusted(
        ApiCall,
        **{name: r[name] for name in plain},
        model=decode_text(r["model"]),
        error_message=decode_opt(r["error_message"]),
        error_code=decode_opt(r["error_code"]),
        response_id=decode_opt(r["response_id"]),
        metadata=load_jsonb(r["metadata"], {}),
        created_at=moment(r["created_at"]),
    )


def provider_from_row(r: Any, prefix: str = "") -> ProviderRecord:
    """A :class:`ProviderRecord` from :data:`PROVIDER_COLUMNS`, each name after ``prefix``."""
    p = prefix
    return trusted(
        ProviderRecord,
        id=r[p + "id"],
        tenant_id=r[p + "tenant_id"],
        name=decode_text(r[p + "name"]),
        type=decode_text(r[p + "type"]),
        api_base=decode_opt(r[p + "api_base"]),
        api_key_ref=decode_opt(r[p + "api_key_ref"]),
        enabled=r[p + "enabled"],
        metadata=load_jsonb(r[p + "metadata"], {}),
        created_at=moment(r[p + "created_at"]),
        updated_at=moment(r[p + "updated_at"]),
    )


def agent_from_row(r: Any) -> AgentRecord:
    """An :class:`AgentRecord` from a row selected with :data:`AGENT_COLUMNS`."""
    return trusted(
        AgentRecord,
        id=r["id"],
        tenant_id=r["tenant_id"],
        code=decode_text(r["code"]),
        name=decode_text(r["name"]),
        system_prompt=decode_opt(r["system_prompt"]),
        model=decode_opt(r["model"]),
        temperature=r["temperature"],
        max_tokens=r["max_tokens"],
        window=r["window_rounds"],
        response_format=load_jsonb(r["response_format"]),
        custom_params=load_jsonb(r["custom_params"], {}),
        provider_id=r["provider_id"],
        enabled=r["enabled"],
        version=r["version"],
        created_at=moment(r["created_at"]),
        updated_at=moment(r["updated_at"]),
    )


# -- checkpoint records ---------------------------------------------------------------------------


def record_param(record: CheckpointRecord) -> str:
    """The ``history_delta`` jsonb text of a record (NUL characters escaped)."""
    return escape_json_text(record.record)


def _record_text(text: str) -> str:
    """A record as the core reads it, from its ``history_delta`` column: the jsonb text
    itself, unless escaped NUL characters must be decoded first (rare)."""
    return dump_json(load_jsonb(text), "checkpoint history") if "\\u0001" in text else text


def record_from_row(r: Any) -> CheckpointRecord:
    """A :class:`CheckpointRecord` from a row selected with :data:`CHECKPOINT_COLUMNS`.

    A restore reads a whole chain (up to ``SNAPSHOT_EVERY`` rows), so, as for messages,
    the row is unpacked in column order and the fields are set one by one.
    """
    (id_, session_id, tenant_id, agent_id, version, parent_id, node_id, input_, input_type,
     state, properties, tombstone, created_at, _, text, depth, tag) = r  # fmt: skip
    c = _new(Checkpoint)
    _set(c, "id", id_)
    _set(c, "session_id", session_id)
    _set(c, "tenant_id", tenant_id)
    _set(c, "agent_id", agent_id)
    _set(c, "version", version)
    _set(c, "parent_id", parent_id)
    _set(c, "node_id", decode_opt(node_id))
    _set(c, "input", None if input_ is None else load_jsonb(input_))
    _set(c, "input_type", decode_opt(input_type))
    _set(c, "state", {} if state == "{}" else load_jsonb(state, {}))
    _set(c, "properties", {} if properties == "{}" else load_jsonb(properties, {}))
    _set(c, "tombstone", tombstone)
    _set(c, "created_at", moment(created_at))
    _set(c, "history", ())
    return CheckpointRecord(c, _record_text(text), depth, tag)


def ancestor_from_row(r: Any) -> CheckpointRecord:
    """A chain's ancestor from a row: only its ids, record, depth and tag are decoded
    (:func:`threadline.storekit.records.ancestor`)."""
    (id_, session_id, tenant_id, _, _, parent_id, _, _, _, _, _, _, _, _, text, depth,
     tag) = r  # fmt: skip
    return ancestor(id_, parent_id, tenant_id, session_id, _record_text(text), depth, tag)


def checkpoint_params(checkpoint: Checkpoint) -> tuple[tuple[Any, ...], Checkpoint]:
    """The checkpoint's columns from ``node_id`` to ``created_at`` (encoded, bad input
    refused first) and the checkpoint as a read gives it back (JSON copied)."""
    c = checkpoint
    input_text = dump_opt_jsonb(c.input, "checkpoint input")
    state_text, state_copy = json_param(c.state, "checkpoint state")
    props_text, props_copy = json_param(c.properties, "checkpoint properties")
    input_copy = None if input_text is None else json.loads(dump_json_text(c.input, ""))
    params = (
        encode_opt(c.node_id), input_text, encode_opt(c.input_type), state_text, props_text,
        c.tombstone, c.created_at,
    )  # fmt: skip
    copy = attrs.evolve(
        c, input=input_copy, state=state_copy, properties=props_copy, history=(), version=None
    )
    return params, copy
