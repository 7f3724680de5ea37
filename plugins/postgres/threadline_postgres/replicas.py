"""Reads on a read replica, with a session's own reads kept read-your-writes.

With ``?replica=host:port[,host:port]`` the store opens a second pool to the replicas and
sends reads there (messages, windows, counts, session lists, API calls, configs), except:

* for ``replica_window`` seconds (default 10) after this process wrote to a session, that
  session's reads go to the primary; after a write without a session (a config, an erase, a
  retention sweep) the same holds for the whole tenant; tenant-wide reads (listing sessions,
  configs) go to the primary for that long after any write in the tenant;
* every read made inside a write the store implements goes to the primary, and so does
  every transaction; the session row and checkpoint records (:data:`PRIMARY_READS`), which
  the core's derived writes read before writing and a resumed run restores from, are always
  read on the primary;
* a replica that cannot be reached: the read runs on the primary (logged as a warning).

Why a time window and not the replica's replay LSN: waiting for ``pg_last_wal_replay_lsn()``
to reach the write's LSN needs the commit LSN (one more round trip after every write, since
``pg_current_wal_lsn()`` inside the statement precedes the commit record) and then makes the
very next read (an agent turn's window) wait for replication. The window costs nothing on the
hot path (a dict lookup, about 1 µs) and keeps an active conversation on the primary, where
its next read wants to be anyway; reads of sessions nobody here wrote lately (history, UIs,
listing, analytics) are the ones a replica takes. The promise holds while replay lag stays
under the window; it is per process (another process's writes are seen when replayed).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

from threadline.models import Session

__all__ = ["PRIMARY_READS", "ReplicaRouter", "is_read_hook"]

_ON_REPLICA: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "threadline_postgres_on_replica", default=False
)
_IN_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "threadline_postgres_in_write", default=False
)
_READ_PREFIXES = ("get_", "list_", "read_", "load_", "count_")
_LIFECYCLE = ("threadline_migrate", "threadline_close")
PRIMARY_READS = (
    "threadline_get_session",
    "threadline_read_checkpoint_records",
    "threadline_list_checkpoint_records",
)
"""Reads that writes are planned on (the core's derived ``update_session`` reads the session
row, its checkpoint log the parent records; a resumed run its latest checkpoint): always on
the primary, since a derived write's own reads cannot be told apart from other reads."""
_PRUNE_EVERY = 1024
_ANY = "\x00"  # tenant key of a write whose tenant is unknown: everything goes to the primary


def is_read_hook(name: str) -> bool:
    """Whether the hook ``name`` only reads (its results may come from a replica)."""
    return name.removeprefix("threadline_").startswith(_READ_PREFIXES)


def _param(signature: inspect.Signature, name: str) -> int | None:
    names = list(signature.parameters)
    return names.index(name) if name in names else None


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, index: int | None) -> Any:
    if name in kwargs:
        return kwargs[name]
    if index is not None and index < len(args):
        return args[index]
    return None


def _written(values: Iterable[Any]) -> set[tuple[str, str | None]]:
    """``(tenant, session or None)`` of every record among a write's arguments."""
    keys: set[tuple[str, str | None]] = set()
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            holder = getattr(item, "agent", item)  # an AgentConfig names its tenant on .agent
            tenant = getattr(holder, "tenant_id", None)
            if not isinstance(tenant, str):
                continue
            session = item.id if isinstance(item, Session) else getattr(item, "session_id", None)
            keys.add((tenant, session if isinstance(session, str) else None))
    return keys


class ReplicaRouter:
    """Tells the pool whether the current read may run on the replica (see module doc)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._sessions: dict[tuple[str, str], float] = {}  # last write to a session
        self._tenants: dict[str, float] = {}  # last write to a tenant without a session
        self._tenant_any: dict[str, float] = {}  # last write of any kind in a tenant
        self._marks = 0

    def on_replica(self) -> bool:
        """Whether the call being made belongs to a read the replica may answer."""
        return _ON_REPLICA.get()

    def may_be_stale(self, tenant: Any, session: Any) -> bool:
        """Whether a read of ``tenant``'s ``session`` (``None``: tenant-wide) may be stale."""
        now = time.monotonic()
        if now - self._tenants.get(_ANY, -1e18) < self.window:
            return False
        if not isinstance(tenant, str):
            return False
        if now - self._tenants.get(tenant, -1e18) < self.window:
            return False
        if isinstance(session, str):
            return now - self._sessions.get((tenant, session), -1e18) >= self.window
        return now - self._tenant_any.get(tenant, -1e18) >= self.window

    def mark(self, keys: set[tuple[str, str | None]]) -> None:
        """Record writes to ``keys`` now (no key: a write to an unknown tenant)."""
        now = time.monotonic()
        if not keys:
            self._tenants[_ANY] = now
        for tenant, session in keys:
            self._tenant_any[tenant] = now
            if session is None:
                self._tenants[tenant] = now
            else:
                self._sessions[(tenant, session)] = now
        self._marks += 1
        if self._marks % _PRUNE_EVERY == 0:
            horizon = now - self.window
            self._sessions = {k: t for k, t in self._sessions.items() if t >= horizon}
            self._tenants = {k: t for k, t in self._tenants.items() if t >= horizon}
            self._tenant_any = {k: t for k, t in self._tenant_any.items() if t >= horizon}

    def install(self, store: object) -> None:
        """Wrap ``store``'s hook implementations (on the instance) to route their reads."""
        for name in dir(type(store)):
            method = getattr(store, name)
            if not name.startswith("threadline_") or name in (*_LIFECYCLE, *PRIMARY_READS):
                continue
            if getattr(method, "threadline_impl", None) is None:
                continue
            if not inspect.iscoroutinefunction(method):  # sync hooks, async generators: as is
                continue
            wrap = self._read if is_read_hook(name) else self._write
            setattr(store, name, wrap(method))

    def _read(self, method: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(method)
        tenant_at, session_at = _param(signature, "tenant_id"), _param(signature, "session_id")
        has_session = session_at is not None

        @functools.wraps(method)
        async def read(*args: Any, **kwargs: Any) -> Any:
            if _IN_WRITE.get():  # a write's own reads stay on the primary
                return await method(*args, **kwargs)
            tenant = _arg(args, kwargs, "tenant_id", tenant_at)
            session = _arg(args, kwargs, "session_id", session_at) if has_session else None
            token = _ON_REPLICA.set(self.may_be_stale(tenant, session))
            try:
                return await method(*args, **kwargs)
            finally:
                _ON_REPLICA.reset(token)

        return read

    def _write(self, method: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(method)
        names = list(signature.parameters)

        @functools.wraps(method)
        async def write(*args: Any, **kwargs: Any) -> Any:
            token, inside = _ON_REPLICA.set(False), _IN_WRITE.set(True)
            try:
                return await method(*args, **kwargs)
            finally:
                _IN_WRITE.reset(inside)
                _ON_REPLICA.reset(token)
                given = dict(zip(names, args), **kwargs)
                keys = _written(given.values())
                tenant, session = given.get("tenant_id"), given.get("session_id")
                if isinstance(tenant, str) and isinstance(session, str):
                    keys.add((tenant, session))
                elif isinstance(tenant, str) and all(t != tenant for t, _ in keys):
                    keys.add((tenant, None))
                self.mark(keys)

        return write
