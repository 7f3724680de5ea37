"""LangChain messages as threadline history messages, exactly, and cheaply on every step.

A message-list channel (``messages`` of ``MessagesState``) is stored as the checkpoint's
``history``: threadline keeps a history as a delta on the parent checkpoint's, so a chat
of *S* steps stores each message once instead of *S* times. Each LangChain message becomes
one :class:`threadline.models.Message`: its text in ``content`` (so the CLI, export and
erasure see it), its type as the role (human→user, ai→assistant, system, tool), its
``id`` as the stored message's id when it is a UUID (as LangGraph makes them), and in
``metadata["lc"]`` the fields that differ from their defaults (``tool_calls``,
``response_metadata``, a non-UUID ``id``, ...) as JSON. The conversion is
checked when it is made: a message that does not come back equal from that form (content
blocks, values JSON cannot hold) is kept whole instead, as LangGraph's serializer writes it
(``metadata["lc_blob"]``). So every message round-trips exactly.

Converting a long history on every step would cost as much as the storage it saves, so a
:class:`MessageCodec` remembers the conversions it made, both ways: a step converts only
its new messages, and the history it hands the store holds the very objects of the
parent's, which the store compares by identity to find the delta.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from operator import attrgetter, eq, is_
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from threadline.errors import StoreError
from threadline.ids import new_id
from threadline.models import Message, Role

__all__ = ["MessageCodec", "Refs", "Resolver", "decode_typed", "encode_typed", "is_message_list"]

Resolver = Callable[[list[Any]], Any]
"""Turns a stored reference (``["h", i]``: message ``i`` of the record's history, ``["s", i]``:
message ``i`` of its ``state["messages"]``) into the message."""


class Refs:
    """The messages one checkpoint record holds, by object, so that other values of the
    record, and its pending writes, refer to them instead of storing them again.

    The last :data:`RECENT` history messages are referred to by position (a value or a
    write holding a message of the history holds a recent one; an older one is stored
    again, which is only a copy); any other message met while encoding (a graph input in
    ``__start__``, say) is added to :attr:`extra`, stored once in the record's
    ``state["messages"]``. The objects are kept alive while the refs live.
    """

    def __init__(self, history: list[Any]) -> None:
        start = max(len(history) - RECENT, 0)
        self.objects: list[Any] = history[start:]
        self.by_id: dict[int, list[Any]] = {
            id(m): ["h", start + i] for i, m in enumerate(self.objects)
        }
        self.extra: list[Any] = []
        self.frozen = False

    def ref(self, m: Any, codec: MessageCodec) -> list[Any] | None:
        found = self.by_id.get(id(m))
        if found is not None:
            return found
        if self.frozen:
            return None
        self.objects.append(m)
        self.extra.append(codec._message_value(m))
        found = self.by_id[id(m)] = ["s", len(self.extra) - 1]
        return found


_CLASSES: dict[str, tuple[type[BaseMessage], Role]] = {
    "human": (HumanMessage, "user"),
    "ai": (AIMessage, "assistant"),
    "system": (SystemMessage, "system"),
    "tool": (ToolMessage, "tool"),
}
_BY_ROLE: dict[str, type[BaseMessage]] = {role: cls for cls, role in _CLASSES.values()}
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CACHE_LIMIT = 100_000
_WRAPPERS = frozenset("ldrmb")
RECENT = 32
"""How many of a history's last messages other values of its record may refer to."""


_MESSAGE_TYPES: dict[type, bool] = {}


def _is_message_type(kind: type) -> bool:
    known = _MESSAGE_TYPES.get(kind)
    if known is None:
        known = _MESSAGE_TYPES[kind] = issubclass(kind, BaseMessage)
    return known


def is_message_list(value: object) -> bool:
    """Whether ``value`` is a non-empty list of LangChain messages (a history channel).

    By the set of the items' types (a pass in C; ``isinstance`` on each item of a long
    history, through ``BaseMessage``'s ABC check, cost a few hundred microseconds a put)."""
    if not isinstance(value, list) or not value or not _is_message_type(type(value[0])):
        return False  # a list of something else is told at its first item
    return all(map(_is_message_type, set(map(type, value))))


def encode_typed(serde: SerializerProtocol, value: object) -> list[str]:
    """``value`` through LangGraph's serializer as JSON-safe ``[type, base64]``."""
    kind, data = serde.dumps_typed(value)
    return [kind, base64.b64encode(data).decode("ascii")]


def decode_typed(serde: SerializerProtocol, encoded: list[str]) -> Any:
    """The value :func:`encode_typed` encoded."""
    kind, data = encoded
    return serde.loads_typed((kind, base64.b64decode(data)))


