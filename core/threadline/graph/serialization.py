"""Checkpoint values as JSON: node inputs and the key/value state, rebuilt on resume.

JSON values (``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list``, ``dict``
with ``str`` keys) pass through. Other values are written as
``{"$type": NAME, "$value": ...}`` so a resumed run, in any process, rebuilds them:

* types with a registered codec: ``tuple``, ``set``, ``frozenset``, ``datetime``,
  ``date``, ``UUID``, ``Decimal`` by default, more with :meth:`Serializer.register`;
* ``Enum`` members, dataclasses and attrs classes, by the importable qualified name of
  their type, ``module:QualName`` (so they must be defined at module level; their
  ``__init__`` is called with the fields it takes).

A node's input is stored untagged, its type's name going to ``Checkpoint.input_type``
(``str``, ``dict``, ``tuple``, ``myapp.tickets:Ticket`` ...). Anything else raises
:class:`UnserialisableValue`, which the persistency layer reports with the node's name.

Encoding counts how deep the JSON it builds nests: past
:data:`~threadline.models.MAX_JSON_DEPTH` (a value 10,000 deep, or one that contains
itself) it raises :class:`~threadline.errors.ValidationError`, as a checkpoint holding
such JSON would, instead of recursing until ``RecursionError``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from threadline.errors import ValidationError
from threadline.models import MAX_JSON_DEPTH

__all__ = ["JSON_TYPE_NAMES", "TYPE_KEY", "VALUE_KEY", "Serializer", "UnserialisableValue"]

T = TypeVar("T")

TYPE_KEY = "$type"
VALUE_KEY = "$value"
JSON_TYPE_NAMES: dict[type, str] = {
    type(None): "None",
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "list",
    dict: "dict",
}
"""The names ``input_type`` uses for plain JSON values."""
_JSON_BY_NAME = frozenset(JSON_TYPE_NAMES.values())


class UnserialisableValue(ValueError):
    """A value with no JSON encoding: where it is, its type, and why."""

    def __init__(self, path: str, type_name: str, reason: str) -> None:
        super().__init__(f"{path}: value of type {type_name!r} {reason}")
        self.path = path
        self.type_name = type_name
        self.reason = reason


@attrs.frozen
class _Codec:
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def display_name(cls: type) -> str:
    """A type's name for people: ``int``, ``decimal.Decimal``, ``myapp.tickets.Ticket``."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def qualified_name(cls: type) -> str:
    """A type's importable name, ``module:QualName`` (bare for JSON types)."""
    return JSON_TYPE_NAMES.get(cls) or f"{cls.__module__}:{cls.__qualname__}"


def resolve_type(name: str) -> type:
    """Import the type named ``module:QualName``; raise ``LookupError`` saying why not."""
    module_name, _, qualname = name.partition(":")
    if not qualname or "<locals>" in qualname:
        raise LookupError(f"{name!r} is not an importable qualified name")
    module = sys.modules.get(module_name)
    try:
        if module is None:
            module = importlib.import_module(module_name)
        found: Any = module
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"cannot import {name!r}: {exc}") from None
    if not isinstance(found, type):
        raise LookupError(f"{name!r} is not a class")
    return found


