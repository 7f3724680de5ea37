"""Models to rows and back: fixed column lists, exact round trips.

* Timestamps are INTEGER microseconds since the epoch: aware UTC datetimes come back
  equal to what was stored, to the microsecond, and sort as numbers.
* ``metadata``, ``state``, tool-call arguments and the like are compact JSON text
  (:func:`threadline.codec.dump_json`): a value JSON cannot hold raises
  :class:`~threadline.errors.ValidationError` before anything is written.
* Text goes to SQLite with its length, so NUL characters and megabytes of text
  round-trip unchanged.
* Rows are turned back into models with :func:`threadline.models.trusted`: the store
  wrote them, so the validators need not run again on every read.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from threadline.codec import dump_json, dump_tool_calls, load_tool_calls
from threadline.models import (
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    trusted,
)
from threadline.storekit.records import CheckpointRecord, ancestor

__all__ = [
    "AGENT_COLUMNS",
    "API_CALL_COLUMNS",
    "CHECKPOINT_COLUMNS",
    "CHECKPOINT_VERSION",
    "MESSAGE_COLUMNS",
    "MESSAGE_FIELDS",
    "MESSAGE_FROM",
    "MESSAGE_KEY",
    "MESSAGE_SELECT",
    "MESSAGE_SEQ",
    "PROVIDER_COLUMNS",
    "READ_COLUMNS",
    "SESSION_COLUMNS",
    "SHARED_COLUMNS",
    "STORED_COLUMNS",
    "agent_from_row",
    "agent_row",
    "api_call_from_row",
    "api_call_row",
    "from_us",
    "message_changes",
    "message_from_read",
    "message_from_row",
    "message_row",
    "provider_from_row",
    "provider_row",
    "record_from_row",
    "record_row",
    "session_from_row",
    "session_row",
    "shared",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_loads = json.loads
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)


def _load_json(text: str) -> Any:
    """``json.loads`` of JSON text this store wrote (:func:`threadline.codec.dump_json`:
    compact, nothing before or after the value), without its Python wrapper: the C
    scanner from offset 0 (a third less time for a 400-byte value). Anything else (a
    value written by hand with leading space) goes through ``json.loads``."""
    try:
        return _scan(text, 0)[0]
    except StopIteration:
        return _loads(text)


def to_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact)."""
    return (moment - _EPOCH) // _ONE_US


def from_us(value: int) -> datetime:
    """The aware UTC datetime for integer microseconds since the epoch (exact)."""
    return _EPOCH + timedelta(0, 0, value)


def _dump_object(value: Any, field: str) -> str:
    return "{}" if not value else dump_json(value, field)


def _load_object(text: str) -> Any:
    return {} if text == "{}" else _loads(text)


# -- messages ----------------------------------------------------------------------------

MESSAGE_COLUMNS = (
    "id, session_id, tenant_id, user_id, agent_id, seq, role, content, tool_calls, "
    "tool_call_id, name, status, metadata, created_at"
)
"""The message's fields in :func:`message_from_row` order (:data:`MESSAGE_SELECT` reads
them; ``session_id`` and ``tenant_id`` are the session row's, migration 0009)."""
MESSAGE_FIELDS = tuple(name.strip() for name in MESSAGE_COLUMNS.split(","))
"""The :class:`~threadline.models.Message` fields, in :data:`MESSAGE_COLUMNS` order."""
MESSAGE_FROM = "entity_message m JOIN entity_session s ON s.key = m.session_key"
"""Messages with their session (its id and tenant), for reads that are not of one session."""


def shared(column: str, row: str) -> str:
    """``column`` of the message row ``row`` (a table name or alias), resolved: a fork's row
    that shares its source's bytes (``shared_key``, migration 0012) reads the source row's
    (same seq, by primary key); any other row reads its own."""
    return (
        f"CASE WHEN {row}.shared_key IS NULL THEN {row}.{column} ELSE (SELECT o.{column} "
        f"FROM entity_message o WHERE o.session_key = {row}.shared_key AND o.seq = {row}.seq) END"
    )


