"""The config group: agents (unique code per tenant) and the providers they use."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs

from threadline.errors import ConflictError
from threadline.models import AgentConfig, ProviderRecord, trusted
from threadline.storekit.records import id_conflict
from threadline.storekit.sync import SyncStore
from threadline_sqlite.rows import (
    AGENT_COLUMNS,
    PROVIDER_COLUMNS,
    agent_from_row,
    agent_row,
    provider_from_row,
    provider_row,
)
from threadline_sqlite.sql import marks, write
from threadline_sqlite.worker import connection

__all__ = ["ConfigHooks"]


def _upsert(table: str, columns: str) -> str:
    names = [n.strip() for n in columns.split(",")]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name != "id")
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks(len(names))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


_AGENT_UPSERT = _upsert("entity_agent", AGENT_COLUMNS)
_PROVIDER_UPSERT = _upsert("entity_provider", PROVIDER_COLUMNS)
_AGENT_OWNER = "SELECT tenant_id FROM entity_agent WHERE id = ?"
_CODE_TAKEN = "SELECT 1 FROM entity_agent WHERE tenant_id = ? AND code = ? AND id != ?"
_PROVIDER_OWNER = "SELECT tenant_id FROM entity_provider WHERE id = ?"
_AGENT_BY_ID = f"SELECT {AGENT_COLUMNS} FROM entity_agent WHERE id = ? AND tenant_id = ?"
_AGENT_BY_CODE = f"SELECT {AGENT_COLUMNS} FROM entity_agent WHERE tenant_id = ? AND code = ?"
_AGENTS = f"SELECT {AGENT_COLUMNS} FROM entity_agent WHERE tenant_id = ? ORDER BY code, id"
_PROVIDER_OF = f"SELECT {PROVIDER_COLUMNS} FROM entity_provider WHERE id = ? AND tenant_id = ?"
_PROVIDERS = f"SELECT {PROVIDER_COLUMNS} FROM entity_provider WHERE tenant_id = ?"


def _check_owner(db: sqlite3.Connection, sql: str, kind: str, record_id: str, tenant: str) -> None:
    """An id another tenant holds is refused, with the neutral answer."""
    owner = db.execute(sql, (record_id,)).fetchone()
    if owner is not None and owner[0] != tenant:
        raise id_conflict(kind, record_id)


def _config(db: sqlite3.Connection, row: Sequence[Any]) -> AgentConfig:
    agent = agent_from_row(row)
    provider: ProviderRecord | None = None
    if agent.provider_id is not None:
        found = db.execute(_PROVIDER_OF, (agent.provider_id, agent.tenant_id)).fetchone()
        provider = None if found is None else provider_from_row(found)
    return trusted(AgentConfig, agent=agent, provider=provider)


class ConfigHooks(SyncStore):
    """Agent configs and providers, scoped by tenant."""

    def save_agent_config(self, config: AgentConfig) -> AgentConfig:
        agent, provider = config.agent, config.provider
        if provider is not None and agent.provider_id != provider.id:
            agent = attrs.evolve(agent, provider_id=provider.id)
        agent_values = agent_row(agent)
        provider_values = None if provider is None else provider_row(provider)
        with write() as db:
            _check_owner(db, _AGENT_OWNER, "agent", agent.id, agent.tenant_id)
            if db.execute(_CODE_TAKEN, (agent.tenant_id, agent.code, agent.id)).fetchone():
                raise ConflictError(f"agent code {agent.code!r} is taken in this tenant")
            if provider is not None and provider_values is not None:
                _check_owner(db, _PROVIDER_OWNER, "provider", provider.id, provider.tenant_id)
                db.execute(_PROVIDER_UPSERT, provider_values)
            db.execute(_AGENT_UPSERT, agent_values)
        return trusted(
            AgentConfig,
            agent=agent_from_row(agent_values),
            provider=None if provider_values is None else provider_from_row(provider_values),
        )

    def load_agent_config(
        self, tenant_id: str, code: str | None, agent_id: str | None
    ) -> AgentConfig | None:
        db = connection()
        if agent_id is not None:
            row = db.execute(_AGENT_BY_ID, (agent_id, tenant_id)).fetchone()
        else:
            row = db.execute(_AGENT_BY_CODE, (tenant_id, code)).fetchone()
        return None if row is None else _config(db, row)

    def list_agent_configs(self, tenant_id: str) -> list[AgentConfig]:
        db = connection()
        providers = {p.id: p for p in map(provider_from_row, db.execute(_PROVIDERS, (tenant_id,)))}
        configs = []
        for agent in map(agent_from_row, db.execute(_AGENTS, (tenant_id,)).fetchall()):
            provider = providers.get(agent.provider_id) if agent.provider_id else None
            configs.append(trusted(AgentConfig, agent=agent, provider=provider))
        return configs

    def save_provider(self, provider: ProviderRecord) -> ProviderRecord:
        values = provider_row(provider)
        with write() as db:
            _check_owner(db, _PROVIDER_OWNER, "provider", provider.id, provider.tenant_id)
            db.execute(_PROVIDER_UPSERT, values)
        return provider_from_row(values)

    def list_providers(self, tenant_id: str) -> list[ProviderRecord]:
        rows = connection().execute(_PROVIDERS + " ORDER BY name, id", (tenant_id,))
        return [provider_from_row(row) for row in rows]
