"""The threadline export format: versioned JSON Lines (see ``docs/export-format.md``).

A file is one JSON object per line, UTF-8, ``\\n``-terminated::

    {"type": "header", "format": "threadline-export", "version": 1, "created_at": "...", ...}
    {"type": "provider", "data": {...ProviderRecord.to_dict()...}}
    {"type": "agent_config", "data": {...AgentConfig.to_dict()...}}
    {"type": "session", "data": {...Session.to_dict()...}}
    {"type": "message", "data": {...Message.to_dict()...}}
    {"type": "api_call", "data": {...}}
    {"type": "checkpoint", "data": {...}}
    {"type": "footer", "counts": {"provider": 1, "agent_config": 1, "session": 1, ...}}

This module holds the constants and turns lines into values and back; reading and
writing stores is :mod:`threadline.transfer`'s business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final, Literal, Union

import attrs

from threadline.errors import ValidationError
from threadline.models import AgentConfig, ApiCall, Checkpoint, Message, ProviderRecord, Session

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODELS",
    "RECORD_TYPES",
    "ExportFormatError",
    "Footer",
    "Header",
    "Line",
    "Model",
    "Record",
    "RecordType",
    "empty_counts",
    "encode_footer",
    "encode_header",
    "encode_record",
    "parse_line",
]

FORMAT_NAME: Final = "threadline-export"
"""The value of the header's ``format`` field."""

FORMAT_VERSION: Final = 1
"""The version this threadline writes, and the newest it reads."""

RecordType = Literal["provider", "agent_config", "session", "message", "api_call", "checkpoint"]
RECORD_TYPES: Final[tuple[RecordType, ...]] = (
    "provider",
    "agent_config",
    "session",
    "message",
    "api_call",
    "checkpoint",
)

Model = Union[ProviderRecord, AgentConfig, Session, Message, ApiCall, Checkpoint]
MODELS: Final[dict[str, Any]] = {
    "provider": ProviderRecord,
    "agent_config": AgentConfig,
    "session": Session,
    "message": Message,
    "api_call": ApiCall,
    "checkpoint": Checkpoint,
}


class ExportFormatError(ValidationError):
    """A line that is not valid threadline export format (or a version this code cannot read)."""


@attrs.frozen
class Header:
    """The first line: format name, version, when it was written and with which filters."""

    version: int
    created_at: str | None = None
    filters: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Record:
    """One stored row: ``type`` and the model it decodes to."""

    type: RecordType
    value: Model


@attrs.frozen
class Footer:
    """The last line: how many records of each type the file holds."""

    counts: dict[str, int]


Line = Union[Header, Record, Footer]


def empty_counts() -> dict[str, int]:
    """``{"provider": 0, "agent_config": 0, ...}``: a fresh counter per record type."""
    return dict.fromkeys(RECORD_TYPES, 0)


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def encode_header(filters: Mapping[str, Any] | None = None) -> str:
    """The header line (with its ``\\n``)."""
    return _dumps(
        {
            "type": "header",
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "filters": dict(filters or {}),
        }
    )


def encode_record(type_: RecordType, value: Model) -> str:
    """One record line (with its ``\\n``)."""
    return _dumps({"type": type_, "data": value.to_dict()})


def encode_footer(counts: Mapping[str, int]) -> str:
    """The footer line (with its ``\\n``)."""
    return _dumps({"type": "footer", "counts": {t: int(counts.get(t, 0)) for t in RECORD_TYPES}})


def parse_line(text: str | bytes, lineno: int = 0) -> Line:
    """Decode one line into a :class:`Header`, :class:`Record` or :class:`Footer`.

    Raises :class:`ExportFormatError` (naming ``lineno``) for anything else, including
    a header of another format or of a version newer than :data:`FORMAT_VERSION`.
    """
    where = f"line {lineno}: " if lineno else ""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ExportFormatError(f"{where}not JSON ({exc})") from None
    except RecursionError:
        raise ExportFormatError(f"{where}JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ExportFormatError(f"{where}expected a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind in MODELS:
        payload = data.get("data")
        if not isinstance(payload, dict):
            raise ExportFormatError(f"{where}{kind} record has no 'data' object")
        try:
            value = MODELS[kind].from_dict(payload)
        except (ValidationError, TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ExportFormatError(f"{where}invalid {kind} record: {exc}") from None
        except RecursionError:
            raise ExportFormatError(f"{where}invalid {kind} record: nested too deeply") from None
        return Record(type=kind, value=value)
    if kind == "header":
        if data.get("format") != FORMAT_NAME:
            raise ExportFormatError(
                f"{where}not a {FORMAT_NAME} file (format {data.get('format')!r})"
            )
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ExportFormatError(f"{where}invalid format version {version!r}")
        if version > FORMAT_VERSION:
            raise ExportFormatError(
                f"{where}{FORMAT_NAME} version {version} is not supported: this threadline "
                f"reads versions up to {FORMAT_VERSION} (upgrade threadline to import it)"
            )
        filters = data.get("filters")
        created = data.get("created_at")
        return Header(
            version=version,
            created_at=created if isinstance(created, str) else None,
            filters=dict(filters) if isinstance(filters, dict) else {},
        )
    if kind == "footer":
        counts = data.get("counts")
        if not isinstance(counts, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in counts.values()
        ):
            raise ExportFormatError(f"{where}footer has no valid 'counts' object")
        return Footer(counts={str(k): int(v) for k, v in counts.items()})
    raise ExportFormatError(f"{where}unknown record type {kind!r}")
