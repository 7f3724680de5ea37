"""Conformance: creating, listing, updating and deleting sessions."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from threadline import ApiCall, Checkpoint, NotFoundError, Session, Store
from threadline.ids import new_id
from threadline.testing._support import new_conversation


@pytest.mark.asyncio
class SessionConformance:
    """Sessions: create/get, list by user newest first, update, delete cascading."""

    async def test_create_and_get(self, store: Store) -> None:
        session = Session(
            tenant_id=new_id(),
            user_id=new_id(),
            agent_id=new_id(),
            title="Trip planning",
            metadata={"lang": "fr"},
        )
        stored = await store.create_session(session)
        assert stored == session
        assert await store.get_session(session.tenant_id, session.id) == session
        assert await store.create_session(session) == session  # idempotent
        assert await store.get_session(session.tenant_id, new_id()) is None

    async def test_list_by_user_newest_first(self, store: Store) -> None:
        tenant, alice, bob = new_id(), new_id(), new_id()
        made = []
        for i in range(4):
            conv = await new_conversation(store, tenant_id=tenant, user_id=alice, title=f"a{i}")
            made.append(conv)
            await conv.add("user", "hello")
            await asyncio.sleep(0.002)
        await new_conversation(store, tenant_id=tenant, user_id=bob)
        await made[1].add("user", "bump")  # most recently active now
        listed = await store.list_sessions(tenant, user_id=alice)
        assert [s.id for s in listed] == [made[1].id, made[3].id, made[2].id, made[0].id]
        assert len(await store.list_sessions(tenant)) == 5
        page = await store.list_sessions(tenant, user_id=alice, limit=2, offset=1)
        assert [s.id for s in page] == [made[3].id, made[2].id]

    async def test_update_title_and_metadata(self, store: Store) -> None:
        conv = await new_conversation(store, title="old")
        changed = attrs.evolve(conv.session, title="new", metadata={"pinned": True})
        updated = await store.update_session(changed)
        assert (updated.title, updated.metadata) == ("new", {"pinned": True})
        assert updated.updated_at >= conv.session.updated_at
        assert await store.get_session(conv.tenant_id, conv.id) == updated
        with pytest.raises(NotFoundError):
            await store.update_session(Session(tenant_id=conv.tenant_id, title="ghost"))

    async def test_set_updated_at_exactly(self, store: Store) -> None:
        tenant, user = new_id(), new_id()
        old, new = [await new_conversation(store, tenant, user) for _ in range(2)]
        await new.add("user", "hello")
        await old.add("user", "hello")
        kept = await store.get_session(tenant, old.id)
        then = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
        stored = await store.set_session_updated_at(tenant, new.id, then)
        assert stored.updated_at == then and stored.updated_at.utcoffset() == timedelta(0)
        assert stored == await store.get_session(tenant, new.id)
        assert stored == attrs.evolve(new.session, updated_at=then)
        assert [s.id for s in await store.list_sessions(tenant)] == [old.id, new.id]
        assert await store.delete_sessions_before(tenant, then, dry_run=True) == 0
        tick = then + timedelta(microseconds=1)
        assert await store.delete_sessions_before(tenant, tick, dry_run=True) == 1
        later = datetime.now(timezone.utc) + timedelta(days=3)
        assert (await store.set_session_updated_at(tenant, new.id, later)).updated_at == later
        assert [s.id for s in await store.list_sessions(tenant)] == [new.id, old.id]
        await store.set_session_updated_at(tenant, new.id, then)
        await new.add("assistant", "appends move it forward again")
        moved = await store.get_session(tenant, new.id)
        assert moved is not None and moved.updated_at > then
        with pytest.raises(NotFoundError):
            await store.set_session_updated_at(new_id(), old.id, then)  # another tenant's
        with pytest.raises(NotFoundError):
            await store.set_session_updated_at(tenant, new_id(), then)
        assert await store.get_session(tenant, old.id) == kept

    async def test_delete_cascades(self, store: Store) -> None:
        conv = await new_conversation(store)
        keep = await new_conversation(store, tenant_id=conv.tenant_id)
        await conv.add_round(1, tool=True)
        kept = await keep.add("user", "stay")
        await store.save_api_call(
            ApiCall(tenant_id=conv.tenant_id, session_id=conv.id, model="m", status="success")
        )
        checkpoint = await store.create_checkpoint(
            Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id="start")
        )
        assert await store.delete_session(conv.tenant_id, conv.id) is True
        assert await store.get_session(conv.tenant_id, conv.id) is None
        assert await store.get_messages(conv.tenant_id, conv.id) == []
        assert await store.count_messages(conv.tenant_id, conv.id) == 0
        assert await store.list_api_calls(conv.tenant_id, conv.id) == []
        assert await store.get_checkpoint(conv.tenant_id, checkpoint.id) is None
        assert await store.list_checkpoints(conv.tenant_id, session_id=conv.id) == []
        assert await store.delete_session(conv.tenant_id, conv.id) is False
        assert await keep.messages() == [kept]