def _iso_datetime(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _ordered(values: Any) -> list[Any]:
    items = list(values)
    try:
        return sorted(items)
    except TypeError:
        return items


class Serializer:
    """Encodes checkpoint inputs and state as JSON and rebuilds them; see :meth:`register`."""

    def __init__(self) -> None:
        self._by_type: dict[type, _Codec] = {}
        self._by_name: dict[str, _Codec] = {}
        self._rebuildable: set[type] = set()
        self.register(tuple, list, tuple, name="tuple")
        self.register(set, _ordered, set, name="set")
        self.register(frozenset, _ordered, frozenset, name="frozenset")
        self.register(dt.datetime, dt.datetime.isoformat, _iso_datetime, name="datetime")
        self.register(dt.date, dt.date.isoformat, dt.date.fromisoformat, name="date")
        self.register(uuid.UUID, str, uuid.UUID, name="UUID")
        self.register(decimal.Decimal, str, decimal.Decimal, name="Decimal")

    def register(
        self,
        cls: type[T],
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
        *,
        name: str | None = None,
    ) -> Serializer:
        """Store values of exactly type ``cls`` as ``encode(value)``, rebuilt by ``decode``.

        ``encode`` may return any value this serializer can encode; ``name`` (default
        ``module:QualName``) is what the checkpoint records. Returns ``self`` for chaining.
        """
        codec = _Codec(name or qualified_name(cls), encode, decode)
        if codec.name in _JSON_BY_NAME or codec.name == "dict":
            raise ValueError(f"{codec.name!r} is reserved for JSON values")
        self._by_type[cls] = codec
        self._by_name[codec.name] = codec
        return self

    # -- encoding -------------------------------------------------------------------------

    def encode(self, value: Any, path: str = "value") -> Any:
        """``value`` as JSON, non-JSON types tagged; raise :class:`UnserialisableValue`, or
        :class:`~threadline.errors.ValidationError` past ``MAX_JSON_DEPTH`` levels."""
        return self._encode(value, path, 1)

    def _encode(self, value: Any, path: str, depth: int) -> Any:
        # ``depth``: how deep a container made of ``value`` would sit in the JSON built.
        cls = type(value)
        if value is None or cls is bool or cls is str or cls is int:
            return value
        if cls is float:
            return self._finite(value, path)
        if cls is list:
            _check_depth(path, depth)
            return [self._encode(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        if cls is dict:
            _check_depth(path, depth)
            return self._encode_dict(value, path, depth)
        codec = self._by_type.get(cls)
        if codec is not None:
            _check_depth(path, depth)
            inner = self._encode(codec.encode(value), path, depth + 1)
            return {TYPE_KEY: codec.name, VALUE_KEY: inner}
        if isinstance(value, enum.Enum):
            _check_depth(path, depth)
            name = self._importable(cls, path)
            return {
                TYPE_KEY: name,
                VALUE_KEY: self._encode(value.value, f"{path}.value", depth + 1),
            }
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _check_depth(path, depth + 1)
            name = self._importable(cls, path)
            fields = {
                f.name: self._encode(getattr(value, f.name), f"{path}.{f.name}", depth + 2)
                for f in dataclasses.fields(value)
                if f.init
            }
            return {TYPE_KEY: name, VALUE_KEY: fields}
        if attrs.has(cls):
            _check_depth(path, depth + 1)
            name = self._importable(cls, path)
            fields = {
                a.alias or a.name: self._encode(
                    getattr(value, a.name), f"{path}.{a.name}", depth + 2
                )
                for a in attrs.fields(cls)
                if a.init
            }
            return {TYPE_KEY: name, VALUE_KEY: fields}
        # Subclasses of JSON scalars (numpy floats, str enums without Enum...) keep their value.
        if isinstance(value, (str, int)):
            return str(value) if isinstance(value, str) else int(value)
        if isinstance(value, float):
            return self._finite(float(value), path)
        raise UnserialisableValue(path, display_name(cls), "has no JSON encoding")

    def encode_typed(self, value: Any, path: str = "input") -> tuple[Any, str]:
        """``(payload, type name)`` for a node input: the payload is untagged at the top."""
        encoded = self.encode(value, path)
        if isinstance(encoded, dict) and _is_tag(encoded) and encoded[TYPE_KEY] != "dict":
            return encoded[VALUE_KEY], str(encoded[TYPE_KEY])
        if type(value) in JSON_TYPE_NAMES:
            return encoded, JSON_TYPE_NAMES[type(value)]
        return encoded, JSON_TYPE_NAMES[_json_base(encoded)]  # a subclass of a JSON scalar

    def _encode_dict(self, value: dict[Any, Any], path: str, depth: int) -> Any:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise UnserialisableValue(
                    f"{path} key {key!r}"[:200],
                    display_name(type(key)),
                    "is a dict key; JSON object keys must be str",
                )
            out[key] = self._encode(item, f"{path}[{key!r}]", depth + 1)
        if TYPE_KEY in out:  # escape a user dict that looks like a tag
            return {TYPE_KEY: "dict", VALUE_KEY: out}
        return out

    @staticmethod
    def _finite(value: float, path: str) -> float:
        if not math.isfinite(value):
            raise UnserialisableValue(path, "float", f"is {value!r}, which JSON cannot hold")
        return value

    def _importable(self, cls: type, path: str) -> str:
        name = qualified_name(cls)
        if cls in self._rebuildable:
            return name
        try:
            found = resolve_type(name)
        except LookupError:
            found = None
        if found is not cls:
            raise UnserialisableValue(
                path,
                display_name(cls),
                f"cannot be rebuilt: its type is not importable as {name!r} "
                "(define it at module level, or register a codec)",
            )
        self._rebuildable.add(cls)
        return name

    # -- decoding -------------------------------------------------------------------------

    def decode(self, data: Any) -> Any:
        """Rebuild what :meth:`encode` wrote; raise ``LookupError`` for an unknown type."""
        if isinstance(data, list):
            return [self.decode(item) for item in data]
        if isinstance(data, dict):
            if _is_tag(data):
                return self._rebuild(str(data[TYPE_KEY]), data[VALUE_KEY])
            return {key: self.decode(item) for key, item in data.items()}
        return data

    def decode_typed(self, payload: Any, type_name: str | None) -> Any:
        """Rebuild a node input from its untagged payload and ``input_type``."""
        if type_name is None or type_name in _JSON_BY_NAME:
            return self.decode(payload)
        return self._rebuild(type_name, payload)

    def _rebuild(self, name: str, payload: Any) -> Any:
        if name == "dict":
            return {key: self.decode(item) for key, item in dict(payload).items()}
        codec = self._by_name.get(name)
        if codec is not None:
            return codec.decode(self.decode(payload))
        cls = resolve_type(name)
        value = self.decode(payload)
        if issubclass(cls, enum.Enum):
            return cls(value)
        if dataclasses.is_dataclass(cls) or attrs.has(cls):
            return cls(**value)
        raise LookupError(f"{name!r} is neither registered nor a dataclass, attrs class or Enum")


def _check_depth(path: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        shown = path if len(path) <= 80 else path[:77] + "..."
        raise ValidationError(
            f"{shown} is nested more than {MAX_JSON_DEPTH} levels deep (or contains itself); "
            "a checkpoint holds JSON up to that depth: flatten it"
        )


def _is_tag(data: dict[Any, Any]) -> bool:
    return len(data) == 2 and TYPE_KEY in data and VALUE_KEY in data


def _json_base(encoded: Any) -> type:
    for cls in (bool, int, float, str, list, dict):
        if isinstance(encoded, cls):
            return cls
    return type(None)
