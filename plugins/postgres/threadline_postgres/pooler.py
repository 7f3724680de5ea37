"""Connection poolers (PgBouncer, Supavisor, pgcat, RDS Proxy ...) between store and server.

In transaction mode a pooler hands each transaction to whichever server connection is free,
so a named prepared statement made in one transaction is missing (or, worse, names another
query) in the next. asyncpg caches named statements by default, so behind such a pooler the
store must use unnamed ones (``statement_cache_size=0``), which costs a second round trip per
statement. The store therefore finds out at connect time, for every new connection:

* a pooler answers the startup itself, with a cancel key of its own, so the process id it
  announces is not the one of the server process that runs the statement;
* :func:`behind_pooler` compares the two in one simple-protocol statement (no prepared
  statement, so it is safe whatever the pooler does).

``pooler=auto`` (the default) runs that check and switches the pool to unnamed statements when
it finds a pooler (it cannot tell transaction from session mode: ``pooler=session`` keeps the
cache behind a session-mode pooler). ``pooler=transaction`` (``pgbouncer=true``) and
``pooler=none`` skip the check. If a pooler breaks a statement anyway, :func:`pooler_error`
says so instead of a bare driver message.
"""

from __future__ import annotations

import asyncpg

from threadline.errors import ConfigurationError

__all__ = ["PoolerFound", "PoolerModeError", "behind_pooler", "pooler_error"]


class PoolerFound(Exception):
    """Raised inside the pool's connection setup: a pooler was found and the pool caches named
    statements; the pool is reopened without them."""


class PoolerModeError(ConfigurationError):
    """A connection pooler broke a prepared statement: the URL's ``pooler`` setting does not
    match the pooler in front of the server."""


async def behind_pooler(conn: asyncpg.Connection) -> bool:
    """True when the server process running statements is not the one the startup named.

    One round trip in the simple query protocol: it divides by zero exactly when the
    announced process id differs from ``pg_backend_pid()``.
    """
    announced = int(conn.get_server_pid())
    try:
        await conn.execute(f"SELECT 1 / (pg_backend_pid() = {announced})::int")
    except asyncpg.DivisionByZeroError:
        return True
    return False


_BROKEN_STATEMENT = ("prepared statement", "bind message supplies")


def pooler_error(
    exc: BaseException, *, where: str, what: str, pooler: str
) -> PoolerModeError | None:
    """The error to raise when ``exc`` is a prepared statement lost or mixed up by a pooler.

    :param pooler: the URL's ``pooler`` setting, named in the advice.
    """
    broken = isinstance(
        exc,
        (
            asyncpg.InvalidSQLStatementNameError,  # 26000: prepared statement ... does not exist
            asyncpg.DuplicatePreparedStatementError,  # 42P05: ... already exists
            asyncpg.ProtocolViolationError,  # 08P01: bind message supplies N parameters ...
        ),
    ) and any(text in str(exc) for text in _BROKEN_STATEMENT)
    if not broken:
        return None
    return PoolerModeError(
        f"PostgreSQL at {where} ({what}): a connection pooler in transaction mode (PgBouncer, "
        f"Supavisor, ...) lost or mixed up a prepared statement ({type(exc).__name__}: "
        f"{str(exc)[:120]}). The URL says pooler={pooler}; behind a transaction-mode pooler use "
        "?pooler=transaction (or ?pgbouncer=true), or let pooler=auto detect it"
    )
