"""Store URLs: ``scheme://[user[:password]@]host[:port][,host[:port]...]/path?option=value``.

Several comma-separated hosts (as libpq accepts for fail-over) land in
:attr:`StoreURL.hosts`; ``host`` and ``port`` are then the first of them.

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
    hosts: tuple[tuple[str, int | None], ...] = ()
    """Every ``(host, port)`` of a multi-host URL (``h1:5432,h2:5433``), in order; empty
    when the URL names one host or none."""

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
            hosts = _hosts(parts.netloc)
            if hosts:  # urllib reads "h1:1,h2:2" as one host with a bad port
                parts = urlsplit(url.replace(parts.netloc, parts.netloc.split(",", 1)[0], 1))
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
                hosts=hosts,
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


def _hosts(netloc: str) -> tuple[tuple[str, int | None], ...]:
    """The ``(host, port)`` pairs of a comma-separated host list; ``()`` for one host.

    :raises ValueError: an empty host or a port that is not a number from 0 to 65535.
    """
    hostlist = netloc.rpartition("@")[2]
    if "," not in hostlist:
        return ()
    pairs: list[tuple[str, int | None]] = []
    for item in hostlist.split(","):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port_text = item.partition(":")
        if not host or (port_text and not port_text.isdigit()):
            raise ValueError(f"bad host in host list: {item!r}")
        port = int(port_text) if port_text else None
        if port is not None and port > 65535:
            raise ValueError(f"port out of range 0-65535 in host list: {item!r}")
        pairs.append((unquote(host).lower(), port))
    return tuple(pairs)


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
