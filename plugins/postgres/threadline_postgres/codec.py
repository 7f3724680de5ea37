"""Reversible encoding of text and JSON for PostgreSQL.

PostgreSQL refuses the NUL character (``\\x00``) in ``text`` and ``jsonb`` values,
but a Python ``str`` may hold it and threadline promises that what a caller saves
comes back unchanged. So every user-supplied string goes through an escape that is
the identity for ordinary text and reversible for the rest:

* ``\\x01`` (SOH, a control character almost never seen in text) is the escape mark;
* ``\\x00`` is stored as ``\\x01\\x02`` and ``\\x01`` itself as ``\\x01\\x01``.

A string without either character is stored exactly as given, so SQL readers see
the real text in all but those rare cases. The same escape is applied to every
string (keys included) inside JSON values, which are stored as ``jsonb``.

JSON numbers go into ``jsonb`` as ``numeric``; PostgreSQL prints large floats in
plain notation (``1e+23`` comes back as ``100000000000000000000000``), which a JSON
parser would read as an int. Such floats are therefore written as their exact
decimal value with a ``.0`` suffix, which ``jsonb`` keeps, so they come back as the
same float.
"""

from __future__ import annotations

import json
import re
from typing import Any

from threadline.codec import dump_json

__all__ = [
    "decode_opt",
    "decode_text",
    "dump_json_text",
    "dump_jsonb",
    "dump_opt_jsonb",
    "encode_opt",
    "encode_text",
    "escape_json_text",
    "load_jsonb",
]

_ESCAPED = re.compile("\x01([\x01\x02])")
_EXPONENT = re.compile(r"[0-9]e\+")
_ENCODE_STR = json.encoder.encode_basestring


def encode_text(value: str) -> str:
    """Escape ``value`` for a ``text`` column (identity unless it holds ``\\x00``/``\\x01``)."""
    if "\x00" in value or "\x01" in value:
        return value.replace("\x01", "\x01\x01").replace("\x00", "\x01\x02")
    return value


def encode_opt(value: str | None) -> str | None:
    """:func:`encode_text` that lets ``None`` through."""
    if value is None:
        return None
    if "\x00" in value or "\x01" in value:
        return value.replace("\x01", "\x01\x01").replace("\x00", "\x01\x02")
    return value


def _unescape(match: re.Match[str]) -> str:
    return "\x01" if match.group(1) == "\x01" else "\x00"


def decode_text(value: str) -> str:
    """Undo :func:`encode_text`."""
    if "\x01" in value:
        return _ESCAPED.sub(_unescape, value)
    return value


def decode_opt(value: str | None) -> str | None:
    """:func:`decode_text` that lets ``None`` through."""
    if value is not None and "\x01" in value:
        return _ESCAPED.sub(_unescape, value)
    return value


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {fn(k): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def _encode_tree(value: Any) -> str:
    """JSON for a tree of plain JSON values, writing large floats so ``jsonb`` keeps them."""
    if isinstance(value, str):
        return str(_ENCODE_STR(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        text = repr(value)
        if "e+" in text or "E+" in text:
            return f"{int(value)}.0"
        return text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        items = ",".join(f"{_ENCODE_STR(k)}:{_encode_tree(v)}" for k, v in value.items())
        return "{" + items + "}"
    return "[" + ",".join(_encode_tree(v) for v in value) + "]"


def dump_json_text(value: Any, field: str) -> str:
    """Compact JSON for ``value`` (not yet safe for ``jsonb``; see :func:`escape_json_text`).

    :raises ValidationError: ``value`` is not JSON-serialisable (names ``field``).
    """
    return dump_json(value, field)


def escape_json_text(text: str) -> str:
    """Make JSON text from :func:`dump_json_text` safe for ``jsonb``, reversibly.

    The identity unless the text holds ``\\x00``/``\\x01`` characters or large floats.
    """
    nul = "\\u000" in text and ("\\u0000" in text or "\\u0001" in text)
    big = "e+" in text and _EXPONENT.search(text) is not None
    if nul or big:
        tree = json.loads(text)  # plain JSON types now: str keys, lists
        if nul:
            tree = _map_strings(tree, encode_text)
        text = _encode_tree(tree)
    return text


def dump_jsonb(value: Any, field: str) -> str:
    """JSON text for a ``jsonb`` parameter; :func:`load_jsonb` gives back an equal value.

    :raises ValidationError: ``value`` is not JSON-serialisable (names ``field``).
    """
    return escape_json_text(dump_json(value, field))


def dump_opt_jsonb(value: Any, field: str) -> str | None:
    """:func:`dump_jsonb`, with ``None`` stored as SQL ``NULL``."""
    return None if value is None else dump_jsonb(value, field)


def load_jsonb(text: str | None, default: Any = None) -> Any:
    """Decode a ``jsonb`` value written by :func:`dump_jsonb` (``NULL`` gives ``default``)."""
    if text is None:
        return default
    value = json.loads(text)
    if "\\u0001" in text:
        value = _map_strings(value, decode_text)
    return value