class MessageCodec:
    """Converts LangChain messages to threadline messages and back, remembering both ways.

    A remembered LangChain message is reused only while it is the same object with the
    same ``id`` and ``content`` object (LangGraph replaces a message to change it); a
    remembered threadline message only while the stored one is equal to it (an erasure
    that redacted its text makes a new conversion).
    """

    def __init__(self, serde: SerializerProtocol) -> None:
        self.serde = serde
        self._to_store: dict[int, tuple[BaseMessage, object, str | None, Message]] = {}
        self._from_store: dict[str, tuple[Message, BaseMessage]] = {}
        self._last: _LastHistory | None = None

    def to_history(
        self, messages: list[BaseMessage], *, tenant_id: str, session_id: str, user_id: str | None
    ) -> tuple[Message, ...]:
        """The threadline history of ``messages``."""
        if len(self._to_store) > _CACHE_LIMIT:
            self._to_store.clear()
        where = (tenant_id, session_id, user_id)
        last = self._last
        kept = last.prefix(messages, where) if last is not None else 0
        if kept:  # only the new messages' contents and ids are read again
            assert last is not None
            tail = messages[kept:]
            if not tail:  # the same history: the same tuple (the store compares by identity)
                self._last = _LastHistory(
                    list(messages), last.contents, last.ids, last.history, where
                )
                return last.history
            contents = last.contents + list(map(_CONTENT, tail))
            message_ids = last.ids + list(map(_ID, tail))
            out = list(last.history)
        else:
            tail = messages
            contents = list(map(_CONTENT, messages))
            message_ids = list(map(_ID, messages))
            out = []
        cache = self._to_store
        for m in tail:
            hit = cache.get(id(m))
            if hit is not None and hit[0] is m and hit[1] is m.content and hit[2] == m.id:
                stored = hit[3]
                if (
                    stored.session_id == session_id
                    and stored.user_id == user_id
                    and stored.tenant_id == tenant_id
                ):
                    out.append(stored)
                    continue
            stored = self._convert(m, tenant_id=tenant_id, session_id=session_id, user_id=user_id)
            self._to_store[id(m)] = (m, m.content, m.id, stored)
            self._from_store[stored.id] = (stored, m)
            out.append(stored)
        history = tuple(out)
        self._last = _LastHistory(list(messages), contents, message_ids, history, where)
        return history

    def from_history(self, history: tuple[Message, ...]) -> list[BaseMessage]:
        """The LangChain messages of a stored history (a new list, remembered messages).

        A history that starts with the very objects of the last one converted (the store
        serves the checkpoint this saver wrote from its cache) reuses that conversion with
        identity checks in C: a read costs its new messages, not the thread's length."""
        if len(self._from_store) > _CACHE_LIMIT:
            self._from_store.clear()
        last = self._last
        out: list[BaseMessage] = []
        if last is not None:
            n = len(last.history)
            if len(history) >= n and all(map(is_, history[:n], last.history)):
                out = list(last.messages)
        for stored in history[len(out) :]:
            hit = self._from_store.get(stored.id)
            if hit is not None and (hit[0] is stored or _same(hit[0], stored)):
                m = hit[1]
                if hit[0] is not stored:  # the store's object from now on: its cache holds it
                    self._from_store[stored.id] = (stored, m)
                    self._to_store[id(m)] = (m, m.content, m.id, stored)
                    self._last = None  # so the next history is made of the store's objects
                out.append(m)
                continue
            m = self._restore(stored)
            self._from_store[stored.id] = (stored, m)
            self._to_store[id(m)] = (m, m.content, m.id, stored)
            out.append(m)
        return out

    def encode_value(self, value: object, refs: Refs | None = None) -> Any:
        """``value`` as JSON: plain values as they are, lists as JSON arrays of their encoded
        items, dicts with string keys as JSON objects of their encoded values (wrapped as
        ``{"d": ...}`` only when one looks like a wrapper: a single key of ``l``, ``d``,
        ``r``, ``m``, ``b``), messages compact (``{"m": ...}``) or, with ``refs``, as
        references (``{"r": ...}``), anything else through the serializer
        (``{"b": [type, base64]}``). Exact: types are checked, not compared. (Lists wrapped
        as ``{"l": ...}`` and every dict as ``{"d": ...}``, as earlier versions wrote them,
        read the same.)"""
        kind = type(value)
        if value is None or kind in (str, bool, int):
            return value
        if kind is float and value == value and value not in (float("inf"), float("-inf")):
            return value
        if kind is list:
            return [self.encode_value(v, refs) for v in value]  # type: ignore[attr-defined]
        if kind is dict and all(type(k) is str for k in value):  # type: ignore[attr-defined]
            items = value.items()  # type: ignore[attr-defined]
            plain = {k: self.encode_value(v, refs) for k, v in items}
            return {"d": plain} if len(plain) == 1 and next(iter(plain)) in _WRAPPERS else plain
        if isinstance(value, BaseMessage):
            ref = refs.ref(value, self) if refs is not None else None
            if ref is not None:
                return {"r": ref}
            return self._message_value(value)
        return {"b": encode_typed(self.serde, value)}

    def _message_value(self, m: BaseMessage) -> dict[str, Any]:
        if isinstance(m.content, str) and m.type in _CLASSES:
            compact = _compact(m)
            if compact is not None:
                if isinstance(m, ToolMessage):
                    compact["tool_call_id"] = m.tool_call_id
                return {"m": {"c": m.content, **compact}}
        return {"b": encode_typed(self.serde, m)}

    def decode_value(self, encoded: Any, resolve: Resolver | None = None) -> Any:
        """The value :meth:`encode_value` encoded (``resolve`` turns references into messages)."""
        if isinstance(encoded, list):
            return [self.decode_value(v, resolve) for v in encoded]
        if not isinstance(encoded, dict):
            return encoded
        if len(encoded) != 1 or next(iter(encoded)) not in _WRAPPERS:
            return {k: self.decode_value(v, resolve) for k, v in encoded.items()}
        if "l" in encoded:
            return [self.decode_value(v, resolve) for v in encoded["l"]]
        if "d" in encoded:
            return {k: self.decode_value(v, resolve) for k, v in encoded["d"].items()}
        if "r" in encoded:
            if resolve is None:
                raise StoreError("a stored LangGraph value refers to a message it cannot reach")
            return resolve(encoded["r"])
        if "m" in encoded:
            fields = dict(encoded["m"])
            content = fields.pop("c")
            cls = _CLASSES[fields.pop("t")][0]
            return cls(content=content, **fields)
        return decode_typed(self.serde, encoded["b"])

    def _convert(
        self, m: BaseMessage, *, tenant_id: str, session_id: str, user_id: str | None
    ) -> Message:
        known = _CLASSES.get(m.type)
        role: Role = known[1] if known is not None else "system"
        content = m.content if isinstance(m.content, str) else ""
        tool_call_id = m.tool_call_id if isinstance(m, ToolMessage) else None
        if role == "tool" and not tool_call_id:  # threadline requires one on a tool message
            role, known = "system", None
        compact = _compact(m) if known is not None and isinstance(m.content, str) else None
        message_id: str | None = None
        metadata: dict[str, Any] = {}
        if compact is None:
            metadata["lc_blob"] = encode_typed(self.serde, m)
        else:
            del compact["t"]  # the role says it
            if m.id is None:
                compact["id"] = None
            elif _is_uuid(m.id):
                message_id = compact.pop("id")  # the message's own id is the stored one's
            if compact:
                metadata["lc"] = compact
        return Message(
            id=message_id or new_id(),
            session_id=session_id,
            tenant_id=tenant_id,
            user_id=user_id,
            role=role,
            content=content,
            tool_call_id=tool_call_id,
            metadata=metadata,
        )

    def _restore(self, stored: Message) -> BaseMessage:
        blob = stored.metadata.get("lc_blob")
        if blob is not None:
            restored: BaseMessage = decode_typed(self.serde, blob)
            return restored
        fields = {"id": stored.id, **stored.metadata.get("lc", {})}
        cls = _BY_ROLE[stored.role]
        if cls is ToolMessage:
            fields["tool_call_id"] = stored.tool_call_id
        return cls(content=stored.content, **fields)


