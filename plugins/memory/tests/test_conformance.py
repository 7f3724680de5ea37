"""threadline-memory passes the store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

import threadline
from threadline.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[threadline.Store]:
        store = await threadline.connect("memory://")
        yield store
        await store.close()