SHARED_COLUMNS = ("content", "tool_calls")
"""The columns a fork's row may share with its source's (the large ones)."""
MESSAGE_SELECT = ", ".join(
    {"session_id": "s.id", "tenant_id": "s.tenant_id"}.get(name)
    or (shared(name, "m") if name in SHARED_COLUMNS else f"m.{name}")
    for name in MESSAGE_FIELDS
)
""":data:`MESSAGE_COLUMNS` from :data:`MESSAGE_FROM`, shared columns resolved."""
READ_COLUMNS = (
    f"id, user_id, agent_id, seq, role, {shared('content', 'entity_message')}, "
    f"{shared('tool_calls', 'entity_message')}, tool_call_id, name, "
    "nullif(status, 'complete'), nullif(metadata, '{}'), created_at"
)
"""What a read of one session (``FROM entity_message``) selects (:func:`message_from_read`):
the session and tenant are the read's own arguments; the common ``complete`` status and
empty metadata come as NULL (``sqlite3`` returns ``None`` without building a string: ~2 µs
of a 21-row window); content and tool calls resolved (:func:`shared`)."""
STORED_COLUMNS = (
    "session_key, id, user_id, agent_id, seq, role, content, tool_calls, tool_call_id, name, "
    "status, metadata, created_at"
)
"""The columns of a message row (:func:`message_row`), as ``entity_message`` stores them."""
MESSAGE_KEY = 0
"""Where the session's key is in a :func:`message_row` (filled in by the transaction)."""
MESSAGE_SEQ = 4
"""Where ``seq`` is in a :func:`message_row` (filled in once the transaction has it)."""


def message_row(m: Message, seq: int | None = None) -> list[Any]:
    """The row for ``m`` in :data:`STORED_COLUMNS` order, with ``seq``; its session key
    (:data:`MESSAGE_KEY`) is ``None`` until the transaction fills it in (a list, so it can).
    ``row[1:]`` is the row :func:`message_from_read` takes."""
    return [
        None,
        m.id,
        m.user_id,
        m.agent_id,
        seq,
        m.role,
        m.content,
        dump_tool_calls(m.tool_calls),
        m.tool_call_id,
        m.name,
        m.status,
        _dump_object(m.metadata, "metadata"),
        (m.created_at - _EPOCH) // _ONE_US,
    ]


def message_changes(m: Message) -> dict[str, Any]:
    """The columns a rewrite changes, by name (``user_id`` too: erasure clears it)."""
    return {
        "content": m.content,
        "tool_calls": dump_tool_calls(m.tool_calls),
        "status": m.status,
        "name": m.name,
        "metadata": _dump_object(m.metadata, "metadata"),
        "user_id": m.user_id,
    }


def _message_builders() -> tuple[
    Callable[[Sequence[Any]], Message], Callable[[Sequence[Any], str, str], Message]
]:
    """Functions turning a row into a message, as fast as Python allows.

    The window read builds every message it returns, so this is the hot path of reads.
    It does what :func:`threadline.models.trusted` does (no validation: the store wrote
    these values) without a keyword dict and a loop per message: each slot of the frozen
    attrs class is set through its member descriptor (about 1 µs a message instead of
    3.5). Falls back to ``trusted`` if ``Message`` ever stops being a slotted class.
    The first takes a row in :data:`MESSAGE_COLUMNS` order, the second one in
    :data:`READ_COLUMNS` order (or a :func:`message_row` without its key: ``None``
    status and metadata mean ``complete`` and ``{}``) with the session and tenant the
    read asked for.
    """
    descriptors = [Message.__dict__.get(name) for name in MESSAGE_FIELDS]
    if not all(type(d).__name__ == "member_descriptor" for d in descriptors):  # pragma: no cover

        def slow(row: Sequence[Any]) -> Message:
            values = dict(zip(MESSAGE_FIELDS, row))
            values["tool_calls"] = load_tool_calls(row[8]) if row[8] else ()
            values["metadata"] = {} if row[12] == "{}" else _loads(row[12])
            values["created_at"] = from_us(row[13])
            return trusted(Message, **values)

        def slow_read(row: Sequence[Any], session_id: str, tenant_id: str) -> Message:
            (id_, user_id, agent_id, seq, role, content, tool_calls, tool_call_id, name, status,
             metadata, created_at) = row  # fmt: skip
            return slow((id_, session_id, tenant_id, user_id, agent_id, seq, role, content,
                         tool_calls, tool_call_id, name, status or "complete", metadata or "{}",
                         created_at))  # fmt: skip

        return slow, slow_read
    (set_id, set_session_id, set_tenant_id, set_user_id, set_agent_id, set_seq, set_role,
     set_content, set_tool_calls, set_tool_call_id, set_name, set_status, set_metadata,
     set_created_at) = (d.__set__ for d in descriptors)  # type: ignore[union-attr]  # fmt: skip
    new, epoch, delta = object.__new__, _EPOCH, timedelta
    loads, load_calls = _load_json, load_tool_calls
    # Datetimes are immutable and a window read returns mostly the messages the previous
    # one did: reusing the instance for a timestamp seen lately saves a third of the cost.
    moments: dict[int, datetime] = {}
    moment = moments.get

    def read(row: Sequence[Any], session_id: str, tenant_id: str) -> Message:
        (id_, user_id, agent_id, seq, role, content, tool_calls, tool_call_id, name, status,
         metadata, created_at) = row  # fmt: skip
        message = new(Message)
        set_id(message, id_)
        set_session_id(message, session_id)
        set_tenant_id(message, tenant_id)
        set_user_id(message, user_id)
        set_agent_id(message, agent_id)
        set_seq(message, seq)
        set_role(message, role)
        set_content(message, content)
        set_tool_calls(message, load_calls(tool_calls) if tool_calls else ())
        set_tool_call_id(message, tool_call_id)
        set_name(message, name)
        set_status(message, status or "complete")
        set_metadata(message, {} if metadata is None or metadata == "{}" else loads(metadata))
        when = moment(created_at)
        if when is None:
            if len(moments) >= 8192:
                moments.clear()
            when = moments[created_at] = epoch + delta(0, 0, created_at)
        set_created_at(message, when)
        return message

    def build(row: Sequence[Any]) -> Message:
        return read((row[0], *row[3:]), row[1], row[2])

    return build, read


