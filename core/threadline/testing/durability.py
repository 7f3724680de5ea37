"""Conformance: a store that persists keeps everything across close and reopen.

Needs the optional ``reopen`` fixture, a plain (not async) fixture returning
``async def reopen(store) -> Store``: it closes the given store and opens the same one
again (same file, schema or folder); the tests close the store they end with. A store
that forgets on close (``memory://``) provides none and these tests skip::

    @pytest.fixture
    def reopen():
        async def again(store):
            await store.close()
            return await threadline.connect(store.url)
        return again
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

from threadline import ApiCall, Checkpoint, ConflictError, Message, Store, ToolCall
from threadline.ids import new_id
from threadline.testing._support import (
    Conversation,
    Reopen,
    new_conversation,
    optional_fixture,
)
from threadline.testing.agent_configs import make_config

WHY = "the store does not persist across close (durability tests skipped)"


async def _everything(store: Store, tenants: list[str], convs: list[Conversation]) -> Any:
    """Every read a user depends on, for comparison before and after a reopen."""
    out: list[Any] = [await store.list_tenants()]
    for t in tenants:
        out += [
            await store.list_sessions(t),
            await store.list_checkpoints(t),
            await store.list_agent_configs(t),
            await store.list_providers(t),
        ]
    for conv in convs:
        t, s = conv.tenant_id, conv.id
        out += [
            await store.get_session(t, s),
            await store.get_messages(t, s),
            await store.count_messages(t, s),
            await store.load_window(t, s, 1),
            await store.list_api_calls(t, s),
            await store.get_latest_checkpoint(t, s),
        ]
    return out


async def _write_a_bit_of_everything(store: Store) -> tuple[list[str], list[Conversation]]:
    """Sessions, messages (batch, single, updated, interrupted), API calls, a checkpoint
    chain with a tombstone, a pruned session, an agent with its provider, a second tenant."""
    tenant, other_tenant = new_id(), new_id()
    a = await new_conversation(
        store, tenant, agent_id=new_id(), title="kept", metadata={"k": [1, 2.5, None]}
    )
    b = await new_conversation(store, tenant)
    c = await new_conversation(store, other_tenant)
    await a.add("system", "be brief")
    history = await a.add_round(1, tool=True)
    call = ToolCall(id="call-x", name="f", arguments={"deep": {"x": [True]}})
    history += await store.save_messages(
        [a.message("user", "batch"), a.message("assistant", "", tool_calls=[call])]
    )
    streaming = await a.add("assistant", "half", status="streaming")
    await store.update_message(attrs.evolve(streaming, content="whole", status="complete"))
    await a.add("assistant", "cut off", status="streaming")
    await store.interrupt_streaming(a.tenant_id, a.id)
    await store.save_api_call(
        ApiCall(tenant_id=tenant, session_id=a.id, model="m", status="success", total_tokens=7)
    )
    parent: Checkpoint | None = None
    for i in range(6):
        parent = await store.create_checkpoint(
            Checkpoint(
                tenant_id=tenant,
                session_id=a.id,
                history=history[: i + 2],
                parent_id=None if parent is None else parent.id,
                node_id=f"n{i}",
                state={"i": i},
            )
        )
    assert parent is not None
    await store.create_checkpoint(
        Checkpoint(tenant_id=tenant, session_id=a.id, parent_id=parent.id, tombstone=True)
    )
    for i in range(4):
        await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=b.id, history=history[: i + 1])
        )
    await store.prune_checkpoints(tenant, b.id, keep=2)
    await store.update_session(attrs.evolve(b.session, title="renamed"))
    await store.set_session_updated_at(tenant, b.id, datetime(2021, 5, 4, tzinfo=timezone.utc))
    await c.add_round(1)
    await store.save_agent_config(make_config(tenant))
    return [tenant, other_tenant], [a, b, c]


@pytest.mark.asyncio
class DurabilityConformance:
    """Close and reopen: every row reads back the same, and writes carry on from it."""

    async def test_everything_survives_close_and_reopen(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        reopen: Reopen = optional_fixture(request, "reopen", WHY)
        tenants, convs = await _write_a_bit_of_everything(store)
        before = await _everything(store, tenants, convs)
        store = await reopen(store)
        try:
            assert await _everything(store, tenants, convs) == before
            store = await reopen(store)  # a second reopen of a reopened store
            assert await _everything(store, tenants, convs) == before
        finally:
            await store.close()

    async def test_writes_after_reopen_carry_on(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """Seqs, versions, id checks and checkpoint chains continue where they stood."""
        reopen: Reopen = optional_fixture(request, "reopen", WHY)
        conv = await new_conversation(store)
        other = await new_conversation(store, tenant_id=conv.tenant_id)
        t, s = conv.tenant_id, conv.id
        saved = await conv.add_round(1, tool=True)
        call = ApiCall(tenant_id=t, session_id=s, model="m", status="success")
        await store.save_api_call(call)
        history: list[Message] = list(saved)
        first = await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=history)
        )
        store = await reopen(store)
        try:
            await self._carry_on(store, reopen, conv, other, saved, call, first)
        finally:
            await store.close()

    async def _carry_on(
        self,
        store: Store,
        reopen: Reopen,
        conv: Conversation,
        other: Conversation,
        saved: list[Message],
        call: ApiCall,
        first: Checkpoint,
    ) -> None:
        t, s = conv.tenant_id, conv.id
        conv.store = other.store = store
        assert await store.save_message(saved[0]) == saved[0]  # a retry, not a new row
        with pytest.raises(ConflictError):
            await store.save_message(attrs.evolve(saved[1], session_id=other.id, seq=None))
        with pytest.raises(ConflictError):
            await store.save_api_call(attrs.evolve(call, session_id=other.id))
        assert (await conv.add("user", "after")).seq == len(saved) + 1
        history = [*saved, conv.message("assistant", "next")]
        second = await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=history, parent_id=first.id)
        )
        assert second.version == 2
        again = await reopen(store)
        try:
            assert await again.get_checkpoint(t, second.id) == second
            assert await again.list_checkpoints(t, session_id=s) == [first, second]
            assert await again.count_messages(t, s) == len(saved) + 1
            assert await again.list_api_calls(t, s) == [call]
            assert await again.get_messages(t, other.id) == []
        finally:
            await again.close()
