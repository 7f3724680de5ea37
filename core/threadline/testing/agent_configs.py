"""Conformance: agent and provider configs."""

from __future__ import annotations

import attrs
import pytest

from threadline import AgentConfig, AgentRecord, ConflictError, ProviderRecord, Store
from threadline.ids import new_id


def make_config(tenant: str, code: str = "chat-assistant", **agent_fields: object) -> AgentConfig:
    provider = ProviderRecord(
        tenant_id=tenant,
        name="openai",
        type="openai",
        api_base="http://127.0.0.1:8000/v1",
        api_key_ref="env:OPENAI_API_KEY",
    )
    fields: dict[str, object] = {
        "name": "Chat assistant",
        "system_prompt": "You are helpful.",
        "model": "gpt-4o-mini",
        "temperature": 0.3,
        "max_tokens": 512,
        "window": 4,
        "response_format": {"type": "json_object"},
        "custom_params": {"top_p": 0.9},
        "provider_id": provider.id,
    }
    fields.update(agent_fields)
    agent = AgentRecord(tenant_id=tenant, code=code, **fields)  # type: ignore[arg-type]
    return AgentConfig(agent=agent, provider=provider)


@pytest.mark.asyncio
class AgentConfigConformance:
    """Agent configs: save/load by code and id, code unique per tenant, disabled flagged.

    Providers are also saved and listed on their own, those no agent uses included.
    """

    async def test_save_and_load(self, store: Store) -> None:
        tenant = new_id()
        config = make_config(tenant)
        assert await store.save_agent_config(config) == config
        assert await store.load_agent_config(tenant_id=tenant, code="chat-assistant") == config
        assert await store.load_agent_config(tenant_id=tenant, agent_id=config.agent.id) == config
        assert await store.load_agent_config(tenant_id=tenant, code="missing") is None

    async def test_agent_without_provider(self, store: Store) -> None:
        tenant = new_id()
        config = AgentConfig(agent=AgentRecord(tenant_id=tenant, code="plain", name="Plain"))
        await store.save_agent_config(config)
        assert await store.load_agent_config(tenant_id=tenant, code="plain") == config

    async def test_code_unique_per_tenant_not_globally(self, store: Store) -> None:
        tenant, other = new_id(), new_id()
        first = make_config(tenant)
        await store.save_agent_config(first)
        with pytest.raises(ConflictError):
            await store.save_agent_config(make_config(tenant))
        elsewhere = make_config(other)
        await store.save_agent_config(elsewhere)
        assert await store.load_agent_config(tenant_id=other, code="chat-assistant") == elsewhere
        assert await store.load_agent_config(tenant_id=tenant, code="chat-assistant") == first

    async def test_update_replaces_fields(self, store: Store) -> None:
        tenant = new_id()
        config = make_config(tenant)
        await store.save_agent_config(config)
        assert config.provider is not None
        changed = AgentConfig(
            agent=attrs.evolve(config.agent, model="gpt-4.1", version=2, window=None),
            provider=attrs.evolve(config.provider, api_base="http://127.0.0.1:9/v1"),
        )
        await store.save_agent_config(changed)
        assert await store.load_agent_config(tenant_id=tenant, code="chat-assistant") == changed

    async def test_disabled_agent_or_provider_is_flagged(self, store: Store) -> None:
        tenant = new_id()
        off = make_config(tenant, code="off", enabled=False)
        await store.save_agent_config(off)
        base = make_config(tenant, code="no-provider")
        assert base.provider is not None
        no_provider = AgentConfig(
            agent=base.agent, provider=attrs.evolve(base.provider, enabled=False)
        )
        await store.save_agent_config(no_provider)
        loaded_off = await store.load_agent_config(tenant_id=tenant, code="off")
        loaded_np = await store.load_agent_config(tenant_id=tenant, code="no-provider")
        assert loaded_off is not None and not loaded_off.agent.enabled and not loaded_off.enabled
        assert loaded_np is not None and loaded_np.provider is not None
        assert not loaded_np.provider.enabled and not loaded_np.enabled

    async def test_list_by_code(self, store: Store) -> None:
        tenant = new_id()
        for code in ("zeta", "alpha", "mid"):
            await store.save_agent_config(make_config(tenant, code=code))
        listed = await store.list_agent_configs(tenant)
        assert [c.agent.code for c in listed] == ["alpha", "mid", "zeta"]

    # -- providers on their own: saved and listed whether or not an agent uses them --

    async def test_save_and_list(self, store: Store) -> None:
        tenant = new_id()
        zeta = ProviderRecord(tenant_id=tenant, name="zeta", api_key_ref="env:ZETA_KEY")
        alpha = ProviderRecord(
            tenant_id=tenant, name="alpha", api_base="http://127.0.0.1:9/v1", metadata={"a": [1]}
        )
        twins = sorted(
            (ProviderRecord(tenant_id=tenant, name="mid") for _ in range(2)), key=lambda p: p.id
        )
        for provider in (zeta, twins[1], alpha, twins[0]):
            assert await store.save_provider(provider) == provider
        assert await store.list_providers(tenant) == [alpha, *twins, zeta]
        changed = attrs.evolve(zeta, enabled=False, api_base="http://127.0.0.1:8/v1")
        assert await store.save_provider(changed) == changed
        assert await store.list_providers(tenant) == [alpha, *twins, changed]
        assert await store.list_providers(new_id()) == []

    async def test_providers_are_per_tenant(self, store: Store) -> None:
        tenant, intruder = new_id(), new_id()
        provider = ProviderRecord(tenant_id=tenant, name="openai")
        await store.save_provider(provider)
        assert await store.list_providers(intruder) == []
        with pytest.raises(ConflictError):
            await store.save_provider(attrs.evolve(provider, tenant_id=intruder))
        assert await store.list_providers(tenant) == [provider]
        assert await store.list_providers(intruder) == []

    async def test_agent_providers_are_listed(self, store: Store) -> None:
        tenant = new_id()
        config = make_config(tenant)
        assert config.provider is not None
        await store.save_agent_config(config)
        assert await store.list_providers(tenant) == [config.provider]
        saved = ProviderRecord(tenant_id=tenant, name="standalone")
        await store.save_provider(saved)
        loaded = await store.load_agent_config(tenant_id=tenant, agent_id=config.agent.id)
        assert loaded == config

    async def test_unused_provider_stays_listed(self, store: Store) -> None:
        tenant = new_id()
        config = make_config(tenant)
        first = config.provider
        assert first is not None
        await store.save_agent_config(config)
        second = ProviderRecord(tenant_id=tenant, name="backup")
        moved = AgentConfig(
            agent=attrs.evolve(config.agent, provider_id=second.id), provider=second
        )
        await store.save_agent_config(moved)
        assert await store.load_agent_config(tenant_id=tenant, agent_id=config.agent.id) == moved
        assert await store.list_providers(tenant) == [second, first]
