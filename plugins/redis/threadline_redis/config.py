"""Turn a ``redis://`` / ``rediss://`` store URL into the settings of a redis-py pool.

``redis://[user[:password]@]host[:port][/db]?prefix=threadline&ttl=7d``. Unknown options
are refused with :class:`~threadline.errors.ConfigurationError` naming the option, so a
typo cannot silently fall back to a default. The password never appears in ``repr``,
:attr:`RedisConfig.display` or an error message.
"""

from __future__ import annotations

import re

import attrs

from threadline.errors import ConfigurationError
from threadline.urls import StoreURL

__all__ = ["OPTIONS", "RedisConfig", "parse_config", "parse_duration"]

OPTIONS: dict[str, str] = {
    "prefix": "key prefix of every key the store writes (default threadline)",
    "ttl": "a session expires this long after its last activity: 90s, 30m, 12h, 7d, 2w",
    "timeout": "seconds a command or a connect may take, then StoreUnavailableError (default 5)",
    "retries": "times a command is repeated after a lost connection, with backoff (default 3)",
    "max_connections": "most pooled connections (default 32)",
}
"""Every query option a ``redis://`` URL may carry, with what it does."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*")
_PREFIX = re.compile(r"[^\s{}]{1,100}")


def parse_duration(text: str, option: str = "ttl") -> int:
    """Seconds in ``text`` (``90``, ``90s``, ``30m``, ``12h``, ``7d``, ``2w``); 0 means never."""
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        raise ConfigurationError(
            f"?{option}={text!r} is not a duration: use e.g. 90s, 30m, 12h, 7d or 2w"
        )
    seconds = int(match[1]) * _UNITS[match[2] or "s"]
    if seconds > 10 * 365 * 86400:
        raise ConfigurationError(f"?{option}={text!r} is longer than ten years")
    return seconds


@attrs.frozen(repr=False)
class RedisConfig:
    """Everything needed to open the pool; ``password`` never appears in ``repr``."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, eq=False)
    ssl: bool = False
    prefix: str = "threadline"
    ttl: int = 0
    """Seconds a session lives without activity (0: forever)."""
    timeout: float = 5.0
    retries: int = 3
    max_connections: int = 32

    @property
    def display(self) -> str:
        """The server as a URL a person may see: the password shows as ``***``."""
        user = self.username or ""
        if self.password is not None:
            user += ":***"
        scheme = "rediss" if self.ssl else "redis"
        return f"{scheme}://{user + '@' if user else ''}{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisConfig({self.display!r}, prefix={self.prefix!r}, ttl={self.ttl})"


def _number(options: dict[str, str], name: str, cast: type[float] | type[int], low: float) -> float:
    text = options[name]
    try:
        value = cast(text)
    except ValueError:
        raise ConfigurationError(f"?{name}={text!r} is not a number") from None
    if value < low:
        raise ConfigurationError(f"?{name}={text!r} must be at least {low}")
    return value


def parse_config(url: str | StoreURL) -> RedisConfig:
    """The settings a ``redis://`` or ``rediss://`` URL names (unknown options refused)."""
    parsed = StoreURL.parse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ConfigurationError(f"{parsed.redacted()} is not a redis:// or rediss:// URL")
    unknown = sorted(set(parsed.query) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} in {parsed.redacted()}; "
            f"known: {', '.join(sorted(OPTIONS))}"
        )
    path = parsed.path.strip("/")
    if path and not path.isdigit():
        raise ConfigurationError(f"{parsed.redacted()}: the path must be a database number")
    q = parsed.query
    prefix = q.get("prefix", "threadline")
    if not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(f"?prefix={prefix!r}: 1-100 characters without spaces or braces")
    values: dict[str, object] = {}
    if "timeout" in q:
        values["timeout"] = _number(q, "timeout", float, 0.1)
    if "retries" in q:
        values["retries"] = int(_number(q, "retries", int, 0))
    if "max_connections" in q:
        values["max_connections"] = int(_number(q, "max_connections", int, 1))
    return RedisConfig(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 6379,
        db=int(path or 0),
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.scheme == "rediss",
        prefix=prefix,
        ttl=parse_duration(q["ttl"]) if q.get("ttl") else 0,
        **values,  # type: ignore[arg-type]
    )
