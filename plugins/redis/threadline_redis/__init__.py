"""threadline-redis: the threadline store contract on Redis (redis-py's asyncio client).

``threadline.connect("redis://127.0.0.1:6379/0?prefix=myapp&ttl=7d")`` opens it; see the
README for the options, the key layout and what Redis's persistence settings give.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from threadline_redis.client import PersistenceWarning
    from threadline_redis.config import OPTIONS, RedisConfig, parse_config
    from threadline_redis.store import RedisStore

__all__ = ["OPTIONS", "PersistenceWarning", "RedisConfig", "RedisStore", "parse_config"]

_WHERE = {
    "PersistenceWarning": "client",
    "OPTIONS": "config",
    "RedisConfig": "config",
    "parse_config": "config",
    "RedisStore": "store",
}
"""The module each name lives in: loaded on first use, so that loading the plugin (the
``threadline`` entry point, on every ``threadline`` command) imports none of them."""

__getattr__ = lazy_attributes(__name__, _WHERE)
