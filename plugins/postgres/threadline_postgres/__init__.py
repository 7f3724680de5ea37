"""threadline-postgres: the threadline store contract on PostgreSQL (asyncpg, pooled).

``threadline.connect("postgresql://user@host/db?max_size=20")`` opens it; see the
README for the URL options, the schema and how NUL characters are stored.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
