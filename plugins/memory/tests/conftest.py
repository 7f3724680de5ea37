"""Only this plugin loads in its tests, whatever else is installed."""

import json
import os
from collections.abc import Callable

import pytest

import threadline

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-memory"


@pytest.fixture
def storage_bytes(store: threadline.Store) -> Callable[[], int]:
    """What the store holds, as the JSON of its rows (the reference store's ``dump``)."""
    kept = store.primary
    return lambda: len(json.dumps([c.to_json() for c in kept.dump()]))  # type: ignore[attr-defined]
