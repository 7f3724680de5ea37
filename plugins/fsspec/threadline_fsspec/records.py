"""JSON encoding of the records, and fast decoding of messages read back.

Every file is UTF-8 JSON made by :func:`threadline.codec.dump_json` (compact, NaN
refused), so what cannot be stored is refused with a ``ValidationError`` before any
write. Messages are rebuilt with :func:`threadline.models.trusted` on the read
paths: they were validated when they were saved.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from threadline.codec import dump_json
from threadline.errors import StoreError, ValidationError
from threadline.models import Message, ToolCall, trusted

__all__ = ["decode", "encode", "encode_text", "message_from_dict", "parse_time"]


def encode_text(text: str, field: str) -> bytes:
    """UTF-8 bytes of ``text``, refusing lone surrogates with a ``ValidationError``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{field} is not valid Unicode text (lone surrogate at index {exc.start})"
        ) from None


def encode(value: Any, field: str) -> bytes:
    """Compact UTF-8 JSON of ``value``; ``ValidationError`` naming ``field`` if impossible."""
    return encode_text(dump_json(value, field), field)


def decode(data: bytes, where: str) -> Any:
    """Parse a stored JSON file; a damaged one is a ``StoreError`` naming it."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{where} is not valid JSON ({exc}); the store is damaged") from None


def parse_time(text: str) -> datetime:
    """A timestamp written by ``datetime.isoformat()`` (always UTC here)."""
    return datetime.fromisoformat(text)


def message_from_dict(d: dict[str, Any]) -> Message:
    """Rebuild a message written from :meth:`Message.to_dict`, skipping validation."""
    return trusted(
        Message,
        session_id=d["session_id"],
        tenant_id=d["tenant_id"],
        role=d["role"],
        content=d["content"],
        user_id=d["user_id"],
        agent_id=d["agent_id"],
        tool_calls=tuple(
            trusted(ToolCall, id=c["id"], name=c["name"], arguments=c["arguments"])
            for c in d["tool_calls"]
        ),
        tool_call_id=d["tool_call_id"],
        name=d["name"],
        status=d["status"],
        metadata=d["metadata"],
        id=d["id"],
        seq=d["seq"],
        created_at=parse_time(d["created_at"]),
    )
