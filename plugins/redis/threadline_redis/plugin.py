"""Registers ``redis://`` and ``rediss://`` with threadline (entry point
``threadline_redis.plugin``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from threadline.errors import StoreNotFoundError
from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL

if TYPE_CHECKING:
    from threadline_redis.store import RedisStore

__all__ = ["open_redis_store", "threadline_register_stores"]


async def open_redis_store(url: StoreURL, *, create: bool = True) -> RedisStore:
    """Open a :class:`RedisStore` for ``url`` (options: see the README).

    With ``create=False`` a server (database, prefix) holding no threadline data raises
    :class:`~threadline.errors.StoreNotFoundError`, and nothing is written.
    """
    # Imported here: loading the plugin (every ``threadline`` command) must not import redis-py.
    from threadline_redis.config import parse_config
    from threadline_redis.store import RedisStore

    store = await RedisStore.open(parse_config(url))
    if not create:
        try:
            if not await store.exists():
                raise StoreNotFoundError(
                    f"no store at {url.redacted()} (prefix {store.config.prefix!r}): the "
                    "database holds no threadline data (nothing was created)"
                )
        except BaseException:
            await store.threadline_close()
            raise
    return store


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    """Serve ``redis://`` and ``rediss://`` (TLS)."""
    description = "Redis via redis-py asyncio: redis://[user:password@]host:port/db?prefix=&ttl=7d"
    register("redis", open_redis_store, description)
    register("rediss", open_redis_store, "Redis over TLS (see redis://)")
