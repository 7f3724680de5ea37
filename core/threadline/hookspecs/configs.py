"""The agent/provider config capability group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    from threadline.models import AgentConfig, ProviderRecord


@hookspec
def threadline_save_agent_config(config: AgentConfig) -> AgentConfig | None:
    """Insert or replace an agent and its provider (matched by id).

    Tier: config group (optional; a store with configs implements the group).

    :param config: the agent row and its provider row.
    :return: the stored config.
    :raises ConflictError: the agent code is taken by another agent of the tenant, or
        another tenant holds the agent or provider id (the neutral id-conflict message).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_load_agent_config(
    tenant_id: str, code: str | None, agent_id: str | None
) -> AgentConfig | None:
    """Load an agent and its provider by code or by id, disabled ones included.

    Tier: config group.

    :param tenant_id: the caller's tenant.
    :param code: the agent's code (unique per tenant), or ``None``.
    :param agent_id: the agent's id, or ``None``.
    :return: the config, or ``None`` if this tenant has no such agent.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_agent_configs(tenant_id: str) -> Sequence[AgentConfig] | None:
    """List a tenant's agents with their providers, ordered by code.

    Tier: config group.

    :param tenant_id: the caller's tenant.
    :return: the configs.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_save_provider(provider: ProviderRecord) -> ProviderRecord | None:
    """Insert or replace a provider (matched by id), whether or not an agent uses it.

    Tier: config group.

    :param provider: the provider row to store.
    :return: the stored provider.
    :raises ConflictError: another tenant's provider holds the id (the neutral
        id-conflict message, never naming the holder).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_providers(tenant_id: str) -> Sequence[ProviderRecord] | None:
    """List a tenant's providers, those no agent uses included, ordered by name, then id.

    Tier: config group.

    :param tenant_id: the caller's tenant.
    :return: the providers.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """
