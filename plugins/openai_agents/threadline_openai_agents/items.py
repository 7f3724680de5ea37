"""Agents SDK items as threadline messages, and back, without losing a byte of the item.

An item becomes one :class:`~threadline.models.Message`. The SDK's easy input message
(``{"content": text, "role": "user"}``) is a plain message. Any other item gets its role
mapped (``user``, ``assistant``, ``system`` for ``system``/``developer`` messages, ``tool``
for the outputs of calls), its main text (a message's text, a call's arguments, an output)
as the message ``content`` so the CLI, the UI and exports show it, and the rest as its
exact JSON **text** in ``metadata["openai_agents"]["item"]`` (the text's place left ``null``
and put back on reading): one form on every store, since key order, numbers and unknown
fields survive it in a ``jsonb`` column and any third-party store, where a JSON object
would not (``jsonb`` reorders keys).

Items that an earlier release stored as the JSON **object** itself (on SQLite) read back
the same. Messages written by threadline's own agent are read as the equivalent SDK items.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from agents.items import TResponseInputItem

from threadline.errors import ValidationError
from threadline.models import Message, Role, ToolCall

__all__ = [
    "METADATA_KEY",
    "ROW_FIELDS",
    "item_role",
    "items_from_message",
    "items_from_messages",
    "items_from_rows",
    "message_from_item",
    "row_of",
    "same_row",
]

METADATA_KEY = "openai_agents"
"""The message metadata key holding the item (``item``: its JSON text, or the JSON object an
earlier release wrote on SQLite; ``text``: the path of the text put back from ``content``)."""

_TEXT_FIELDS = ("content", "output", "arguments", "summary")
_ROLES: dict[str, Role] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())
)
"""``json.loads`` without its Python wrapper (two regex matches a call): the items' JSON is
compact text this module wrote, so the C scanner reads it from offset 0 directly."""

Path = tuple[str | int, ...]


def item_role(item: dict[str, Any]) -> tuple[Role, str | None]:
    """The threadline role of ``item`` and, for the output of a call, the call's id."""
    kind = item.get("type")
    if kind in (None, "message"):
        role = _ROLES.get(cast(str, item.get("role")))
        if role is not None:
            return role, None
    call_id = item.get("call_id")
    if isinstance(kind, str) and kind.endswith("output") and isinstance(call_id, str) and call_id:
        return "tool", call_id
    return "assistant", None


def _text_path(item: dict[str, Any]) -> Path | None:
    """Where the item keeps its main text: a field, or the first text part of a list."""
    for name in _TEXT_FIELDS:
        value = item.get(name)
        if isinstance(value, str):
            return (name,)
        if isinstance(value, list):
            for i, part in enumerate(value):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    return (name, i, "text")
            return None
    return None


