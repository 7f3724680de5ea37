"""What an agent is (:class:`AgentSettings`) and where and as whom it persists
(:class:`PersistencePlugin`): both immutable once the agent is built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from threadline.ids import IdLike, check_id, optional_id
from threadline.models import Message, Role
from threadline.runtime.approvals import ApprovalPolicy
from threadline.runtime.compaction import Compaction
from threadline.runtime.providers import Provider
from threadline.runtime.tokens import TokenCounter
from threadline.runtime.tools import Tool
from threadline.store import Store

__all__ = ["DEFAULT_FLUSH_INTERVAL", "AgentSettings", "PersistencePlugin"]

DEFAULT_FLUSH_INTERVAL = 1.0


def _tenant_id(value: object) -> str:
    return check_id(value, "tenant_id")


def _user_id(value: object) -> str | None:
    return optional_id(value, "user_id")


def _agent_id(value: object) -> str | None:
    return optional_id(value, "agent_id")


def _session_id(value: object) -> str | None:
    return optional_id(value, "session_id")


@attrs.frozen
class PersistencePlugin:
    """Where and as whom an agent persists: store, tenant, user, agent and default session."""

    store: Store
    tenant_id: str = attrs.field(converter=_tenant_id)
    user_id: str | None = attrs.field(default=None, converter=_user_id)
    agent_id: str | None = attrs.field(default=None, converter=_agent_id)
    session_id: str | None = attrs.field(default=None, converter=_session_id)

    @classmethod
    def from_store(
        cls,
        store: Store,
        *,
        tenant_id: IdLike,
        user_id: IdLike | None = None,
        agent_id: IdLike | None = None,
        session_id: IdLike | None = None,
    ) -> PersistencePlugin:
        """Persist to ``store`` as this tenant, user and agent (MoFA's ``PersistencePlugin``)."""
        return cls(store, tenant_id, user_id, agent_id, session_id)

    def message(self, session_id: str, role: Role, content: str = "", **fields: Any) -> Message:
        """A new message of ``session_id`` written as this tenant, user and agent."""
        return Message(
            session_id=session_id,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            role=role,
            content=content,
            **fields,
        )


@attrs.frozen
class AgentSettings:
    """What an agent is: immutable once built."""

    name: str | None
    system_prompt: str | None
    provider: Provider
    model: str
    window: int | None
    temperature: float | None
    max_tokens: int | None
    response_format: Mapping[str, Any] | None
    extra: Mapping[str, Any]
    tools: Mapping[str, Tool]
    flush_interval: float
    approval: ApprovalPolicy = attrs.field(factory=ApprovalPolicy)
    window_tokens: int | None = None
    """Send only the newest whole rounds that fit this many tokens (the system prompt kept)."""
    token_counter: TokenCounter | None = None
    compaction: Compaction | None = None
