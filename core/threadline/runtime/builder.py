"""Building an :class:`~threadline.runtime.agent.Agent`: :class:`AgentBuilder` and
:func:`quick_agent`, the builder with defaults for one local user."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from threadline.blocking.loop import run
from threadline.errors import ConfigurationError, ValidationError
from threadline.ids import IdLike, check_id
from threadline.models import AgentConfig, ToolCall
from threadline.runtime.agent import Agent
from threadline.runtime.approvals import ApprovalPolicy
from threadline.runtime.blocking import BlockingAgent
from threadline.runtime.compaction import Compaction, Summarizer
from threadline.runtime.locations import (
    LOCAL_AGENT_ID,
    LOCAL_TENANT_ID,
    LOCAL_USER_ID,
    default_store_url,
)
from threadline.runtime.providers import Provider, resolve_provider
from threadline.runtime.settings import DEFAULT_FLUSH_INTERVAL, AgentSettings, PersistencePlugin
from threadline.runtime.tokens import TokenCounter
from threadline.runtime.tools import Tool, as_tools
from threadline.store import Store, connect
from threadline.store.blocking import BlockingStore
from threadline.storekit.window import check_rounds, check_tokens

__all__ = ["AgentBuilder", "quick_agent"]


class AgentBuilder:
    """Configures and builds an :class:`Agent` (MoFA's ``LLMAgentBuilder``)."""

    def __init__(self, system_prompt: str | None = None) -> None:
        self._system_prompt = system_prompt
        self._store: Store | BlockingStore | str | None = None
        self._default_store = False
        self._provider: Provider | str | None = None
        self._provider_options: dict[str, Any] = {}
        self._model: str | None = None
        self._session_id: str | None = None
        self._name: str | None = None
        self._window: int | None = None
        self._tools: list[Callable[..., Any] | Tool] = []
        self._persistence: PersistencePlugin | None = None
        self._ids: dict[str, str | None] = {}
        self._temperature: float | None = None
        self._max_tokens: int | None = None
        self._response_format: Mapping[str, Any] | None = None
        self._extra: dict[str, Any] = {}
        self._flush_interval = DEFAULT_FLUSH_INTERVAL
        self._approval = ApprovalPolicy()
        self._window_tokens: int | None = None
        self._token_counter: TokenCounter | None = None
        self._compaction: Compaction | None = None

    # -- setters ------------------------------------------------------------------------

    def with_store(self, store: Store | BlockingStore | str) -> AgentBuilder:
        """Persist to this store (or store URL; a blocking store for :meth:`build_sync`)."""
        self._store = store
        return self

    def with_provider(self, provider: Provider | str, **options: Any) -> AgentBuilder:
        """Use this provider, or the one registered under this name built with ``options``."""
        self._provider, self._provider_options = provider, options
        return self

    def with_model(self, model: str) -> AgentBuilder:
        self._model = model
        return self

    def with_system_prompt(self, prompt: str) -> AgentBuilder:
        self._system_prompt = prompt
        return self

    def with_session_id(self, session_id: IdLike) -> AgentBuilder:
        """The default session of ``chat_stream`` (each call may pass another)."""
        self._session_id = check_id(session_id, "session_id")
        return self

    def with_name(self, name: str) -> AgentBuilder:
        self._name = name
        return self

    def with_sliding_window(self, rounds: int | None) -> AgentBuilder:
        """Send the system prompt and only the last ``rounds`` rounds to the model."""
        self._window = check_rounds(rounds)
        return self

    def with_window_tokens(
        self, max_tokens: int | None, counter: TokenCounter | None = None
    ) -> AgentBuilder:
        """Send the system prompt and the newest whole rounds that fit ``max_tokens``,
        counted by ``counter`` (text -> tokens; default: characters / 4, rounded up)."""
        self._window_tokens = check_tokens(max_tokens)
        self._token_counter = counter or self._token_counter
        return self

    def with_compaction(
        self,
        *,
        max_tokens: int,
        keep_rounds: int = 2,
        summarizer: Summarizer | None = None,
        counter: TokenCounter | None = None,
    ) -> AgentBuilder:
        """Over ``max_tokens``, summarize the rounds before the last ``keep_rounds`` (by the
        model, or ``summarizer``) into a stored summary sent in their place."""
        self._compaction = Compaction(max_tokens, keep_rounds, summarizer)
        self._token_counter = counter or self._token_counter
        return self

    def with_tools(self, tools: Iterable[Callable[..., Any] | Tool]) -> AgentBuilder:
        """Plain callables (or :class:`Tool`) the model may call."""
        self._tools.extend(tools)
        return self

    def with_approval(
        self,
        tools: Iterable[str | Callable[..., Any] | Tool] = (),
        *,
        policy: Callable[[ToolCall], Any] | None = None,
    ) -> AgentBuilder:
        """Hold calls of these tools (names or functions), or calls ``policy(call)`` accepts,
        for a person's approval (tools marked ``@requires_approval`` are held anyway)."""
        self._approval = ApprovalPolicy.of(tools, policy)
        return self

    def with_persistence_plugin(self, persistence: PersistencePlugin) -> AgentBuilder:
        """Persist with this store, tenant, user, agent and session."""
        self._persistence = persistence
        return self

    def with_tenant_id(self, tenant_id: IdLike) -> AgentBuilder:
        self._ids["tenant_id"] = check_id(tenant_id, "tenant_id")
        return self

    def with_user_id(self, user_id: IdLike) -> AgentBuilder:
        self._ids["user_id"] = check_id(user_id, "user_id")
        return self

    def with_agent_id(self, agent_id: IdLike) -> AgentBuilder:
        self._ids["agent_id"] = check_id(agent_id, "agent_id")
        return self

    def with_temperature(self, temperature: float | None) -> AgentBuilder:
        self._temperature = temperature
        return self

    def with_max_tokens(self, max_tokens: int | None) -> AgentBuilder:
        self._max_tokens = max_tokens
        return self

    def with_response_format(self, response_format: Mapping[str, Any] | None) -> AgentBuilder:
        self._response_format = response_format
        return self

    def with_params(self, **params: Any) -> AgentBuilder:
        """Extra request parameters passed to the provider as they are (``top_p``, ``seed``)."""
        self._extra.update(params)
        return self

    def with_flush_interval(self, seconds: float) -> AgentBuilder:
        """How often a streaming reply is rewritten to the store (default 1 s)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValidationError(f"flush interval must be a number >= 0, got {seconds!r}")
        self._flush_interval = float(seconds)
        return self

    @classmethod
    def from_agent_config(cls, config: AgentConfig) -> AgentBuilder:
        """A builder with every field of an agent row and its provider row applied.

        Raises :class:`ConfigurationError` when the agent or its provider is disabled.
        """
        agent, provider = config.agent, config.provider
        if not agent.enabled:
            raise ConfigurationError(f"agent {agent.code!r} is disabled")
        if provider is not None and not provider.enabled:
            raise ConfigurationError(
                f"provider {provider.name!r} of agent {agent.code!r} is disabled"
            )
        builder = cls(agent.system_prompt).with_name(agent.name)
        builder._ids = {"tenant_id": agent.tenant_id, "agent_id": agent.id}
        builder._window = agent.window
        builder._temperature = agent.temperature
        builder._max_tokens = agent.max_tokens
        builder._response_format = agent.response_format
        builder._extra = dict(agent.custom_params)
        if agent.model:
            builder._model = agent.model
        if provider is not None:
            options: dict[str, Any] = {}
            if provider.api_base:
                options["base_url"] = provider.api_base
            if provider.api_key_ref:
                options["api_key_ref"] = provider.api_key_ref
            builder._provider, builder._provider_options = provider.type, options
        return builder

    # -- build --------------------------------------------------------------------------

    def _resolve_provider(self) -> Provider:
        return resolve_provider(self._provider, self._provider_options, self._model)

    async def build(self) -> Agent:
        """Open the store (if given as a URL) and provider, and return the agent."""
        if isinstance(self._store, BlockingStore):
            raise ConfigurationError(
                "a blocking store (connect_sync) serves build_sync(); "
                "for build() pass the store of `await threadline.connect(...)`"
            )
        return await self._build(self._store)

    def build_sync(self) -> BlockingAgent:
        """The agent for blocking code (scripts, notebooks, Flask, Django): its ``chat``
        returns the reply, ``chat_stream`` is an iterator (:mod:`threadline.runtime.blocking`)."""
        store = self._store
        if isinstance(store, BlockingStore):
            store = store.target
        return BlockingAgent(run(self._build(store)))

    async def _build(self, store: Store | str | None) -> Agent:
        provider = self._resolve_provider()
        model = self._model or os.environ.get("OPENAI_MODEL") or provider.default_model
        if not model:
            raise ConfigurationError("no model: call with_model(...) or set OPENAI_MODEL")
        owns_store = False
        persistence = self._persistence
        if persistence is None:
            if store is None:
                if not self._default_store:
                    raise ConfigurationError(
                        "no store: call with_store(...) or with_persistence_plugin(...)"
                    )
                store = default_store_url()
            if isinstance(store, str):
                store = await connect(store)
                owns_store = True
            tenant = self._ids.get("tenant_id")
            if tenant is None:
                raise ConfigurationError(
                    "no tenant: call with_tenant_id(...) or use a PersistencePlugin"
                )
            persistence = PersistencePlugin.from_store(
                store,
                tenant_id=tenant,
                user_id=self._ids.get("user_id"),
                agent_id=self._ids.get("agent_id"),
                session_id=self._session_id,
            )
        elif self._session_id is not None:
            persistence = attrs.evolve(persistence, session_id=self._session_id)
        settings = AgentSettings(
            name=self._name,
            system_prompt=self._system_prompt,
            provider=provider,
            model=model,
            window=self._window,
            temperature=self._temperature,
            max_tokens=self._max_tokens,
            response_format=self._response_format,
            extra=self._extra,
            tools=as_tools(self._tools),
            flush_interval=self._flush_interval,
            approval=self._approval,
            window_tokens=self._window_tokens,
            token_counter=self._token_counter,
            compaction=self._compaction,
        )
        return Agent(settings, persistence, owns_store=owns_store)


def quick_agent(
    system_prompt: str, store: Store | BlockingStore | str | None = None
) -> AgentBuilder:
    """A builder with sensible defaults for a local, single-user agent.

    The store is ``store``, else ``THREADLINE_STORE`` or ``DATABASE_URL``, else SQLite in the
    user data directory; tenant, user and agent ids come from ``TENANT_ID``, ``USER_ID``,
    ``AGENT_ID`` when set, else the fixed ``LOCAL_*`` ids; the provider is ``openai`` when
    ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set, else ``echo``.
    """
    builder = AgentBuilder(system_prompt)
    if store is not None:
        builder.with_store(store)
    builder._default_store = True
    builder.with_tenant_id(os.environ.get("TENANT_ID") or LOCAL_TENANT_ID)
    builder.with_user_id(os.environ.get("USER_ID") or LOCAL_USER_ID)
    builder.with_agent_id(os.environ.get("AGENT_ID") or LOCAL_AGENT_ID)
    return builder
