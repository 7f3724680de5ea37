"""``sqlite://`` URLs and their options, checked before anything touches the disk.

``sqlite:///relative.db`` names a file relative to the working directory,
``sqlite:////absolute/path.db`` an absolute one and ``sqlite:///:memory:`` a private
in-memory database. Options go in the query string:

``synchronous``
    ``off``, ``normal`` (the default), ``full`` or ``extra``: SQLite's
    ``PRAGMA synchronous``. In WAL mode ``normal`` never corrupts the database and
    loses nothing when the *process* crashes, but the last transactions may be rolled
    back by a power failure or an OS crash; ``full`` and ``extra`` make each commit
    durable against those too, at the cost of an fsync per commit; ``off`` may corrupt
    the file on power loss.
``busy_timeout``
    Milliseconds to wait for another connection's write lock before giving up with
    :class:`~threadline.errors.StoreUnavailableError` (default 5000).

Any other option is a :class:`~threadline.errors.ConfigurationError` naming it, so a
typo never silently runs with the defaults.
"""

from __future__ import annotations

import os

import attrs

from threadline.errors import ConfigurationError
from threadline.urls import StoreURL

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "MEMORY", "SYNCHRONOUS_LEVELS", "SQLiteOptions"]

MEMORY = ":memory:"
SYNCHRONOUS_LEVELS = ("off", "normal", "full", "extra")
DEFAULT_BUSY_TIMEOUT_MS = 5000
_KNOWN = ("synchronous", "busy_timeout")


@attrs.frozen
class SQLiteOptions:
    """Where the database lives and how it is opened."""

    path: str
    """The database file (absolute), or ``:memory:``."""
    synchronous: str = "normal"
    """``PRAGMA synchronous`` level: one of :data:`SYNCHRONOUS_LEVELS`."""
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    """How long a writer waits for another connection's lock."""

    @property
    def in_memory(self) -> bool:
        """True for ``sqlite:///:memory:`` (one connection, nothing on disk)."""
        return self.path == MEMORY

    @classmethod
    def from_url(cls, url: str | StoreURL) -> SQLiteOptions:
        """Parse and check a ``sqlite://`` URL; raise :class:`ConfigurationError` when unusable."""
        parsed = StoreURL.parse(url)
        if parsed.scheme != "sqlite":
            raise ConfigurationError(f"not a sqlite:// URL: {parsed.redacted()}")
        if parsed.host or parsed.username or parsed.port:
            raise ConfigurationError(
                f"sqlite URLs take no host: use sqlite:///relative.db or "
                f"sqlite:////absolute/path.db, not {parsed.redacted()}"
            )
        unknown = sorted(set(parsed.query) - set(_KNOWN))
        if unknown:
            raise ConfigurationError(
                f"unknown sqlite URL option(s) {', '.join(unknown)}; known: {', '.join(_KNOWN)}"
            )
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if not path:
            raise ConfigurationError(
                "sqlite URL names no database file: use sqlite:///chat.db, "
                "sqlite:////absolute/chat.db or sqlite:///:memory:"
            )
        if path != MEMORY:
            path = os.path.abspath(path)
        synchronous = parsed.query.get("synchronous", "normal").strip().lower()
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, "
                f"got {parsed.query['synchronous']!r}"
            )
        raw_timeout = parsed.query.get("busy_timeout")
        busy_timeout = DEFAULT_BUSY_TIMEOUT_MS
        if raw_timeout is not None:
            try:
                busy_timeout = int(raw_timeout)
            except ValueError:
                busy_timeout = -1
            if busy_timeout < 0:
                raise ConfigurationError(
                    f"busy_timeout must be a number of milliseconds >= 0, got {raw_timeout!r}"
                )
        return cls(path=path, synchronous=synchronous, busy_timeout_ms=busy_timeout)
