"""Translate asyncpg and socket failures into threadline's typed errors.

Callers of a store catch :class:`~threadline.errors.ThreadlineError` subclasses,
never driver exceptions: the server being down, restarting, refusing connections
or a statement timing out is :class:`~threadline.errors.StoreUnavailableError`;
wrong credentials or a missing database is
:class:`~threadline.errors.ConfigurationError`; a value the server refuses is
:class:`~threadline.errors.ValidationError`; anything else from the server is
:class:`~threadline.errors.StoreError`. Messages name the server by its redacted
URL and are scrubbed of the password, and the original exception is not chained
(its text could carry connection details), only summarised.
"""

from __future__ import annotations

import asyncio

import asyncpg
import asyncpg.exceptions._base as asyncpg_base

from threadline.errors import (
    ConfigurationError,
    StoreError,
    StoreUnavailableError,
    ThreadlineError,
    ValidationError,
)

__all__ = ["is_connection_lost", "translate"]

_UNAVAILABLE_SERVER: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.AdminShutdownError,  # 57P01: terminated by the administrator
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.QueryCanceledError,  # 57014: statement_timeout or cancelled on timeout
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.DeadlockDetectedError,  # 40P01: the transaction was rolled back; retry is safe
    asyncpg.SerializationError,  # 40001
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby or a read-only fail-over
)
_CONFIGURATION: tuple[type[BaseException], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,  # 28000, 28P01: bad user or password
    asyncpg.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.InsufficientPrivilegeError,  # 42501
    asyncpg_base.ClientConfigurationError,
)
_VALIDATION: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # class 22 from the server: out of range, bad encoding
    asyncpg_base.DataError,  # the driver could not encode a parameter
    OverflowError,
)


_LOST: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,  # the connection closed in the middle of an operation
    asyncpg.AdminShutdownError,  # the server terminated this backend (shutdown, restart)
    asyncpg.InternalClientError,  # the protocol was left mid-operation by a broken connection
    ConnectionResetError,
    BrokenPipeError,
)


def is_connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the connection died (a retry on a fresh one may work)."""
    if isinstance(exc, _LOST):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= 500 else text[:497] + "..."


def translate(
    exc: BaseException, *, where: str, what: str, secret: str | None, timeout: float | None = None
) -> ThreadlineError:
    """The threadline error that stands for ``exc``.

    :param exc: what the driver or the socket raised.
    :param where: the redacted server URL, for the message.
    :param what: the operation that failed (``"save_message"``), for the message.
    :param secret: the password, removed from the message should it appear there.
    :param timeout: the timeout that expired, when ``exc`` is a timeout.
    """
    if isinstance(exc, ThreadlineError):
        return exc
    detail = _scrub(f"{type(exc).__name__}: {exc}", secret)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        limit = f" after {timeout:g} s" if timeout is not None else ""
        return StoreUnavailableError(f"PostgreSQL at {where} timed out{limit} ({what})")
    if isinstance(exc, (*_UNAVAILABLE_SERVER, OSError)):
        return StoreUnavailableError(f"PostgreSQL at {where} is unavailable ({what}): {detail}")
    if isinstance(exc, _LOST) or (isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)):
        return StoreUnavailableError(f"PostgreSQL at {where} is unavailable ({what}): {detail}")
    if isinstance(exc, _CONFIGURATION):
        return ConfigurationError(f"PostgreSQL at {where} refused {what}: {detail}")
    if isinstance(exc, _VALIDATION):
        return ValidationError(f"PostgreSQL refused a value ({what}): {detail}")
    return StoreError(f"PostgreSQL at {where} failed ({what}): {detail}")
