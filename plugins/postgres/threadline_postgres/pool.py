"""The connection pools under the store: opening them, running a call with typed errors and
one retry on a dead connection, pool statistics, migrating and closing.

Every new connection is checked for a pooler in front of the server (see
:mod:`threadline_postgres.pooler`); reads may go to a read replica (see
:mod:`threadline_postgres.replicas`). A wait for a free connection that runs out raises
:class:`~threadline.errors.PoolTimeoutError`, not the error of a server that does not answer.

A connection found dead (the server restarted since it was pooled) is dropped by asyncpg,
and when repeating the call is harmless it runs once more on a fresh one, so the pool
recovers by itself when the server comes back. That one retry is a four-line loop in
:meth:`PooledStore._call`, not tenacity (which the openai plugin uses): a tenacity
controller per call measured 40-55 µs here (2 cores, PostgreSQL 15 on localhost), +20% on
a 0.2 ms window read and +50% on ``count_messages``, against nothing for the loop.

**Spare connections.** asyncpg's ``acquire`` and ``release`` cost ~22 µs of CPU together
(~31 µs with the acquire timeout, which runs the wait in a task of its own; the release is
a shielded task too): more than half of what the client spends on a one-statement append.
So a connection that comes back from a call that succeeded, outside a transaction, with
nobody waiting for one, is kept on the gauge's ``spare`` list (last in, first out) and the
next call takes it in well under a microsecond. Anything else goes back to asyncpg as
before: a call that failed or was cancelled (asyncpg cleans the connection up), a closed
connection, calls queued in asyncpg for a connection (they must not wait behind the spare
list), a closing store. A spare left unused for :data:`SPARE_IDLE` seconds goes back to
asyncpg, whose ``max_inactive_connection_lifetime`` then applies; ``close`` returns them all
first. A spare whose connection died meanwhile (asyncpg already took it back) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import attrs

from threadline.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PoolTimeoutError,
    StoreUnavailableError,
    ThreadlineError,
)
from threadline.hookspecs import hookimpl
from threadline_postgres import schema
from threadline_postgres.config import PostgresConfig
from threadline_postgres.errors import is_connection_lost, translate
from threadline_postgres.pooler import PoolerFound, PoolerModeError, behind_pooler, pooler_error
from threadline_postgres.replicas import ReplicaRouter
from threadline_postgres.sql import Statements

__all__ = ["SPARE_IDLE", "Duplicate", "PoolStats", "PooledStore", "open_pool"]

logger = logging.getLogger("threadline_postgres")

T = TypeVar("T")
S = TypeVar("S", bound="PooledStore")

SPARE_IDLE = 1.0
"""Seconds a spare connection (see above) stays on the store's list unused before it goes
back to asyncpg's pool."""


