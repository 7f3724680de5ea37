"""The reference store (required tier only) passes the whole conformance kit through the
core's derived defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from threadline import Checkpoint, Message, Session, Store
from threadline.ids import new_id
from threadline.storekit import ReferenceStore
from threadline.testing import StoreConformance


class TestReferenceStore(StoreConformance):
    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = Store(ReferenceStore())
        yield store
        await store.close()


async def test_checkpoints_store_deltas_not_whole_histories() -> None:
    """The core's checkpoint log writes what a step adds: storage grows with the history."""
    plugin = ReferenceStore()
    store = Store(plugin)
    session = await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))
    t, s = session.tenant_id, session.id
    history: tuple[Message, ...] = ()
    parent = None
    for step in range(60):
        history += tuple(
            Message(session_id=s, tenant_id=t, role=role, content=f"{role} {step} " + "x" * 200)
            for role in ("user", "assistant")
        )
        parent = await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=history,
                       parent_id=parent.id if parent else None)
        )  # fmt: skip
    records = plugin.list_checkpoint_records(t, s, None, False)
    stored = sum(len(r.record) for r in records)
    text = sum(len(m.content) for m in history)
    assert stored < 2 * text  # whole histories would be about 30 times the text
    assert [r.depth for r in records[:3]] == [0, 1, 2]
    assert parent is not None
    restored = await Store(plugin).get_checkpoint(t, parent.id)  # a cold cache: from the chain
    assert restored is not None and restored.history == history
