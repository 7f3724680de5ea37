"""JSON helpers shared by the stores: typed errors instead of ``TypeError``.

:func:`dump_json` refuses what JSON would lose or crash on: values it cannot encode,
NaN, lone surrogates, dict keys that are not ``str`` and values nested deeper than
:data:`threadline.models.MAX_JSON_DEPTH` (plus :data:`ENVELOPE_DEPTH` for the stores'
own records around them), even when a model's dict was changed after it was built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from threadline.errors import ValidationError
from threadline.models import MAX_JSON_DEPTH, ToolCall, check_json, trusted

__all__ = ["ENVELOPE_DEPTH", "dump_json", "dump_tool_calls", "load_json", "load_tool_calls"]

ENVELOPE_DEPTH = 16
"""Levels a store's record may add around a model's JSON field (history records, tool-call
lists): :func:`dump_json` refuses values deeper than ``MAX_JSON_DEPTH + ENVELOPE_DEPTH``."""

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dump_json(value: Any, field: str) -> str:
    """Encode ``value`` as compact JSON, or raise :class:`ValidationError` naming ``field``."""
    check_json(value, field, MAX_JSON_DEPTH + ENVELOPE_DEPTH)
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
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
