"""Store URLs: ``scheme://[user[:password]@]host[:port]/path?option=value``.

The password is kept out of ``repr`` and ``str``; use :meth:`StoreURL.redacted` to
show a URL to a person.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from threadline.errors import ConfigurationError

__all__ = ["StoreURL"]


@attrs.frozen(repr=False)
class StoreURL:
    """A parsed store URL. ``query`` holds the options (last value wins)."""

    raw: str
    scheme: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    path: str
    query: dict[str, str]

    @classmethod
    def parse(cls, url: str | StoreURL) -> StoreURL:
        """Parse ``url``; raise :class:`ConfigurationError` when it has no scheme."""
        if isinstance(url, StoreURL):
            return url
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError(
                f"not a store URL: {_shorten(url)!r} (expected scheme://..., "
                "e.g. sqlite:///chat.db, memory://, postgresql://host/db)"
            )
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("store URL has an invalid port") from None
        return cls(
            raw=url,
            scheme=parts.scheme.lower(),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=port,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        )

    def redacted(self) -> str:
        """The URL with its password replaced by ``***``."""
        if self.password is None:
            return self.raw
        return self.raw.replace(":" + _quoted_password(self.raw) + "@", ":***@", 1)

    def option(self, name: str, default: Any = None) -> Any:
        """A query option's value, or ``default``."""
        return self.query.get(name, default)

    def __repr__(self) -> str:
        return f"StoreURL({self.redacted()!r})"

    __str__ = redacted


def _quoted_password(raw: str) -> str:
    netloc = urlsplit(raw).netloc
    userinfo = netloc.rpartition("@")[0]
    return userinfo.partition(":")[2]


def _shorten(value: object) -> str:
    text = str(value)
    if "@" in text:  # whatever comes before an @ may be user:password
        text = "***@" + text.rpartition("@")[2]
    return text if len(text) <= 60 else text[:57] + "..."
