"""Conformance: another tenant's ids find nothing and cannot be written to."""

from __future__ import annotations

import attrs
import pytest

from threadline import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    ConflictError,
    NotFoundError,
    Session,
    Store,
)
from threadline.ids import new_id
from threadline.testing._support import new_conversation


@pytest.mark.asyncio
class TenancyConformance:
    """Every read and write is scoped to the caller's tenant."""

    async def test_other_tenant_sees_nothing(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add_round(1, tool=True)
        checkpoint = await store.create_checkpoint(
            Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id="n")
        )
        await store.save_api_call(
            ApiCall(tenant_id=conv.tenant_id, session_id=conv.id, model="m", status="success")
        )
        intruder = new_id()
        assert await store.get_session(intruder, conv.id) is None
        assert await store.list_sessions(intruder) == []
        assert await store.get_messages(intruder, conv.id) == []
        assert await store.load_window(intruder, conv.id, 2) == []
        assert await store.count_messages(intruder, conv.id) == 0
        assert await store.list_api_calls(intruder, conv.id) == []
        assert await store.get_checkpoint(intruder, checkpoint.id) is None
        assert await store.list_checkpoints(intruder, session_id=conv.id) == []
        assert await store.list_checkpoints(intruder) == []
        assert await store.get_latest_checkpoint(intruder, conv.id) is None

    async def test_other_tenant_cannot_write(self, store: Store) -> None:
        conv = await new_conversation(store)
        mine = await conv.add("user", "secret", status="streaming")
        intruder = new_id()
        with pytest.raises(NotFoundError):
            await store.save_message(attrs.evolve(conv.message("user", "x"), tenant_id=intruder))
        with pytest.raises((NotFoundError, ConflictError)):
            await store.save_message(attrs.evolve(mine, tenant_id=intruder, seq=None))
        with pytest.raises(NotFoundError):
            await store.update_message(attrs.evolve(mine, tenant_id=intruder, content="hacked"))
        with pytest.raises(NotFoundError):
            await store.update_session(attrs.evolve(conv.session, tenant_id=intruder, title="x"))
        with pytest.raises(NotFoundError):
            await store.create_checkpoint(Checkpoint(tenant_id=intruder, session_id=conv.id))
        with pytest.raises(NotFoundError):
            await store.save_api_call(
                ApiCall(tenant_id=intruder, session_id=conv.id, model="m", status="success")
            )
        assert await store.interrupt_streaming(intruder, conv.id) == 0
        assert await store.delete_session(intruder, conv.id) is False
        with pytest.raises(ConflictError):
            await store.create_session(Session(id=conv.id, tenant_id=intruder))
        assert await conv.messages() == [mine]
        after = await store.get_session(conv.tenant_id, conv.id)
        assert after is not None
        assert attrs.evolve(after, updated_at=conv.session.updated_at) == conv.session

    async def test_agent_configs_are_per_tenant(self, store: Store) -> None:
        tenant, intruder = new_id(), new_id()
        config = AgentConfig(agent=AgentRecord(tenant_id=tenant, code="bot", name="Bot"))
        await store.save_agent_config(config)
        assert await store.load_agent_config(tenant_id=intruder, code="bot") is None
        assert await store.load_agent_config(tenant_id=intruder, agent_id=config.agent.id) is None
        assert await store.list_agent_configs(intruder) == []
        stolen = AgentConfig(agent=attrs.evolve(config.agent, tenant_id=intruder, name="Mine"))
        with pytest.raises(ConflictError):
            await store.save_agent_config(stolen)
        assert await store.load_agent_config(tenant_id=tenant, code="bot") == config

    async def test_list_tenants_names_every_owner(self, store: Store) -> None:
        assert await store.list_tenants() == []
        a = await new_conversation(store)
        b = await new_conversation(store)
        c = new_id()
        await store.save_agent_config(
            AgentConfig(agent=AgentRecord(tenant_id=c, code="x", name="X"))
        )
        assert await store.list_tenants() == sorted({a.tenant_id, b.tenant_id, c})
        await store.delete_session(a.tenant_id, a.id)
        assert await store.list_tenants() == sorted({b.tenant_id, c})