class Duplicate(ConflictError):
    """A unique constraint refused a write; ``constraint`` names it (a caller may read the
    stored row instead)."""

    def __init__(self, message: str, constraint: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint


async def _keep_session_state(conn: asyncpg.Connection) -> None:
    """Pool reset hook: the store never changes session state, so nothing to undo.

    asyncpg still rolls back any open transaction before calling this; skipping its
    default ``RESET ALL; UNLISTEN *; ...`` saves a round trip on every release.
    """


def _connection_setup(check_pooler: bool) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """The pool's ``init``: check for a pooler when the pool caches named statements, then
    decode ``uuid`` columns straight to ``str`` (the models' id type), in C."""

    async def init(conn: asyncpg.Connection) -> None:
        if check_pooler and await behind_pooler(conn):
            raise PoolerFound
        await conn.set_builtin_type_codec(
            "uuid", schema="pg_catalog", codec_name="text", format="text"
        )

    return init


async def _create_pool(config: PostgresConfig, kwargs: dict[str, Any], where: str) -> asyncpg.Pool:
    check = config.pooler == "auto" and kwargs.get("statement_cache_size", 0) > 0
    try:
        pool: asyncpg.Pool = await asyncio.wait_for(
            asyncpg.create_pool(
                min_size=max(config.min_size, 1 if check else 0),
                max_size=config.max_size,
                max_inactive_connection_lifetime=config.max_inactive_connection_lifetime,
                init=_connection_setup(check),
                reset=_keep_session_state,
                **kwargs,
            ),
            timeout=config.connect_timeout + 1,  # connections open concurrently
        )
    except PoolerFound:
        raise
    except Exception as exc:
        raise translate(
            exc, where=where, what="connect", secret=config.password,
            timeout=config.connect_timeout,
        ) from None  # fmt: skip
    return pool


async def open_pool(
    config: PostgresConfig, *, replica: bool = False
) -> tuple[asyncpg.Pool, PostgresConfig]:
    """Open the pool (``min_size`` connections, at least one when checking for a pooler).

    With ``pooler=auto`` every new connection is checked for a pooler; when one is found the
    pool is reopened with unnamed statements (``statement_cache_size=0``). Returns the pool
    and the configuration it runs with.

    :param replica: open the pool of the read replicas instead.
    :raises StoreUnavailableError: the server cannot be reached in time.
    :raises ConfigurationError: credentials refused or no such database.
    """
    where = config.replica_display if replica else config.display
    kwargs = config.replica_kwargs() if replica else config.connect_kwargs()
    try:
        pool = await _create_pool(config, kwargs, where)
    except PoolerFound:
        logger.info("%s: a connection pooler answers; using unnamed statements", where)
        config = attrs.evolve(config, statement_cache_size=0)
        kwargs["statement_cache_size"] = 0
        pool = await _create_pool(config, kwargs, where)
    logger.debug("opened %s (pool %d..%d)", where, config.min_size, config.max_size)
    return pool, config


@attrs.frozen
class PoolStats:
    """A pool's connections right now: ``in_use`` by calls, ``idle`` (open, free), ``waiting``
    calls queued for one, ``size`` open in all, ``max`` the most it opens."""

    in_use: int
    idle: int
    waiting: int
    size: int
    max: int


def _usable(conn: asyncpg.Connection) -> bool:
    """True when ``conn`` is open, still ours and outside a transaction."""
    try:
        return not conn.is_closed() and not conn.is_in_transaction()
    except asyncpg.InterfaceError:  # asyncpg took it back (the connection was lost)
        return False


class _Gauge:
    """A pool with the counts asyncpg does not keep (calls holding or waiting for one) and
    the spare connections (see the module's docstring)."""

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self.pool = pool
        self.where = where
        self.in_use = 0
        self.waiting = 0
        self.spare: list[tuple[asyncpg.Connection, float]] = []
        """Connections acquired from asyncpg and free now, with the loop time each came back
        (oldest first)."""
        self._trimmer: asyncio.TimerHandle | None = None
        self._returning: set[asyncio.Task[None]] = set()

    def stats(self) -> PoolStats:
        return PoolStats(
            in_use=self.in_use,
            idle=self.pool.get_idle_size() + len(self.spare),
            waiting=self.waiting,
            size=self.pool.get_size(),
            max=self.pool.get_max_size(),
        )

    def take_spare(self) -> asyncpg.Connection | None:
        """The most recently freed spare connection that is still usable, or ``None``."""
        spare = self.spare
        while spare:
            conn = spare.pop()[0]
            if _usable(conn):
                return conn
            self._give_back(conn)
        return None

    def keep(self, conn: asyncpg.Connection, closing: bool) -> bool:
        """Keep ``conn`` (from a call that succeeded) as a spare; False when it must go back
        to asyncpg instead (someone waits there, the store closes, it is not usable)."""
        if self.waiting or closing or not _usable(conn):
            return False
        loop = asyncio.get_running_loop()
        self.spare.append((conn, loop.time()))
        if self._trimmer is None:
            self._trimmer = loop.call_later(SPARE_IDLE, self._trim)
        return True

    def _trim(self) -> None:
        """Give back to asyncpg the spares unused for :data:`SPARE_IDLE` seconds."""
        self._trimmer = None
        loop = asyncio.get_running_loop()
        stale = loop.time() - SPARE_IDLE
        spare = self.spare
        old = 0
        while old < len(spare) and spare[old][1] <= stale:
            old += 1
        for conn, _ in spare[:old]:
            self._give_back(conn)
        del spare[:old]
        if spare:
            self._trimmer = loop.call_at(spare[0][1] + SPARE_IDLE, self._trim)

    def _give_back(self, conn: asyncpg.Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._release(conn))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _release(self, conn: asyncpg.Connection) -> None:
        try:
            await self.pool.release(conn)
        except Exception as exc:  # asyncpg terminates a connection it cannot reset
            logger.debug("%s: returning a spare connection failed (%s)", self.where, exc)

    async def return_spares(self) -> None:
        """Give every spare back to asyncpg (before the pool closes) and wait for it."""
        if self._trimmer is not None:
            self._trimmer.cancel()
            self._trimmer = None
        spare, self.spare = self.spare, []
        for conn, _ in spare:
            self._give_back(conn)
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)


