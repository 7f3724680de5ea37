"""Conformance: another tenant's ids find nothing and cannot be written to."""

from __future__ import annotations

import re
from collections.abc import Awaitable

import attrs
import pytest

from threadline import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    ConflictError,
    NotFoundError,
    ProviderRecord,
    Session,
    Store,
)
from threadline.ids import new_id
from threadline.testing._support import Conversation, new_conversation


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

    async def test_id_conflicts_reveal_no_other_tenant(self, store: Store) -> None:
        """An id another tenant holds is refused exactly like one the caller holds itself.

        ``ConflictError`` with one neutral message per id kind (the id cannot be used, take
        a new one): the same text, ids aside, whichever tenant holds the row, and no word
        of who holds it. Within a tenant, retries stay idempotent.
        """
        owner = await new_conversation(store)
        held_message = await owner.add("user", "private")
        held_call = await store.save_api_call(
            ApiCall(tenant_id=owner.tenant_id, session_id=owner.id, model="m", status="success")
        )
        held_checkpoint = await store.create_checkpoint(
            Checkpoint(tenant_id=owner.tenant_id, session_id=owner.id, node_id="n")
        )
        provider = ProviderRecord(tenant_id=owner.tenant_id, name="p", type="openai")
        held_config = await store.save_agent_config(
            AgentConfig(
                agent=AgentRecord(tenant_id=owner.tenant_id, code="bot", name="Bot"),
                provider=provider,
            )
        )
        before = await _everything(store, owner)
        mine = await new_conversation(store)  # the caller's tenant: two sessions
        also_mine = await new_conversation(store, tenant_id=mine.tenant_id)
        secrets = (owner.tenant_id, owner.session.user_id or "")  # ids it did not pass

        async def refused(write: Awaitable[object]) -> str:
            with pytest.raises(ConflictError) as caught:
                await write
            text = str(caught.value)
            for word in ("taken", "exist", "tenant", "another", "belong", "owner"):
                assert word not in text.lower(), text
            for secret in secrets:
                assert secret not in text, text
            return _UUID.sub("<id>", text)

        # messages: the caller's own id in its other session, then another tenant's id
        own = await mine.add("user", "mine")
        retry = await store.save_message(attrs.evolve(own, seq=None))
        assert retry == own  # a retry within the tenant is idempotent
        same = await refused(store.save_message(also_mine.message("user", "x", id=own.id)))
        cross = await refused(store.save_message(mine.message("user", "x", id=held_message.id)))
        batch = await refused(
            store.save_messages([mine.message("user", "y"), mine.message("user", "z",
                                                                        id=held_message.id)])
        )  # fmt: skip
        assert same == cross == batch

        # API calls
        own_call = await store.save_api_call(
            ApiCall(tenant_id=mine.tenant_id, session_id=mine.id, model="m", status="success")
        )
        same = await refused(store.save_api_call(attrs.evolve(own_call, session_id=also_mine.id)))
        cross = await refused(
            store.save_api_call(
                attrs.evolve(held_call, tenant_id=mine.tenant_id, session_id=mine.id)
            )
        )
        assert same == cross

        # checkpoints: the caller's id reused with other content, then another tenant's id
        own_checkpoint = await store.create_checkpoint(
            Checkpoint(tenant_id=mine.tenant_id, session_id=mine.id, node_id="n")
        )
        same = await refused(
            store.create_checkpoint(
                Checkpoint(id=own_checkpoint.id, tenant_id=mine.tenant_id,
                           session_id=also_mine.id, node_id="n")
            )
        )  # fmt: skip
        cross = await refused(
            store.create_checkpoint(
                Checkpoint(id=held_checkpoint.id, tenant_id=mine.tenant_id,
                           session_id=mine.id, node_id="n")
            )
        )  # fmt: skip
        assert same == cross

        # sessions, agents and providers: each intruder gets the same neutral answer
        other = new_id()
        for kind, make in (
            ("session", lambda t: store.create_session(Session(id=owner.id, tenant_id=t))),
            (
                "agent",
                lambda t: store.save_agent_config(
                    AgentConfig(agent=attrs.evolve(held_config.agent, tenant_id=t,
                                                   provider_id=None))
                ),
            ),
            ("provider", lambda t: store.save_provider(attrs.evolve(provider, tenant_id=t))),
            (
                "provider",
                lambda t: store.save_agent_config(
                    AgentConfig(
                        agent=AgentRecord(tenant_id=t, code="mine", name="Mine"),
                        provider=attrs.evolve(provider, tenant_id=t),
                    )
                ),
            ),
        ):  # fmt: skip
            answers = {await refused(make(t)) for t in (mine.tenant_id, other)}
            assert len(answers) == 1, answers
            assert kind in answers.pop()

        assert await _everything(store, owner) == before
        assert await store.load_agent_config(tenant_id=mine.tenant_id, code="mine") is None
        assert await store.list_providers(mine.tenant_id) == []
        assert await store.list_providers(other) == []


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def _everything(store: Store, conv: Conversation) -> tuple[object, ...]:
    t, s = conv.tenant_id, conv.id
    return (
        await store.get_session(t, s),
        await store.get_messages(t, s),
        await store.list_api_calls(t, s),
        await store.list_checkpoints(t, session_id=s),
        await store.list_agent_configs(t),
        await store.list_providers(t),
    )
