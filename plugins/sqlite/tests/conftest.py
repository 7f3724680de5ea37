"""Fixtures for the sqlite store tests: real files in ``tmp_path``, no mocks."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from _sqlite_support import integrity_ok

import threadline
from threadline.testing import reopen_by_url

# Only this plugin (and the core's built-ins) load, whatever else is installed.
os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-sqlite")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file that does not exist yet."""
    return tmp_path / "threadline.db"


@pytest_asyncio.fixture
async def store(db_path: Path) -> AsyncIterator[threadline.Store]:
    """An open, empty store on a real file; its integrity is checked after the test."""
    opened = await threadline.connect(f"sqlite:///{db_path}")
    yield opened
    await opened.close()
    integrity_ok(db_path)


@pytest.fixture
def reopen() -> Callable[[threadline.Store], object]:
    """The conformance kit's durability tests: close the store, open the same file again."""
    return reopen_by_url


@pytest.fixture
def storage_bytes(db_path: Path) -> Callable[[], int]:
    """The committed size of the database (pages in use, the WAL's included)."""

    def size() -> int:
        conn = sqlite3.connect(db_path)
        try:
            pages, free = (
                conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count")
            )
            return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])
        finally:
            conn.close()

    return size