def _with_value(node: Any, path: Path, value: Any) -> Any:
    """A copy of ``node`` with ``value`` at ``path`` (only the containers on the path copied)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _with_value(node[head], rest, value)}
    copy = list(node)
    copy[cast(int, head)] = _with_value(node[cast(int, head)], rest, value)
    return copy


def _is_plain(item: dict[str, Any]) -> bool:
    """``{"content": text, "role": user|assistant|system}``: the SDK's easy input message,
    stored as a plain threadline message (no metadata, nothing to decode on reading)."""
    return (
        len(item) == 2
        and isinstance(item.get("content"), str)
        and item.get("role") in _PLAIN_ROLES
        and next(iter(item)) == "content"
    )


_PLAIN_ROLES = frozenset({"user", "assistant", "system"})


def message_from_item(
    item: TResponseInputItem,
    *,
    session_id: str,
    tenant_id: str,
    user_id: str | None,
    agent_id: str | None,
) -> Message:
    """The message that stores ``item`` (a JSON-serialisable dict, as the SDK's sessions take).

    :raises ValidationError: ``item`` is not a dict, or not JSON (NaN, objects, lone surrogates).
    """
    if not isinstance(item, dict):
        raise ValidationError(
            f"a session item must be a dict (TResponseInputItem), got {type(item).__name__}"
        )
    data = cast(dict[str, Any], item)
    if _is_plain(data):
        return Message(
            session_id=session_id,
            tenant_id=tenant_id,
            role=data["role"],
            content=data["content"],
            user_id=user_id,
            agent_id=agent_id,
        )
    role, call_id = item_role(data)
    path = _text_path(data)
    text = ""
    shell: Any = data
    if path is not None:
        field = cast(str, path[0])
        text = data[field] if len(path) == 1 else data[field][path[1]]["text"]
        shell = _with_value(data, path, None)
    try:
        raw = _encoder.encode(shell)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"a session item is not JSON-serialisable: {exc}") from None
    stored: dict[str, Any] = {"item": raw}
    if path is not None:
        stored["text"] = list(path)
    name = data.get("name") if data.get("type") == "function_call" else None
    return Message(
        session_id=session_id,
        tenant_id=tenant_id,
        role=role,
        content=text,
        user_id=user_id,
        agent_id=agent_id,
        tool_call_id=call_id,
        name=name if isinstance(name, str) else None,
        metadata={METADATA_KEY: stored},
    )


ROW_FIELDS = ("seq", "role", "content", "tool_call_id", "tool_calls", "metadata")
"""The message fields an item is made of, as :meth:`threadline.Store.read_message_rows`
reads them (in this order): what :func:`items_from_rows` takes."""


def row_of(message: Message) -> tuple[Any, ...]:
    """``message``'s row of :data:`ROW_FIELDS`, its metadata as the dict (``None``: empty),
    as :func:`same_row` compares them."""
    return (
        message.seq,
        message.role,
        message.content,
        message.tool_call_id,
        message.tool_calls,
        message.metadata or None,
    )


def same_row(row: Sequence[Any], message: Message) -> bool:
    """Whether ``row`` (of :data:`ROW_FIELDS`; its metadata JSON text as the store gives it,
    or the dict) is ``message``'s: the same items would be made of it."""
    meta = row[5]
    if meta.__class__ is str:
        meta = _scan(meta, 0)[0]
    return (*row[:5], meta) == row_of(message)


def items_from_rows(rows: Iterable[Sequence[Any]]) -> list[TResponseInputItem]:
    """The SDK items of stored messages read as rows of :data:`ROW_FIELDS` (the metadata
    as the store's JSON text, or the dict), in order: new objects, the caller's to change.
    A row's metadata is decoded when its item is made and dropped at once."""
    out: list[Any] = []
    append, scan, encode, key = out.append, _scan, _encoder.encode, METADATA_KEY
    for _seq, role, content, call_id, calls, meta in rows:
        if meta.__class__ is str:
            meta = scan(meta, 0)[0]
        if not meta or (stored := meta.get(key)) is None:
            if role == "tool" or calls:
                out.extend(_native_items(role, content, call_id, calls))
            else:
                append({"content": content, "role": role})
            continue
        # its JSON text, or the object form of an earlier release (copied: a store's own)
        item = stored["item"]
        item = scan(item if item.__class__ is str else encode(item), 0)[0]
        path = stored.get("text")
        if path:  # the text goes back where it was (the parsed item is ours to change)
            if len(path) == 1:
                item[path[0]] = content
            else:
                item[path[0]][path[1]][path[2]] = content
        append(item)
    return out


def items_from_messages(messages: Iterable[Message]) -> list[TResponseInputItem]:
    """The SDK items of stored ``messages``, in order: new objects, the caller's to change."""
    return items_from_rows(map(row_of, messages))


def items_from_message(message: Message) -> list[TResponseInputItem]:
    """The SDK item(s) a stored message stands for (one, unless threadline's agent wrote it)."""
    return items_from_messages((message,))


def _native_items(
    role: str, content: str, call_id: str | None, calls: Sequence[ToolCall]
) -> list[Any]:
    """A tool result or tool-calling reply written by threadline's agent, as SDK items."""
    if role == "tool":
        output = {"type": "function_call_output", "call_id": call_id}
        return [{**output, "output": content}]
    out: list[Any] = []
    if content:
        out.append({"content": content, "role": role})
    for call in calls:
        arguments = json.dumps(call.arguments)
        out.append(
            {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": arguments}
        )
    return out
