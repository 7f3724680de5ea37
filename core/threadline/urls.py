"""Store URLs: ``scheme://[user[:password]@]host[:port]/path?option=value``.

The password is kept out of ``repr`` and ``str``; use :meth:`StoreURL.redacted` to
show a URL to a person.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from threadline.errors import ConfigurationError

__all__ = ["StoreURL"]

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
"""A URL scheme (RFC 3986): a letter, then letters, digits, ``+``, ``-`` or ``.``."""


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
        """Parse ``url``; raise :class:`ConfigurationError` (password hidden) when it has no
        scheme or cannot be parsed (an unclosed ``[``, a port out of range ...)."""
        if isinstance(url, StoreURL):
            return url
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError(
                f"not a store URL: {_shorten(url)!r} (expected scheme://..., "
                "e.g. sqlite:///chat.db, memory://, postgresql://host/db)"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
            parsed = cls(
                raw=url,
                scheme=parts.scheme.lower(),
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                host=parts.hostname,
                port=port,
                path=unquote(parts.path),
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            )
            parsed.redacted()  # shown in every error message: it must work
        except ValueError as exc:  # urllib's own errors (UnicodeError is a ValueError too)
            raise ConfigurationError(
                f"invalid store URL {_hide_userinfo(url)!r}: {_reason(url, exc)}"
            ) from None
        if not _SCHEME.fullmatch(parsed.scheme):  # not every Python's urlsplit checks this
            raise ConfigurationError(
                f"not a store URL: {_hide_userinfo(url)!r} (the scheme must start with a "
                "letter, e.g. sqlite:///chat.db, memory://, postgresql://host/db)"
            )
        return parsed

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


def _hide_userinfo(url: str) -> str:
    """``url`` with anything that may be ``user:password@`` replaced by ``***@``, shortened.

    For URLs that do not parse: everything between ``://`` and the last ``@`` goes.
    """
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    text = f"{scheme}://{rest}"
    return text if len(text) <= 80 else text[:77] + "..."


def _reason(url: str, exc: ValueError) -> str:
    """What urllib said, unless it might quote the password (then a generic reason)."""
    reason = str(exc)
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if userinfo:
        reason = reason.replace(userinfo, "***")
        secret = userinfo.partition(":")[2]
        if secret and secret in reason:
            return "it cannot be parsed"
    return reason if len(reason) <= 120 else reason[:117] + "..."


def _shorten(value: object) -> str:
    text = str(value)
    if "@" in text:  # whatever comes before an @ may be user:password
        text = "***@" + text.rpartition("@")[2]
    return text if len(text) <= 60 else text[:57] + "..."
