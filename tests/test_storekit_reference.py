"""The reference store (required tier only) passes the whole conformance kit through the
core's derived defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from threadline import Store
from threadline.storekit import ReferenceStore
from threadline.testing import StoreConformance


class TestReferenceStore(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = Store(ReferenceStore())
        yield store
        await store.close()