_CONTENT = attrgetter("content")
_ID = attrgetter("id")


class _LastHistory:
    """The messages of the last history converted, so the next one (the same list and a
    few more, every step of a chat) reuses its prefix with identity checks in C."""

    __slots__ = ("contents", "history", "ids", "messages", "where")

    def __init__(
        self,
        messages: list[BaseMessage],
        contents: list[Any],
        ids: list[str | None],
        history: tuple[Message, ...],
        where: tuple[str, str, str | None],
    ) -> None:
        self.messages, self.contents, self.ids = messages, contents, ids
        self.history, self.where = history, where

    def prefix(self, messages: list[BaseMessage], where: tuple[str, str, str | None]) -> int:
        """How many messages of the last history ``messages`` starts with: all of them
        when it starts with the same objects still holding the same content objects and
        ids (checked in C, without building lists), else none."""
        n = len(self.messages)
        if (
            where != self.where
            or len(messages) < n
            or not all(map(is_, messages, self.messages))
            or not all(map(is_, map(_CONTENT, messages), self.contents))
            or not all(map(eq, map(_ID, messages), self.ids))
        ):
            return 0
        return n


def _is_uuid(value: object) -> bool:
    return isinstance(value, str) and _CANONICAL_UUID.fullmatch(value) is not None


def _same(a: Message, b: Message) -> bool:
    """Whether two stored messages convert to the same LangChain message (what it is made of)."""
    return (
        a.content == b.content
        and a.role == b.role
        and a.tool_call_id == b.tool_call_id
        and a.metadata == b.metadata
    )


def _compact(m: BaseMessage) -> dict[str, Any] | None:
    """The message's type and non-default fields as JSON, or ``None`` if that loses anything."""
    fields = m.model_dump(exclude={"content", "type"}, exclude_defaults=True)
    if m.type == "tool":
        fields.pop("tool_call_id", None)  # kept in the threadline message
    try:
        fields = json.loads(json.dumps(fields))
    except (TypeError, ValueError):
        return None
    cls = _CLASSES[m.type][0]
    tool_fields = {"tool_call_id": m.tool_call_id} if isinstance(m, ToolMessage) else {}
    try:
        rebuilt = cls(content=m.content, **fields, **tool_fields)
    except Exception:
        return None
    if rebuilt != m or type(rebuilt) is not type(m):
        return None
    return {"t": m.type, **fields}
