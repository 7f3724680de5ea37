"""threadline-jsonl passes the store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from threadline_jsonl import JsonlStore

import threadline
from threadline.testing import StoreConformance


class TestJsonlStore(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[threadline.Store]:
        store = await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl?fsync=false")
        yield store
        await store.close()


class TestJsonlStoreReplays(StoreConformance):
    """The same suite, fsynced; after each test the file replays into the very same state."""

    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[threadline.Store]:
        store = await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")
        yield store
        [live] = store.plugins
        assert isinstance(live, JsonlStore)
        state = list(live._snapshot(set(), set()))
        await store.close()
        replayed = JsonlStore.open(tmp_path / "chat.jsonl")
        try:
            assert list(replayed._snapshot(set(), set())) == state
        finally:
            replayed.threadline_close()
