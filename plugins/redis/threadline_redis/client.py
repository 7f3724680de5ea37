"""The connection to Redis: a redis-py asyncio pool, the scripts, and typed failures.

Every command goes through :meth:`Client.script` or :meth:`Client.command`, which turn
redis-py's exceptions into threadline's: a server that is down, restarting, loading its
data or refusing writes (``MISCONF``, ``READONLY``) raises
:class:`~threadline.errors.StoreUnavailableError` once redis-py's retries (``?retries=``,
with backoff) are spent; refused credentials raise
:class:`~threadline.errors.ConfigurationError`. Retrying is safe: every write is
idempotent by its id (an append retried after a lost reply finds its message stored).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from threadline.errors import (
    ConfigurationError,
    StoreError,
    StoreUnavailableError,
    ThreadlineError,
)
from threadline_redis.config import RedisConfig
from threadline_redis.scripts import SCRIPTS

__all__ = ["Client", "PersistenceWarning", "translate"]

_UNAVAILABLE = ("MISCONF", "READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN", "BUSY")
_REFUSED = ("NOAUTH", "WRONGPASS", "NOPERM")


class PersistenceWarning(UserWarning):
    """The Redis server keeps nothing (or only periodic snapshots) on disk."""


def translate(exc: BaseException, where: str, what: str) -> ThreadlineError:
    """The threadline error for a redis-py (or socket) failure of ``what`` at ``where``."""
    text = str(exc)
    if isinstance(exc, rx.AuthenticationError) or text.startswith(_REFUSED):
        return ConfigurationError(f"Redis at {where} refused the credentials ({what}): {text}")
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError, OSError, asyncio.TimeoutError)):
        return StoreUnavailableError(
            f"Redis at {where} is unavailable ({what}): {text or type(exc).__name__}"
        )
    if isinstance(exc, rx.ResponseError) and text.startswith(_UNAVAILABLE):
        return StoreUnavailableError(f"Redis at {where} refuses the write ({what}): {text}")
    return StoreError(f"Redis at {where} failed ({what}): {text}")


class Client:
    """The pool, the registered scripts, and the error mapping."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        kwargs: dict[str, Any] = {
            "host": config.host,
            "port": config.port,
            "db": config.db,
            "username": config.username,
            "password": config.password,
            "socket_timeout": config.timeout,
            "socket_connect_timeout": config.timeout,
            "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), config.retries),
            "decode_responses": True,
            "max_connections": config.max_connections,
            "timeout": config.timeout,
            "client_name": "threadline",
        }
        if config.ssl:
            kwargs["connection_class"] = aioredis.SSLConnection
        self.pool = aioredis.BlockingConnectionPool(**kwargs)
        self.redis = aioredis.Redis(connection_pool=self.pool)
        self._scripts = {name: self.redis.register_script(src) for name, src in SCRIPTS.items()}
        self.prefix = config.prefix

    def key(self, *parts: str) -> str:
        """``prefix:part:part``."""
        return ":".join((self.prefix, *parts))

    async def command(self, what: str, awaitable: Awaitable[Any]) -> Any:
        """Await one redis-py call, its failures turned into threadline errors (redis-py's
        replies are typed loosely: the caller knows what its command returns)."""
        try:
            return await awaitable
        except ThreadlineError:
            raise
        except (rx.RedisError, OSError, asyncio.TimeoutError) as exc:
            raise translate(exc, self.config.display, what) from None

    async def script(self, name: str, *args: str | int) -> Any:
        """Run script ``name`` with the prefix, now (ms and time key) and ``args``."""
        now = time.time_ns() // 1000
        argv: list[str | int] = [self.prefix, now // 1000, f"{now + _EPOCH_US:018d}", *args]
        return await self.command(name, self._scripts[name](args=argv))

    async def close(self) -> None:
        """Close the pool's connections."""
        try:
            await self.redis.aclose()
            await self.pool.disconnect()
        except (rx.RedisError, OSError) as exc:
            raise translate(exc, self.config.display, "close") from None

    async def persistence(self) -> str:
        """What the server keeps on disk, in words; warns when it keeps little or nothing."""
        try:
            config = await self.redis.config_get("appendonly")
            config.update(await self.redis.config_get("appendfsync"))
            config.update(await self.redis.config_get("save"))
            aof, fsync, save = (
                config.get("appendonly"),
                config.get("appendfsync"),
                config.get("save"),
            )
        except rx.ResponseError:  # CONFIG disabled (managed services): INFO tells less
            info = await self.command("persistence", self.redis.info("persistence"))
            aof, fsync, save = ("yes" if info.get("aof_enabled") else "no"), "?", "?"
        except (rx.RedisError, OSError) as exc:
            raise translate(exc, self.config.display, "persistence") from None
        where = self.config.display
        if aof == "yes":
            return f"appendonly yes, appendfsync {fsync}"
        if not save:
            warnings.warn(
                f'Redis at {where} keeps nothing on disk (appendonly no, save ""): every '
                "session is lost when the server restarts; set appendonly yes (see the "
                "threadline-redis README, Durability)",
                PersistenceWarning,
                stacklevel=2,
            )
            return 'nothing on disk (appendonly no, save "")'
        warnings.warn(
            f"Redis at {where} keeps only snapshots (save {save!r}, appendonly no): writes "
            "since the last snapshot are lost when the server stops; set appendonly yes",
            PersistenceWarning,
            stacklevel=2,
        )
        return f"snapshots only (save {save}), appendonly no"


_EPOCH_US = 62_135_596_800 * 1_000_000
"""Microseconds from 0001-01-01 to 1970-01-01 (UTC): a time key is ``now_us + _EPOCH_US``."""
