"""threadline-postgres: the threadline store contract on PostgreSQL (asyncpg, pooled).

``threadline.connect("postgresql://user@host/db?max_size=20")`` opens it; see the
README for the URL options, the schema and how NUL characters are stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from threadline_postgres.config import OPTIONS, PostgresConfig, parse_config
    from threadline_postgres.store import PostgresStore

__all__ = ["OPTIONS", "PostgresConfig", "PostgresStore", "parse_config"]

_WHERE = {
    "OPTIONS": "config",
    "PostgresConfig": "config",
    "parse_config": "config",
    "PostgresStore": "store",
}
"""The module each name lives in: loaded on first use, so that loading the plugin (the
``threadline`` entry point, on every ``threadline`` command) imports none of them."""

__getattr__ = lazy_attributes(__name__, _WHERE)