message_from_row, message_from_read = _message_builders()
"""Rebuild a message from a row in :data:`MESSAGE_COLUMNS` order; from a row in
:data:`READ_COLUMNS` order and the session and tenant the read was for."""


# -- sessions ----------------------------------------------------------------------------

SESSION_COLUMNS = "id, tenant_id, user_id, agent_id, title, metadata, created_at, updated_at"


def session_row(s: Session) -> tuple[Any, ...]:
    """The row for ``s`` in :data:`SESSION_COLUMNS` order."""
    return (
        s.id, s.tenant_id, s.user_id, s.agent_id, s.title,
        _dump_object(s.metadata, "session metadata"), to_us(s.created_at), to_us(s.updated_at),
    )  # fmt: skip


def session_from_row(row: Sequence[Any]) -> Session:
    """Rebuild a session from a row in :data:`SESSION_COLUMNS` order."""
    id_, tenant_id, user_id, agent_id, title, metadata, created_at, updated_at = row
    return trusted(
        Session,
        id=id_,
        tenant_id=tenant_id,
        user_id=user_id,
        agent_id=agent_id,
        title=title,
        metadata=_load_object(metadata),
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
    )


# -- API calls ---------------------------------------------------------------------------

API_CALL_COLUMNS = (
    "id, tenant_id, session_id, user_id, agent_id, request_message_id, response_message_id, "
    "model, status, error_message, error_code, prompt_tokens, completion_tokens, total_tokens, "
    "latency_ms, time_to_first_token_ms, tokens_per_second, response_id, metadata, created_at"
)
_API_CALL_FIELDS = [name.strip() for name in API_CALL_COLUMNS.split(",")]


def api_call_row(c: ApiCall) -> tuple[Any, ...]:
    """The row for ``c`` in :data:`API_CALL_COLUMNS` order."""
    values = [getattr(c, name) for name in _API_CALL_FIELDS[:-2]]
    return (*values, _dump_object(c.metadata, "api call metadata"), to_us(c.created_at))


def api_call_from_row(row: Sequence[Any]) -> ApiCall:
    """Rebuild an API call from a row in :data:`API_CALL_COLUMNS` order."""
    values = dict(zip(_API_CALL_FIELDS, row))
    values["metadata"] = _load_object(values["metadata"])
    values["created_at"] = from_us(values["created_at"])
    return trusted(ApiCall, **values)


# -- checkpoints -------------------------------------------------------------------------

CHECKPOINT_COLUMNS = (
    "id, tenant_id, session_id, agent_id, version, parent_id, node_id, input, input_type, "
    "history, state, properties, tombstone, created_at, history_depth, history_tag"
)
"""Column order of :func:`record_row`; ``history`` is a record of
:mod:`threadline.storekit.delta`, ``history_depth`` and ``history_tag`` its depth and tag."""
CHECKPOINT_VERSION = [n.strip() for n in CHECKPOINT_COLUMNS.split(",")].index("version")


