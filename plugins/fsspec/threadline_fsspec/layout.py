"""Where every record lives under the store's root, and how names are made safe.

All paths are relative to the root and joined with ``/``; the backends turn them
into real locations. Every path component that comes from the caller is either a
canonical UUID (checked here again, so that no id can climb out of the root even
when a hook is called directly, without the :class:`threadline.Store` facade) or
an agent ``code`` encoded by :func:`encode_name`, whose output never contains a
``/``, never starts with ``.`` and is the same on case-insensitive disks::

    <root>/threadline-fsspec.json                 format version
    <root>/ids/<kind>/<xx>/<id>.json              global id claims and indexes
    <root>/tenants/<tenant>/sessions/<session>/   one session (see session_dir)
    <root>/tenants/<tenant>/agents/<code>.json    agent rows, by encoded code
    <root>/tenants/<tenant>/providers/<id>.json   provider rows
"""

from __future__ import annotations

import hashlib
import re

from threadline.errors import ValidationError

__all__ = [
    "FORMAT_FILE",
    "FORMAT_VERSION",
    "SEQ_WIDTH",
    "agent_file",
    "agents_dir",
    "checkpoint_file",
    "checkpoints_dir",
    "decode_seq_name",
    "encode_name",
    "id_file",
    "provider_file",
    "safe_id",
    "segment_file",
    "session_dir",
    "sessions_dir",
    "tenant_dir",
]

FORMAT_FILE = "threadline-fsspec.json"
"""The format version file at the root: ``{"format": 1}``."""

FORMAT_VERSION = 1
"""The layout version this code reads and writes."""

SEQ_WIDTH = 12
"""Digits of the zero-padded numbers in record names, so that listings sort in order."""

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_NAME = 180
_NUMBERED = re.compile(rf"([0-9]{{{SEQ_WIDTH}}})\.json")


def safe_id(value: object, field: str) -> str:
    """Return ``value`` if it is a canonical lowercase UUID string, else raise ``ValidationError``.

    The core already canonicalises ids; this second check keeps paths inside the root
    whatever a caller passes to a hook directly.
    """
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ValidationError(f"{field} must be a canonical UUID string, got {shown}")


def encode_name(text: str, field: str = "agent code", *, allow_empty: bool = False) -> str:
    """Encode free text (an agent ``code``) as one safe, reversible-looking file name stem.

    Lowercase ASCII letters, digits, ``_`` and ``-`` stay as they are; every other
    byte of the UTF-8 text becomes ``%XX`` (uppercase hex), so ``Bot`` and ``bot``
    get different names even on case-insensitive disks, and ``/``, ``.``, ``\\`` and
    NUL can never reach the file system. Names longer than 180 characters become
    ``~`` and the SHA-256 of the text (a character ``%``-encoding never produces).
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field} is not valid Unicode text") from None
    out = "".join(chr(b) if chr(b) in _SAFE_CHARS else f"%{b:02X}" for b in raw)
    if not out and not allow_empty:
        raise ValidationError(f"{field} must not be empty")
    if len(out) > _MAX_NAME:
        out = "~" + hashlib.sha256(raw).hexdigest()
    return out


def numbered(number: int) -> str:
    """The file name of record ``number``: zero-padded so that names sort like numbers."""
    return f"{number:0{SEQ_WIDTH}d}.json"


def decode_seq_name(name: str) -> int | None:
    """The number in a name made by :func:`numbered`, or ``None`` for any other name."""
    match = _NUMBERED.fullmatch(name)
    return int(match.group(1)) if match else None


def tenant_dir(tenant_id: str) -> str:
    """``tenants/<tenant>``: everything a tenant owns."""
    return f"tenants/{safe_id(tenant_id, 'tenant_id')}"


def sessions_dir(tenant_id: str) -> str:
    """``tenants/<tenant>/sessions``: one folder per session."""
    return f"{tenant_dir(tenant_id)}/sessions"


def session_dir(tenant_id: str, session_id: str) -> str:
    """``tenants/<tenant>/sessions/<session>``, which holds::

    session.json                  the Session row (title, metadata, created_at, updated_at)
    head.json                     hint: the last message segment, and the last write of
                                  any kind to the session (its updated_at is the later of
                                  the two files')
    lock                          lock file of writers (local disks, ``flock``)
    messages/<first seq>.json     immutable-named segments of one or more messages
    streaming/<seq>.json          markers of messages saved or updated as ``streaming``
    api-calls/<n>.json            one ApiCall each, numbered in insertion order
    checkpoints/<version>.json    one Checkpoint each (history as a delta on its parent)
    """
    return f"{sessions_dir(tenant_id)}/{safe_id(session_id, 'session_id')}"


def segment_file(session: str, start: int) -> str:
    """The message segment whose first message has seq ``start``."""
    return f"{session}/messages/{numbered(start)}"


def checkpoints_dir(session: str) -> str:
    """The folder of a session's checkpoints."""
    return f"{session}/checkpoints"


def checkpoint_file(session: str, version: int) -> str:
    """The checkpoint with ``version`` in a session."""
    return f"{checkpoints_dir(session)}/{numbered(version)}"


def agents_dir(tenant_id: str) -> str:
    """A tenant's agent rows, one file per encoded code."""
    return f"{tenant_dir(tenant_id)}/agents"


def agent_file(tenant_id: str, code: str) -> str:
    """The agent row with ``code`` (see :func:`encode_name`)."""
    return f"{agents_dir(tenant_id)}/{encode_name(code)}.json"


def provider_file(tenant_id: str, provider_id: str) -> str:
    """A provider row."""
    return f"{tenant_dir(tenant_id)}/providers/{safe_id(provider_id, 'provider id')}.json"


def id_file(kind: str, record_id: str) -> str:
    """``ids/<kind>/<last two hex digits>/<id>.json``: the global claim or index of one id.

    Ids are unique across tenants (as primary keys are in the SQL stores), so a claim
    made by one tenant makes the same id a conflict for every other. The fan-out by the
    random last two digits keeps folders small on disks that dislike huge directories.
    """
    checked = safe_id(record_id, f"{kind} id")
    return f"ids/{kind}/{checked[-2:]}/{checked}.json"
