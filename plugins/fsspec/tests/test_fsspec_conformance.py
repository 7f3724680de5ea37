"""threadline-fsspec passes the store conformance suite on a local disk and on fsspec memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import threadline
from threadline.testing import MessageDeletionConformance, StoreConformance

_NO_DELETION = (
    "threadline_delete_messages is not implemented on fsspec yet: a message segment holds "
    "consecutive seqs, and deleting a session's end needs the segment chain to skip seqs"
)


async def _skipped(self: object) -> None:
    pytest.skip(_NO_DELETION)


class _WithoutDeletion(StoreConformance):
    """The kit but ``delete_messages`` (see _NO_DELETION): each of its tests is skipped."""


for _name in vars(MessageDeletionConformance):
    if _name.startswith("test_"):
        setattr(_WithoutDeletion, _name, _skipped)


class TestLocalDirectory(_WithoutDeletion):
    @pytest_asyncio.fixture
    async def store(self, file_store: threadline.Store) -> AsyncIterator[threadline.Store]:
        yield file_store


class TestFsspecMemory(_WithoutDeletion):
    @pytest_asyncio.fixture
    async def store(self, memory_name: str) -> AsyncIterator[threadline.Store]:
        store = await threadline.connect(f"fsspec+memory://{memory_name}")
        yield store
        await store.close()