def record_row(r: CheckpointRecord) -> list[Any]:
    """The row for ``r`` in :data:`CHECKPOINT_COLUMNS` order (values refused before a write).

    A list, so the store can fill in the version inside its transaction.
    """
    c = r.checkpoint
    return [
        c.id, c.tenant_id, c.session_id, c.agent_id, c.version, c.parent_id, c.node_id,
        dump_json(c.input, "checkpoint input"), c.input_type, r.record,
        _dump_object(c.state, "checkpoint state"),
        _dump_object(c.properties, "checkpoint properties"),
        1 if c.tombstone else 0, to_us(c.created_at), r.depth, r.tag,
    ]  # fmt: skip


def record_from_row(row: Sequence[Any]) -> CheckpointRecord:
    """Rebuild a checkpoint record (its checkpoint without history) from a row."""
    (id_, tenant_id, session_id, agent_id, version, parent_id, node_id, input_, input_type,
     history, state, properties, tombstone, created_at, depth, tag) = row  # fmt: skip
    checkpoint = trusted(
        Checkpoint,
        id=id_,
        tenant_id=tenant_id,
        session_id=session_id,
        agent_id=agent_id,
        version=version,
        parent_id=parent_id,
        node_id=node_id,
        input=_loads(input_),
        input_type=input_type,
        history=(),
        state=_load_object(state),
        properties=_load_object(properties),
        tombstone=bool(tombstone),
        created_at=from_us(created_at),
    )
    return CheckpointRecord(checkpoint, history, depth, tag)


def ancestor_from_row(row: Sequence[Any]) -> CheckpointRecord:
    """A chain's ancestor from a row: its JSON fields are not decoded (see
    :func:`threadline.storekit.records.ancestor`)."""
    (id_, tenant_id, session_id, _, _, parent_id, _, _, _, history, _, _, _, _, depth,
     tag) = row  # fmt: skip
    return ancestor(id_, parent_id, tenant_id, session_id, history, depth, tag)


# -- agents and providers ----------------------------------------------------------------

AGENT_COLUMNS = (
    'id, tenant_id, code, name, system_prompt, model, temperature, max_tokens, "window", '
    "response_format, custom_params, provider_id, enabled, version, created_at, updated_at"
)


def agent_row(a: AgentRecord) -> tuple[Any, ...]:
    """The row for ``a`` in :data:`AGENT_COLUMNS` order."""
    response_format = (
        None if a.response_format is None else dump_json(a.response_format, "response_format")
    )
    return (
        a.id, a.tenant_id, a.code, a.name, a.system_prompt, a.model, a.temperature,
        a.max_tokens, a.window, response_format,
        _dump_object(a.custom_params, "custom_params"), a.provider_id,
        1 if a.enabled else 0, a.version, to_us(a.created_at), to_us(a.updated_at),
    )  # fmt: skip


def agent_from_row(row: Sequence[Any]) -> AgentRecord:
    """Rebuild an agent from a row in :data:`AGENT_COLUMNS` order."""
    (id_, tenant_id, code, name, system_prompt, model, temperature, max_tokens, window,
     response_format, custom_params, provider_id, enabled, version, created_at,
     updated_at) = row  # fmt: skip
    return trusted(
        AgentRecord,
        id=id_,
        tenant_id=tenant_id,
        code=code,
        name=name,
        system_prompt=system_prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        window=window,
        response_format=None if response_format is None else _loads(response_format),
        custom_params=_load_object(custom_params),
        provider_id=provider_id,
        enabled=bool(enabled),
        version=version,
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
    )


PROVIDER_COLUMNS = (
    "id, tenant_id, name, type, api_base, api_key_ref, enabled, metadata, created_at, updated_at"
)


def provider_row(p: ProviderRecord) -> tuple[Any, ...]:
    """The row for ``p`` in :data:`PROVIDER_COLUMNS` order."""
    return (
        p.id, p.tenant_id, p.name, p.type, p.api_base, p.api_key_ref, 1 if p.enabled else 0,
        _dump_object(p.metadata, "provider metadata"), to_us(p.created_at),
        to_us(p.updated_at),
    )  # fmt: skip


def provider_from_row(row: Sequence[Any]) -> ProviderRecord:
    """Rebuild a provider from a row in :data:`PROVIDER_COLUMNS` order."""
    (id_, tenant_id, name, type_, api_base, api_key_ref, enabled, metadata, created_at,
     updated_at) = row  # fmt: skip
    return trusted(
        ProviderRecord,
        id=id_,
        tenant_id=tenant_id,
        name=name,
        type=type_,
        api_base=api_base,
        api_key_ref=api_key_ref,
        enabled=bool(enabled),
        metadata=_load_object(metadata),
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
    )
