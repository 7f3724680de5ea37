"""JSON helpers shared by the stores: typed errors instead of ``TypeError``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from threadline.errors import ValidationError
from threadline.models import ToolCall, trusted

__all__ = ["dump_json", "dump_tool_calls", "load_json", "load_tool_calls"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dump_json(value: Any, field: str) -> str:
    """Encode ``value`` as compact JSON, or raise :class:`ValidationError` naming ``field``."""
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} is not JSON-serialisable: {exc}") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"{field} holds text that is not valid Unicode (a lone surrogate)"
            ) from None
    return text


def load_json(text: str | bytes | None, default: Any = None) -> Any:
    """Decode JSON stored by :func:`dump_json` (``None`` gives ``default``)."""
    if text is None:
        return default
    return json.loads(text)


def dump_tool_calls(calls: Sequence[ToolCall]) -> str | None:
    """Encode tool calls for a text column (``None`` when there are none)."""
    if not calls:
        return None
    return dump_json([[c.id, c.name, c.arguments] for c in calls], "tool call arguments")


def load_tool_calls(text: str | None) -> tuple[ToolCall, ...]:
    """Decode what :func:`dump_tool_calls` stored."""
    if not text:
        return ()
    return tuple(trusted(ToolCall, id=i, name=n, arguments=a) for i, n, a in json.loads(text))
