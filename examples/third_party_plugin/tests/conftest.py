"""Only this plugin loads in its tests, whatever else is installed."""

import os
import pathlib
from collections.abc import Callable

import pytest

import threadline
from threadline.testing import reopen_by_url

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-jsonl"


@pytest.fixture
def reopen() -> Callable[[threadline.Store], object]:
    """The conformance kit's durability tests: close the store, open the same file again."""
    return reopen_by_url


@pytest.fixture
def storage_bytes(tmp_path: pathlib.Path) -> Callable[[], int]:
    """The size of the store's JSON-lines file."""
    path = tmp_path / "chat.jsonl"
    return lambda: path.stat().st_size if path.exists() else 0
