"""Query objects of the store contract: a message seq range and a page of sessions.

A store's ``read_messages`` takes a :class:`MessageRange` and its ``list_sessions`` a
:class:`SessionQuery`, so every store shares one validated description of the read (and
the in-memory stores share :meth:`MessageRange.bounds` and :meth:`SessionQuery.page`).
Sessions page by keyset: a :class:`SessionCursor` names the last session of a page in the
total order (``updated_at`` descending, then ``id`` descending), and the next page holds
the sessions strictly after it, so pages neither repeat nor skip under concurrent inserts.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from threadline.errors import ValidationError
from threadline.ids import check_id, optional_id
from threadline.models import MAX_INT, MESSAGE_ROLES, Session, check_utc

__all__ = ["MessageRange", "SessionCursor", "SessionQuery", "fork_parent"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _count(field: str, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"{field} must be an int >= 0, got {value!r}")
        if value > MAX_INT:  # the SQL stores bind a signed 64-bit integer
            raise ValidationError(f"{field} must be at most {MAX_INT} (2**63-1), got {value!r}")

    return check


def _flag(_inst: Any, attr: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValidationError(f"{attr.name} must be a bool, got {value!r}")


def _role(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None and value not in MESSAGE_ROLES:
        raise ValidationError(f"role must be one of {sorted(MESSAGE_ROLES)}, got {value!r}")


def _when(value: Any) -> datetime:
    return check_utc(value, "updated_at")


def _cursor_id(value: Any) -> str:
    return check_id(value, "cursor id")


def _user_id(value: Any) -> str | None:
    return optional_id(value, "user_id")


def _agent_id(value: Any) -> str | None:
    return optional_id(value, "agent_id")


def _forked_from(value: Any) -> str | None:
    return optional_id(value, "forked_from")


def fork_parent(metadata: Any) -> Any:
    """The session a session's ``metadata`` says it was forked from
    (``metadata["forked_from"]["session_id"]``; ``None`` when it records none). Stores
    index exactly this value: SQLite ``json_extract(metadata, '$.forked_from.session_id')``,
    PostgreSQL ``metadata->'forked_from'->>'session_id'``."""
    origin = metadata.get("forked_from") if isinstance(metadata, Mapping) else None
    return origin.get("session_id") if isinstance(origin, Mapping) else None


@attrs.frozen
class MessageRange:
    """A session's messages with ``after_seq < seq < before_seq``, at most ``limit``,
    highest seqs first when ``newest_first``, of one ``role`` when given."""

    after_seq: int = attrs.field(default=0, validator=_count("after_seq"))
    before_seq: int | None = attrs.field(default=None, validator=_count("before_seq", True))
    limit: int | None = attrs.field(default=None, validator=_count("limit", True))
    newest_first: bool = attrs.field(default=False, validator=_flag)
    role: str | None = attrs.field(default=None, validator=_role)

    def bounds(
        self, rows: Sequence[Any], key: Callable[[Any], int] | None = None
    ) -> tuple[int, int]:
        """The slice ``[lo, hi)`` of ``rows`` in ascending seq order (``key``: a row's seq;
        none: the rows are seqs) this range selects, limit applied, by bisection."""
        lo = bisect.bisect_right(rows, self.after_seq, key=key)
        hi = len(rows)
        if self.before_seq is not None:
            hi = bisect.bisect_left(rows, self.before_seq, key=key)
        hi = max(lo, hi)
        if self.limit is not None:
            if self.newest_first:
                lo = max(lo, hi - self.limit)
            else:
                hi = min(hi, lo + self.limit)
        return lo, hi


@attrs.frozen
class SessionCursor:
    """Where a page of sessions ended: its last session's ``updated_at`` and ``id``.

    ``str(cursor)`` is a compact URL-safe token (for the CLI and URLs);
    :meth:`parse` reads it back.
    """

    updated_at: datetime = attrs.field(converter=_when)
    id: str = attrs.field(converter=_cursor_id)

    @classmethod
    def of(cls, session: Session) -> SessionCursor:
        """The cursor just past ``session`` (the next page starts after it)."""
        return cls(session.updated_at, session.id)

    def key(self) -> tuple[datetime, str]:
        """The sort key the cursor compares with (a session's ``(updated_at, id)``)."""
        return self.updated_at, self.id

    def __str__(self) -> str:
        us = (self.updated_at - _EPOCH) // timedelta(microseconds=1)
        raw = us.to_bytes(8, "big", signed=True) + bytes.fromhex(self.id.replace("-", ""))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> SessionCursor:
        """The cursor ``str(cursor)`` wrote; :class:`ValidationError` for anything else."""
        if not isinstance(text, str) or len(text) != 32:
            raise ValidationError(f"not a session cursor: {str(text)[:40]!r}")
        try:
            raw = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"not a session cursor: {text!r}") from None
        us = int.from_bytes(raw[:8], "big", signed=True)
        try:
            when = _EPOCH + timedelta(microseconds=us)
        except OverflowError:
            raise ValidationError(f"not a session cursor: {text!r}") from None
        return cls(when, raw[8:].hex())


@attrs.frozen
class SessionQuery:
    """A page of a tenant's sessions, ``updated_at`` descending then ``id`` descending.

    ``after`` (keyset paging) keeps only sessions strictly after the cursor in that
    order; ``offset`` then skips that many more (OFFSET paging, slower with depth).
    ``forked_from`` keeps only the forks of that session (:func:`fork_parent` of their
    metadata equals it), answered from an index.
    """

    user_id: str | None = attrs.field(default=None, converter=_user_id)
    agent_id: str | None = attrs.field(default=None, converter=_agent_id)
    limit: int = attrs.field(default=50, validator=_count("limit"))
    offset: int = attrs.field(default=0, validator=_count("offset"))
    after: SessionCursor | None = attrs.field(default=None)
    forked_from: str | None = attrs.field(default=None, kw_only=True, converter=_forked_from)

    @after.validator
    def _cursor(self, _attr: Any, value: Any) -> None:
        if value is not None and not isinstance(value, SessionCursor):
            raise ValidationError(f"after must be a SessionCursor, got {type(value).__name__}")

    def matches(self, session: Session) -> bool:
        """Whether ``session`` passes the filters and lies after the cursor."""
        return (
            self.user_id in (None, session.user_id)
            and self.agent_id in (None, session.agent_id)
            and self.forked_from in (None, fork_parent(session.metadata))
            and (self.after is None or (session.updated_at, session.id) < self.after.key())
        )

    def page(self, sessions: Iterable[Session]) -> list[Session]:
        """This page of a tenant's ``sessions`` (for stores that filter in memory)."""
        found = [s for s in sessions if self.matches(s)]
        found.sort(key=lambda s: (s.updated_at, s.id), reverse=True)
        return found[self.offset : self.offset + self.limit]
