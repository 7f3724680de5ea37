"""threadline-redis: the threadline store contract on Redis (redis-py's asyncio client).

``threadline.connect("redis://127.0.0.1:6379/0?prefix=myapp&ttl=7d")`` opens it; see the
README for the options, the key layout and what Redis's persistence settings give.
"""

from threadline_redis.client import PersistenceWarning
from threadline_redis.config import OPTIONS, RedisConfig, parse_config
from threadline_redis.store import RedisStore

__all__ = ["OPTIONS", "PersistenceWarning", "RedisConfig", "RedisStore", "parse_config"]
