"""How rows are written into Redis values, and read back into models.

* **Times** are 18-digit microseconds since 0001-01-01 UTC (:func:`time_key`): exact for
  every ``datetime``, and their string order is their time order, so a session index is a
  sorted set ordered by member text (``ZRANGE ... BYLEX``) with no float rounding.
* **A message** is one sorted-set member scored by its ``seq``: a JSON array of the fields
  that never change (id first, so Lua finds it at bytes 3-38), a newline, and a JSON array
  of the fields ``rewrite_messages`` replaces. Compact JSON has no raw newline, so the
  rewrite script keeps the first part and swaps the second without parsing JSON.
* **Other rows** are compact JSON (:func:`threadline.codec.dump_json`: typed errors for
  what JSON cannot hold); ids and the tenant also sit in hash fields Lua can compare.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from threadline.codec import dump_json
from threadline.models import (
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    ToolCall,
    builder,
)

__all__ = [
    "decode_call",
    "decode_message",
    "decode_session",
    "encode_message",
    "message_tail",
    "time_key",
    "time_of",
]

_ZERO = datetime(1, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_loads = json.loads
_message = builder(Message)
_session = builder(Session)
_tool_call = builder(ToolCall)


def time_key(moment: datetime) -> str:
    """``moment`` as 18 digits of microseconds since year 1 (sorts as text in time order)."""
    return f"{(moment - _ZERO) // _US:018d}"


def time_of(key: str | int) -> datetime:
    """The datetime of :func:`time_key`."""
    return _ZERO + timedelta(microseconds=int(key))


# -- messages ---------------------------------------------------------------------------------


def message_tail(m: Message) -> str:
    """The part of a message member that ``rewrite_messages`` replaces."""
    calls = [[c.id, c.name, c.arguments] for c in m.tool_calls] if m.tool_calls else 0
    return dump_json([m.content, calls, m.status, m.name, m.metadata, m.user_id], "metadata")


def encode_message(m: Message) -> str:
    """A message as its sorted-set member (fields that never change, newline, the rest)."""
    head = dump_json(
        [m.id, m.role, m.agent_id, m.tool_call_id, (m.created_at - _ZERO) // _US], "id"
    )
    return head + "\n" + message_tail(m)


def decode_message(member: str, seq: float | int | str, tenant_id: str, session_id: str) -> Message:
    """The message a member (:func:`encode_message`) and its score hold."""
    head, _, tail = member.partition("\n")
    mid, role, agent_id, tool_call_id, created = _loads(head)
    content, calls, status, name, metadata, user_id = _loads(tail)
    return _message(
        session_id, tenant_id, role, content, user_id, agent_id,
        tuple(_tool_call(i, n, a) for i, n, a in calls) if calls else (),
        tool_call_id, name, status, metadata, mid, int(float(seq)),
        _ZERO + timedelta(microseconds=created),
    )  # fmt: skip


# -- sessions ---------------------------------------------------------------------------------

SESSION_FIELDS = ("t", "us", "ag", "row", "c", "u", "exp")
"""The session hash fields a read fetches: tenant, user, agent, ``[title, metadata]``,
created and updated time keys, expiry (ms since the epoch, when the session has a TTL)."""


def session_row(session: Session) -> str:
    """The ``row`` field: title and metadata, the two a session's edits change."""
    return dump_json([session.title, session.metadata], "metadata")


def decode_session(session_id: str, values: Sequence[Any]) -> Session:
    """A session from its hash fields (in :data:`SESSION_FIELDS` order)."""
    tenant, user, agent, row, created, updated = values[:6]
    title, metadata = _loads(row)
    return _session(
        tenant, user or None, agent or None, title, metadata, session_id,
        time_of(created), time_of(updated),
    )  # fmt: skip


# -- API calls, checkpoints, configs ----------------------------------------------------------


def encode_call(call: ApiCall) -> str:
    """An API call as JSON (its ``to_dict``)."""
    return dump_json(call.to_dict(), "metadata")


def decode_call(text: str) -> ApiCall:
    """The API call of :func:`encode_call`."""
    return ApiCall.from_dict(_loads(text))


def encode_checkpoint(c: Checkpoint) -> str:
    """A checkpoint's fields without its history and version (those live elsewhere)."""
    values = c.to_dict()
    values.pop("history", None)
    values.pop("version", None)
    return dump_json(values, "checkpoint")


def decode_checkpoint(text: str, version: str | int) -> Checkpoint:
    """The checkpoint of :func:`encode_checkpoint` with its version, history empty."""
    values = _loads(text)
    values["version"] = int(version)
    return Checkpoint.from_dict(values)


def encode_agent(agent: AgentRecord) -> str:
    """An agent row as JSON."""
    return dump_json(agent.to_dict(), "custom_params")


def decode_agent(text: str) -> AgentRecord:
    """The agent row of :func:`encode_agent`."""
    return AgentRecord.from_dict(_loads(text))


def encode_provider(provider: ProviderRecord) -> str:
    """A provider row as JSON."""
    return dump_json(provider.to_dict(), "provider metadata")


def decode_provider(text: str) -> ProviderRecord:
    """The provider row of :func:`encode_provider`."""
    return ProviderRecord.from_dict(_loads(text))