class PooledStore:
    """An asyncpg pool with the store's SQL; the base of :class:`PostgresStore`."""

    def __init__(self, pool: asyncpg.Pool, config: PostgresConfig) -> None:
        self._pool = pool
        self.config = config
        self.sql = Statements(config)
        self._where = config.display
        self.closed = False
        self._primary = _Gauge(pool, config.display)
        self._replica: _Gauge | None = None
        self.router = ReplicaRouter(config.replica_window)
        """Which reads may go to the read replica (see :mod:`threadline_postgres.replicas`)."""

    @classmethod
    async def _open(cls: type[S], config: PostgresConfig) -> S:
        """Open the pool, and the read replicas' pool when ``?replica=`` names some."""
        pool, config = await open_pool(config)
        store = cls(pool, config)
        if config.replicas:
            try:
                replica, _ = await open_pool(config, replica=True)
            except BaseException:
                pool.terminate()
                raise
            store._replica = _Gauge(replica, config.replica_display)
            store.router.install(store)
        return store

    def pool_stats(self, replica: bool = False) -> PoolStats:
        """The primary pool's connections now (``replica=True``: the read replicas' pool).

        :raises ConfigurationError: ``replica=True`` and no ``?replica=`` was given.
        """
        if not replica:
            return self._primary.stats()
        if self._replica is None:
            raise ConfigurationError("this store has no read replica (no ?replica= in its URL)")
        return self._replica.stats()

    def __repr__(self) -> str:
        schema_part = f" schema={self.config.schema}" if self.config.schema else ""
        return f"<PostgresStore {self._where}{schema_part}>"

    def _error(self, exc: BaseException, what: str) -> ThreadlineError:
        if isinstance(exc, PoolerFound):
            return PoolerModeError(
                f"PostgreSQL at {self._where} ({what}): a new connection went through a "
                "connection pooler, but the pool was opened directly to the server with named "
                "prepared statements; reopen the store (pooler=auto detects it) or set "
                "?pooler=transaction"
            )
        broken = pooler_error(exc, where=self._where, what=what, pooler=self.config.pooler)
        if broken is not None:
            return broken
        constraint = getattr(exc, "constraint_name", None)
        if isinstance(exc, asyncpg.UniqueViolationError):
            return Duplicate(f"{what}: the write conflicts with stored data ({constraint})",
                             constraint)  # fmt: skip
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            return NotFoundError(f"{what}: a referenced row does not exist ({constraint})")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            c = self.config
            return StoreUnavailableError(
                f"PostgreSQL at {self._where} did not answer in time ({what}; "
                f"command_timeout={c.command_timeout:g} s, acquire_timeout={c.acquire_timeout:g} s)"
            )
        return translate(exc, where=self._where, what=what, secret=self.config.password)

    async def _call(
        self,
        what: str,
        fn: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        transaction: bool = False,
        retry: bool = True,
    ) -> T:
        """Run ``fn`` on a pooled connection (in a transaction if asked), typing errors.

        ``retry``: repeating ``fn`` is harmless, so a dead connection gets it run once more.
        A read the router sends to the replica runs there; when the replica cannot be
        reached it runs on the primary (logged as a warning).
        """
        gauge = self._primary
        if self._replica is not None and not transaction and self.router.on_replica():
            gauge = self._replica
        attempt = 0
        while True:
            try:
                conn = await self._acquire(gauge, what)
                done = False
                try:
                    if not transaction:
                        result = await fn(conn)
                    else:
                        async with conn.transaction():
                            result = await fn(conn)
                    done = True
                    return result
                finally:
                    gauge.in_use -= 1
                    if not (done and gauge.keep(conn, self.closed)):
                        await gauge.pool.release(conn)
            except Exception as exc:
                error = exc if isinstance(exc, ThreadlineError) else self._error(exc, what)
                if gauge is self._replica and isinstance(error, StoreUnavailableError):
                    logger.warning("%s: read replica unavailable (%s); reading from the primary",
                                   what, error)  # fmt: skip
                    gauge = self._primary
                    continue
                if isinstance(exc, ThreadlineError):
                    raise
                attempt += 1
                if retry and attempt == 1 and is_connection_lost(exc):
                    logger.info("%s: connection lost (%s); retrying once", what,
                                type(exc).__name__)  # fmt: skip
                    continue
                raise error from None

    async def _acquire(self, gauge: _Gauge, what: str) -> asyncpg.Connection:
        """A connection of ``gauge``'s pool; a wait that runs out is a :class:`PoolTimeoutError`
        when every connection was in use, else the server did not let a new one open."""
        conn: asyncpg.Connection | None = gauge.take_spare() if gauge.spare else None
        if conn is not None:
            gauge.in_use += 1
            return conn
        gauge.waiting += 1
        try:
            conn = await gauge.pool.acquire(timeout=self.config.acquire_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            size = gauge.pool.get_max_size()
            if gauge.in_use >= size:
                raise PoolTimeoutError(
                    f"no free connection to PostgreSQL at {gauge.where} within "
                    f"acquire_timeout={self.config.acquire_timeout:g} s ({what}): all "
                    f"{size} connections of the pool (max_size={size}) stayed in use, "
                    f"{gauge.waiting - 1} other calls waiting; raise max_size or hold "
                    "connections shorter",
                    pool_size=size,
                ) from None
            raise StoreUnavailableError(
                f"PostgreSQL at {gauge.where} did not let a connection open in time ({what}; "
                f"acquire_timeout={self.config.acquire_timeout:g} s, "
                f"connect_timeout={self.config.connect_timeout:g} s)"
            ) from None
        except Exception as exc:
            raise self._error(exc, what) from None
        finally:
            gauge.waiting -= 1
        gauge.in_use += 1
        return conn

    async def _fetchrow(self, what: str, sql: str, *args: Any) -> Any:
        """One row (or ``None``) of a statement that may run twice."""
        return await self._call(what, lambda conn: conn.fetchrow(sql, *args))

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[Any]:
        """The rows of a statement that may run twice."""
        rows: list[Any] = await self._call(what, lambda conn: conn.fetch(sql, *args))
        return rows

    # -- lifecycle ----------------------------------------------------------------------

    @hookimpl
    async def threadline_migrate(self) -> list[str]:
        """Apply pending migrations (a no-op, without locking, when the schema is current)."""
        ledger = self.config.table(schema.MIGRATIONS_TABLE)
        wanted = {m.name for m in schema.MIGRATIONS}

        async def run(conn: asyncpg.Connection) -> list[str]:
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", ledger):
                done = {r["name"] for r in await conn.fetch(f"SELECT name FROM {ledger}")}
                if wanted <= done:
                    return []
            applied = await schema.migrate(conn, self.config)
            if applied:
                logger.info("%s: applied migrations %s", self._where, ", ".join(applied))
            return applied

        return await self._call("migrate", run)

    @hookimpl
    async def threadline_close(self) -> None:
        """Close the pools, waiting up to ``command_timeout`` for borrowed connections."""
        if self.closed:
            return
        self.closed = True
        for gauge in (self._primary, self._replica):
            if gauge is None:
                continue
            try:
                await asyncio.wait_for(gauge.return_spares(), timeout=self.config.command_timeout)
                await asyncio.wait_for(gauge.pool.close(), timeout=self.config.command_timeout)
            except Exception:  # timed out or failed: drop the connections without waiting
                gauge.pool.terminate()
