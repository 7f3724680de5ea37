"""Fixtures for the sqlite store tests: real files in ``tmp_path``, no mocks."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from _sqlite_support import integrity_ok

import threadline

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
