"""Message rows: a session's messages as tuples of the fields asked for, no model built.

What ``threadline_read_message_rows`` returns (see its spec in
:mod:`threadline.hookspecs.messages`): a reader that turns messages into something else
(an adapter's own items, an export) asks for a few fields and gets one tuple a message, in
the order of :class:`~threadline.queries.MessageRange`, each field's value as the
:class:`~threadline.models.Message` would hold it but for:

* ``metadata``: its JSON text (``json.loads`` gives the metadata dict; spacing and key
  order are the store's), ``None`` when the message has none (``{}``);
* ``tool_calls``: a tuple of :class:`~threadline.models.ToolCall` (``()``: none).

The core's default (:func:`read_message_rows`) takes the messages from
``threadline_read_messages``; SQLite and PostgreSQL select only the columns asked for and
build no :class:`~threadline.models.Message` (a fork's shared rows resolved as in every read).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from threadline.codec import dump_json
from threadline.errors import ValidationError
from threadline.models import Message
from threadline.queries import MessageRange

__all__ = ["ROW_FIELDS", "check_fields", "read_message_rows", "row_getter"]

ROW_FIELDS: tuple[str, ...] = (
    "id",
    "seq",
    "role",
    "content",
    "user_id",
    "agent_id",
    "tool_calls",
    "tool_call_id",
    "name",
    "status",
    "metadata",
    "created_at",
)
"""The fields a row may hold: a :class:`~threadline.models.Message`'s, but the session and
tenant (the read's own arguments)."""
_KNOWN = frozenset(ROW_FIELDS)


def check_fields(fields: Any) -> tuple[str, ...]:
    """``fields`` as a tuple: one or more distinct names of :data:`ROW_FIELDS`.

    :raises ValidationError: not a sequence of such names (a lone string is refused: it
        would read as its letters).
    """
    if isinstance(fields, (str, bytes)) or not isinstance(fields, Sequence):
        raise ValidationError(f"fields must be a sequence of field names, got {fields!r}")
    names = tuple(fields)
    if not names:
        raise ValidationError("fields must name at least one field")
    unknown = [n for n in names if not isinstance(n, str) or n not in _KNOWN]
    if unknown:
        raise ValidationError(f"unknown message row fields {unknown!r}; known: {ROW_FIELDS}")
    if len(set(names)) != len(names):
        raise ValidationError(f"fields names a field twice: {names!r}")
    return names


def _metadata(message: Message) -> str | None:
    return dump_json(message.metadata, "metadata") if message.metadata else None


def row_getter(fields: Sequence[str]) -> Callable[[Message], tuple[Any, ...]]:
    """The function giving a message's row of ``fields`` (checked by :func:`check_fields`)."""
    if "metadata" not in fields:
        get = operator.attrgetter(*fields)
        if len(fields) == 1:
            return lambda message: (get(message),)
        return get
    parts = [_metadata if f == "metadata" else operator.attrgetter(f) for f in fields]
    return lambda message: tuple(part(message) for part in parts)


async def read_message_rows(
    hooks: Any, tenant_id: str, session_id: str, query: MessageRange, fields: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The default: ``read_messages`` with the same range, each message made a row."""
    messages = await hooks.call(
        "threadline_read_messages", tenant_id=tenant_id, session_id=session_id, query=query
    )
    row = row_getter(fields)
    return [row(m) for m in messages or ()]
