"""threadline-fsspec passes the store conformance suite on a local disk and on fsspec memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

import threadline
from threadline.testing import StoreConformance


class TestLocalDirectory(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self, file_store: threadline.Store) -> AsyncIterator[threadline.Store]:
        yield file_store


class TestFsspecMemory(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self, memory_name: str) -> AsyncIterator[threadline.Store]:
        store = await threadline.connect(f"fsspec+memory://{memory_name}")
        yield store
        await store.close()
