"""The smallest store (``examples/minimal_store.py``) passes the whole conformance kit, and
``docs/smallest-store.md`` shows it as it is."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from threadline import Store
from threadline.testing import StoreConformance

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "examples" / "minimal_store.py"
PAGE = ROOT / "docs" / "smallest-store.md"

_spec = importlib.util.spec_from_file_location("minimal_store", MODULE)
assert _spec is not None and _spec.loader is not None
minimal_store = importlib.util.module_from_spec(_spec)
sys.modules["minimal_store"] = minimal_store
_spec.loader.exec_module(minimal_store)


class TestMinimalStore(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = Store(minimal_store.MinimalStore())
        yield store
        await store.close()


def test_the_page_shows_the_whole_module_and_its_line_count() -> None:
    text = PAGE.read_text(encoding="utf-8")
    quote = re.search(
        r"<!-- from examples/minimal_store.py -->\n<!-- fmt: off -->\n```python\n(.*?)```",
        text,
        re.S,
    )
    assert quote is not None
    source = MODULE.read_text(encoding="utf-8")
    assert quote[1] == source  # whole, not an excerpt
    lines = len(source.splitlines())
    assert f"{lines} lines" in text
