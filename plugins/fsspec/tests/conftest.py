"""Fixtures for the fsspec store tests: real directories in ``tmp_path`` and fsspec memory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from _fsspec_support import forget_memory_folder

import threadline
from threadline.testing import reopen_by_url

# Only this plugin (and the core's built-ins) load, whatever else is installed.
os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-fsspec"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A store directory that does not exist yet."""
    return tmp_path / "store"


@pytest_asyncio.fixture
async def file_store(root: Path) -> AsyncIterator[threadline.Store]:
    """An open, empty store on a local directory."""
    store = await threadline.connect(f"file://{root}")
    yield store
    await store.close()


@pytest.fixture
def memory_name() -> Iterator[str]:
    """A unique folder of fsspec's (process-wide) memory file system, removed afterwards."""
    from threadline.ids import new_id

    name = f"tl-test-{new_id()}"
    yield name
    forget_memory_folder(f"/{name}")


@pytest.fixture
def reopen() -> Callable[[threadline.Store], object]:
    """The conformance kit's durability tests: close the store, open the same folder again."""
    return reopen_by_url


@pytest.fixture
def storage_bytes(store: threadline.Store, root: Path, memory_name: str) -> Callable[[], int]:
    """The bytes of the store's files (a local folder or an fsspec memory folder)."""
    import fsspec

    assert store.url is not None
    local = store.url.scheme == "file"
    fs = fsspec.filesystem("file" if local else "memory")
    folder = str(root) if local else f"/{memory_name}"
    return lambda: int(fs.du(folder)) if fs.exists(folder) else 0
