"""Registers ``sqlite://`` with threadline (entry point ``threadline_sqlite.plugin``).

Kept small: the store module (and sqlite-utils, needed only to apply migrations) is
imported when a ``sqlite://`` URL is first opened, not when plugins load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL

if TYPE_CHECKING:
    from threadline_sqlite.store import SQLiteStore

__all__ = ["open_sqlite_store", "threadline_register_stores"]


async def open_sqlite_store(url: StoreURL) -> SQLiteStore:
    """Open the database a ``sqlite://`` URL names (options checked first, then the file)."""
    from threadline_sqlite.options import SQLiteOptions
    from threadline_sqlite.store import SQLiteStore

    return await SQLiteStore.open(SQLiteOptions.from_url(url))


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    register(
        "sqlite",
        open_sqlite_store,
        "SQLite file (WAL): sqlite:///relative.db, sqlite:////abs/path.db, "
        "?synchronous=normal|full|extra|off&busy_timeout=ms",
    )
