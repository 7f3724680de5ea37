"""Agent and provider configs on files: the config group of the store contract.

An agent row per encoded ``code`` (``agents/<code>.json``), a provider row per id, and
global id claims (``ids/agents``, ``ids/providers``) so that another tenant's id is a
conflict. Writers of a tenant's configs hold ``agents.lock``; the claims are written
before the rows (a claim without its row counts as absent), and a renamed agent's old
file goes last, so a crash part way leaves the agent readable by id.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import attrs

from threadline.errors import ConflictError
from threadline.models import AgentConfig, AgentRecord, ProviderRecord
from threadline.storekit.records import id_conflict
from threadline_fsspec import layout
from threadline_fsspec.files import StoreFiles
from threadline_fsspec.records import decode, encode

__all__ = ["ConfigFiles"]


class ConfigFiles(StoreFiles):
    """The agent/provider config hooks of :class:`threadline_fsspec.store.FsspecStore`."""

    def _claim_owner(self, kind: str, record_id: str) -> dict[str, Any] | None:
        entry = self._hint(layout.id_file(kind, record_id))
        return (
            entry if isinstance(entry, dict) and isinstance(entry.get("tenant_id"), str) else None
        )

    def _agent_at(self, tenant_id: str, code: str) -> AgentRecord | None:
        doc = self._json(layout.agent_file(tenant_id, code))
        if not isinstance(doc, dict) or doc.get("code") != code:
            return None
        return AgentRecord.from_dict(doc)

    def _agent_by_id(self, tenant_id: str, agent_id: str) -> AgentRecord | None:
        entry = self._claim_owner("agents", agent_id)
        if entry is None or entry["tenant_id"] != tenant_id:
            return None
        code = entry.get("code")
        agent = self._agent_at(tenant_id, code) if isinstance(code, str) else None
        if agent is not None and agent.id == agent_id:
            return agent
        for candidate in self._agents(tenant_id):  # the index lags a rename cut short
            if candidate.id == agent_id:
                return candidate
        return None

    def _agents(self, tenant_id: str) -> list[AgentRecord]:
        folder = layout.agents_dir(tenant_id)
        out = []
        for name in self.backend.listdir(folder):
            if name.endswith(".json"):
                doc = self._json(f"{folder}/{name}")
                if isinstance(doc, dict):
                    out.append(AgentRecord.from_dict(doc))
        return out

    def _provider(self, tenant_id: str, provider_id: str) -> ProviderRecord | None:
        doc = self._json(layout.provider_file(tenant_id, provider_id))
        return ProviderRecord.from_dict(doc) if isinstance(doc, dict) else None

    def _config(self, agent: AgentRecord) -> AgentConfig:
        provider = self._provider(agent.tenant_id, agent.provider_id) if agent.provider_id else None
        return AgentConfig(agent=agent, provider=provider)

    def save_agent_config(self, config: AgentConfig) -> AgentConfig:
        agent, provider = config.agent, config.provider
        tenant_id = agent.tenant_id
        if provider is not None:
            agent = attrs.evolve(agent, provider_id=provider.id)
        agent_data = encode(agent.to_dict(), "agent")
        provider_data = None if provider is None else encode(provider.to_dict(), "provider")
        agent_path = layout.agent_file(tenant_id, agent.code)
        lock = f"{layout.tenant_dir(tenant_id)}/agents.lock"
        with ExitStack() as stack:
            stack.enter_context(self.backend.lock(lock, self.lock_timeout, create_parent=True))
            claim = self._claim_owner("agents", agent.id)
            if claim is not None and claim["tenant_id"] != tenant_id:
                if self._agent_by_id(claim["tenant_id"], agent.id) is not None:
                    raise id_conflict("agent", agent.id)
                claim = None
            holder = self._agent_at(tenant_id, agent.code)
            if holder is not None and holder.id != agent.id:
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
            if provider is not None:
                owner = self._claim_owner("providers", provider.id)
                if (
                    owner is not None
                    and owner["tenant_id"] != tenant_id
                    and self._provider(owner["tenant_id"], provider.id) is not None
                ):
                    raise id_conflict("provider", provider.id)
            old_code = claim.get("code") if claim is not None else None
            self.backend.write(
                layout.id_file("agents", agent.id),
                encode({"tenant_id": tenant_id, "code": agent.code}, "index"),
            )
            if provider is not None and provider_data is not None:
                self.backend.write(
                    layout.id_file("providers", provider.id),
                    encode({"tenant_id": tenant_id}, "index"),
                )
                self.backend.write(layout.provider_file(tenant_id, provider.id), provider_data)
            self.backend.write(agent_path, agent_data)
            if isinstance(old_code, str) and old_code != agent.code:  # renamed: drop the old file
                previous = self._agent_at(tenant_id, old_code)
                if previous is not None and previous.id == agent.id:
                    self.backend.delete(layout.agent_file(tenant_id, old_code))
        return AgentConfig(
            agent=AgentRecord.from_dict(decode(agent_data, "agent")),
            provider=None
            if provider_data is None
            else ProviderRecord.from_dict(decode(provider_data, "provider")),
        )

    def load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        if agent_id is not None:
            agent = self._agent_by_id(tenant_id, agent_id)
        elif code is not None:
            agent = self._agent_at(tenant_id, code)
        else:
            return None
        return None if agent is None else self._config(agent)

    def list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        agents = sorted(self._agents(tenant_id), key=lambda a: (a.code, a.id))
        return [self._config(a) for a in agents]

    def save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        tenant_id = provider.tenant_id
        data = encode(provider.to_dict(), "provider")
        path = layout.provider_file(tenant_id, provider.id)
        lock = f"{layout.tenant_dir(tenant_id)}/agents.lock"
        with self.backend.lock(lock, self.lock_timeout, create_parent=True):
            owner = self._claim_owner("providers", provider.id)
            if (
                owner is not None
                and owner["tenant_id"] != tenant_id
                and self._provider(owner["tenant_id"], provider.id) is not None
            ):
                raise id_conflict("provider", provider.id)
            self.backend.write(
                layout.id_file("providers", provider.id), encode({"tenant_id": tenant_id}, "index")
            )
            self.backend.write(path, data)
        return ProviderRecord.from_dict(decode(data, "provider"))

    def list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        folder = f"{layout.tenant_dir(tenant_id)}/providers"
        out = []
        for name in self.backend.listdir(folder):
            if name.endswith(".json"):
                doc = self._json(f"{folder}/{name}")
                if isinstance(doc, dict):
                    out.append(ProviderRecord.from_dict(doc))
        return sorted(out, key=lambda p: (p.name, p.id))
