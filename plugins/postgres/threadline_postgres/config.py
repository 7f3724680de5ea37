"""Turn a ``postgresql://`` store URL into the settings of an asyncpg pool.

The URL names the server the libpq way (``postgresql://user:password@host:port/database``)
and carries threadline's own options in its query string. Anything the URL leaves out
comes from ``DATABASE_URL`` (when the URL names no server at all) and then from the
usual ``PG*`` variables (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``,
``PGDATABASE``, ``PGSSLMODE``) and ``~/.pgpass``, which asyncpg reads itself.

Unknown options are refused with :class:`~threadline.errors.ConfigurationError`
naming the option, so a typo (``?max_szie=50``) cannot silently fall back to a
default. The password is kept out of ``repr``, :attr:`PostgresConfig.display` and
every error message.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import Any

import attrs

from threadline.errors import ConfigurationError
from threadline.urls import StoreURL

__all__ = ["OPTIONS", "PostgresConfig", "parse_config"]

SCHEMES = ("postgresql", "postgres")

OPTIONS: dict[str, str] = {
    "min_size": "connections the pool opens up front and keeps (default 1)",
    "max_size": "most connections the pool opens (default 10)",
    "command_timeout": "seconds one statement may take before StoreUnavailableError (default 30)",
    "connect_timeout": "seconds to open one connection (default 10)",
    "acquire_timeout": "seconds to wait for a free pooled connection (default 30)",
    "max_inactive_connection_lifetime": "seconds an idle pooled connection lives (default 300)",
    "statement_cache_size": "prepared statements cached per connection; 0 disables (default 256)",
    "pgbouncer": "true: same as pooler=transaction; false: same as pooler=none",
    "pooler": "auto (detect at connect), none, transaction or session (default auto)",
    "target_session_attrs": "with several hosts: any, primary, standby, read-write, read-only "
    "or prefer-standby (default any)",
    "replica": "host:port[,host:port] of read replicas for reads that may be stale",
    "replica_window": "seconds a session's (and tenant's) reads stay on the primary after "
    "this process writes to it (default 10)",
    "schema": "put the tables in this schema (created if missing; default: search_path)",
    "partitions": "hash partitions by tenant for messages and checkpoints, made when the "
    "schema is created or upgraded to migration 0009 (default 0: none)",
    "sslmode": "disable, allow, prefer, require, verify-ca or verify-full",
    "application_name": "shown in pg_stat_activity (default threadline)",
    "host": "server host or Unix-socket directory (overrides the URL's host)",
    "port": "server port (overrides the URL's port)",
}
"""Every query option a ``postgresql://`` URL may carry, with what it does."""

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POOLER_MODES = ("auto", "none", "transaction", "session")
TARGET_SESSION_ATTRS = (
    "any", "primary", "standby", "read-write", "read-only", "prefer-standby",
)  # fmt: skip
HostList = tuple[tuple[str, "int | None"], ...]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@attrs.frozen(repr=False)
class PostgresConfig:
    """Everything needed to open the pool; ``password`` never appears in ``repr``."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = attrs.field(default=None, eq=False)
    database: str | None = None
    min_size: int = 1
    max_size: int = 10
    command_timeout: float = 30.0
    connect_timeout: float = 10.0
    acquire_timeout: float = 30.0
    max_inactive_connection_lifetime: float = 300.0
    statement_cache_size: int = 256
    pooler: str = "auto"
    hosts: HostList = ()
    target_session_attrs: str | None = None
    replicas: HostList = ()
    replica_window: float = 10.0
    schema: str | None = None
    partitions: int = 0
    sslmode: str | None = None
    application_name: str = "threadline"
    source: str = "url"

    @property
    def display(self) -> str:
        """The server as a URL a person may see: the password shows as ``***``."""
        user = self.user or ""
        if self.password is not None:
            user += ":***"
        userinfo = f"{user}@" if user else ""
        hosts = self.hosts or ((self.host or "", self.port),)
        netloc = ",".join(_host_text(h, p) for h, p in hosts)
        return f"postgresql://{userinfo}{netloc}/{self.database or ''}"

    @property
    def replica_display(self) -> str:
        """The read replicas as a URL a person may see (password as ``***``)."""
        return attrs.evolve(self, hosts=self.replicas).display

    def __repr__(self) -> str:
        return (
            f"PostgresConfig({self.display!r}, pool={self.min_size}..{self.max_size}, "
            f"command_timeout={self.command_timeout}, schema={self.schema!r})"
        )

    def table(self, name: str) -> str:
        """``name`` qualified by the configured schema (quoted), for SQL text."""
        return f'"{self.schema}".{name}' if self.schema else name

    @property
    def lock_key(self) -> int:
        """A signed 64-bit advisory-lock key, one per schema, that serialises migrations."""
        digest = hashlib.sha256(f"threadline_postgres:{self.schema or ''}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.create_pool`` naming the server (no pool sizes)."""
        host: Any = self.host
        port: Any = self.port
        if self.hosts:
            host = [h for h, _ in self.hosts]
            port = [p or self.port or 5432 for _, p in self.hosts]
        kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
            "statement_cache_size": self.statement_cache_size,
            "server_settings": {"application_name": self.application_name},
        }
        if self.sslmode is not None:
            kwargs["ssl"] = self.sslmode
        if self.target_session_attrs is not None:
            kwargs["target_session_attrs"] = self.target_session_attrs
        return {k: v for k, v in kwargs.items() if v is not None}

    def replica_kwargs(self) -> dict[str, Any]:
        """:meth:`connect_kwargs` for the read replicas (any of them will do)."""
        kwargs = attrs.evolve(self, hosts=self.replicas, target_session_attrs=None)
        return kwargs.connect_kwargs()


