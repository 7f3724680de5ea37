"""Registers ``sqlite://`` with threadline (entry point ``threadline_sqlite.plugin``).

Kept small: the store module (and sqlite-utils, needed only to apply migrations) is
imported when a ``sqlite://`` URL is first opened, not when plugins load.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.request import pathname2url

from threadline.errors import ConfigurationError, StoreNotFoundError
from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL

if TYPE_CHECKING:
    from threadline_sqlite.options import SQLiteOptions
    from threadline_sqlite.store import SQLiteStore

__all__ = ["open_sqlite_store", "threadline_register_stores"]


async def open_sqlite_store(url: StoreURL, *, create: bool = True) -> SQLiteStore:
    """Open the database a ``sqlite://`` URL names (options checked first, then the file).

    With ``create=False`` a missing file, or one without threadline's tables, raises
    :class:`~threadline.errors.StoreNotFoundError` and nothing is written.
    """
    from threadline_sqlite.options import SQLiteOptions
    from threadline_sqlite.store import SQLiteStore

    options = SQLiteOptions.from_url(url)
    await asyncio.to_thread(_check_file, options, url, create)
    return await SQLiteStore.open(options)


def _check_file(options: SQLiteOptions, url: StoreURL, create: bool) -> None:
    """Refuse a directory; without ``create``, a file without threadline's tables
    (looked at read-only: nothing is written)."""
    from threadline_sqlite.migrations import applied_migrations

    if not options.in_memory and os.path.isdir(options.path):
        raise ConfigurationError(f"{url.redacted()} names a directory, not a database file")
    if create:
        return
    if options.in_memory:
        raise StoreNotFoundError(
            f"no store at {url.redacted()}: an in-memory database is new each time it is opened"
        )
    if not os.path.exists(options.path):
        raise StoreNotFoundError(
            f"no store at {url.redacted()}: {options.path} does not exist (nothing was created)"
        )
    try:
        connection = sqlite3.connect(f"file:{pathname2url(options.path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return  # unreadable: opening the store reports it
    try:
        applied = applied_migrations(connection)
    except sqlite3.Error:
        return  # not a database (or locked): opening the store reports it
    finally:
        connection.close()
    if not applied:
        raise StoreNotFoundError(
            f"no store at {url.redacted()}: {options.path} holds no threadline tables "
            "(nothing was changed)"
        )


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    register(
        "sqlite",
        open_sqlite_store,
        "SQLite file (WAL): sqlite:///relative.db, sqlite:////abs/path.db, "
        "?synchronous=normal|full|extra|off&busy_timeout=ms",
    )