def _host_text(host: str, port: int | None) -> str:
    if host.startswith("/") or ":" in host:
        host = f"[{host}]"
    return host + (f":{port}" if port is not None else "")


def _int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"postgres option {name} must be an integer, got {raw!r}"
        ) from None
    if value < minimum:
        raise ConfigurationError(f"postgres option {name} must be >= {minimum}, got {value}")
    return value


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"postgres option {name} must be seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"postgres option {name} must be > 0 seconds, got {raw!r}")
    return value


def _bool(name: str, raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigurationError(f"postgres option {name} must be true or false, got {raw!r}")


def _target(url: StoreURL) -> dict[str, Any]:
    database = url.path.lstrip("/") or None
    return {
        "host": url.host,
        "port": url.port,
        "hosts": url.hosts,
        "user": url.username,
        "password": url.password,
        "database": database,
    }


def _replicas(raw: str) -> HostList:
    """``host:port[,host:port]`` (as in a URL's host list) as pairs."""
    pairs: HostList = ()
    if not any(c in raw for c in "/@?#"):
        try:
            parsed = StoreURL.parse(f"postgresql://{raw}/")
            pairs = parsed.hosts or ((parsed.host or "", parsed.port),)
        except ConfigurationError:
            pairs = ()
    if not all(host for host, _ in pairs):
        pairs = ()
    if not pairs:
        raise ConfigurationError(
            f"postgres option replica must be host[:port][,host[:port]...], got {raw[:80]!r}"
        )
    return pairs


def parse_config(url: StoreURL | str, environ: Mapping[str, str] | None = None) -> PostgresConfig:
    """Read a ``postgresql://`` URL (and, if it names no server, ``DATABASE_URL``).

    :param url: the store URL.
    :param environ: the environment to read ``DATABASE_URL`` from (default ``os.environ``).
    :raises ConfigurationError: wrong scheme, unknown option or bad value.
    """
    url = StoreURL.parse(url)
    if url.scheme not in SCHEMES:
        raise ConfigurationError(f"not a PostgreSQL URL: {url.redacted()!r}")
    env = os.environ if environ is None else environ
    target = _target(url)
    query = dict(url.query)
    source = "url"
    if not any(target.values()) and env.get("DATABASE_URL"):
        try:
            fallback = StoreURL.parse(env["DATABASE_URL"])
        except ConfigurationError:
            raise ConfigurationError("DATABASE_URL is not a URL") from None
        if fallback.scheme in SCHEMES:
            target = _target(fallback)
            query = {**fallback.query, **query}
            source = "DATABASE_URL"

    unknown = sorted(set(query) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown postgres URL option(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(OPTIONS))}"
        )
    fields: dict[str, Any] = dict(target)
    if "host" in query:
        fields["host"] = query["host"] or None
        fields["hosts"] = ()
    if "port" in query:
        fields["port"] = _int("port", query["port"], 1)
    for name in ("min_size", "statement_cache_size"):
        if name in query:
            fields[name] = _int(name, query[name], 0)
    if "max_size" in query:
        fields["max_size"] = _int("max_size", query["max_size"], 1)
    if "partitions" in query:
        fields["partitions"] = _int("partitions", query["partitions"], 0)
    for name in (
        "command_timeout",
        "connect_timeout",
        "acquire_timeout",
        "max_inactive_connection_lifetime",
    ):
        if name in query:
            fields[name] = _seconds(name, query[name])
    if "pooler" in query:
        if query["pooler"] not in POOLER_MODES:
            raise ConfigurationError(
                f"postgres option pooler must be one of {', '.join(POOLER_MODES)}, "
                f"got {query['pooler']!r}"
            )
        fields["pooler"] = query["pooler"]
    if "pgbouncer" in query:
        implied = "transaction" if _bool("pgbouncer", query["pgbouncer"]) else "none"
        if fields.setdefault("pooler", implied) != implied:
            raise ConfigurationError(
                f"postgres options pgbouncer={query['pgbouncer']} and pooler={fields['pooler']} "
                "contradict each other (pgbouncer=true is pooler=transaction)"
            )
    if fields.get("pooler") == "transaction":
        if "statement_cache_size" in query and fields["statement_cache_size"] != 0:
            raise ConfigurationError(
                "a transaction-mode pooler (pooler=transaction or pgbouncer=true) needs "
                "statement_cache_size=0 (or unset): named prepared statements do not survive "
                "from one transaction to the next"
            )
        fields["statement_cache_size"] = 0
    if "target_session_attrs" in query:
        if query["target_session_attrs"] not in TARGET_SESSION_ATTRS:
            raise ConfigurationError(
                "postgres option target_session_attrs must be one of "
                f"{', '.join(TARGET_SESSION_ATTRS)}, got {query['target_session_attrs']!r}"
            )
        fields["target_session_attrs"] = query["target_session_attrs"]
    if query.get("replica"):
        fields["replicas"] = _replicas(query["replica"])
    if "replica_window" in query:
        fields["replica_window"] = _seconds("replica_window", query["replica_window"])
    if "schema" in query:
        schema = query["schema"]
        if not _IDENTIFIER.fullmatch(schema):
            raise ConfigurationError(
                f"postgres option schema must be a plain identifier "
                f"([A-Za-z_][A-Za-z0-9_]*, at most 63 characters), got {schema[:70]!r}"
            )
        fields["schema"] = schema
    if "sslmode" in query:
        if query["sslmode"] not in _SSLMODES:
            raise ConfigurationError(
                f"postgres option sslmode must be one of {', '.join(_SSLMODES)}, "
                f"got {query['sslmode']!r}"
            )
        fields["sslmode"] = query["sslmode"]
    if "application_name" in query:
        fields["application_name"] = query["application_name"]
    min_size = fields.get("min_size", 1)
    max_size = fields.get("max_size", 10)
    if min_size > max_size:
        raise ConfigurationError(
            f"postgres option min_size ({min_size}) is larger than max_size ({max_size})"
        )
    return PostgresConfig(**fields, source=source)
