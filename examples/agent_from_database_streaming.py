"""An agent built from database rows (MoFA's agent_from_database_streaming).

The agent's configuration (system prompt, model, sliding window, sampling) and its
provider (type, API base, and the API key as a *reference* such as
``env:OPENAI_API_KEY``, never the key itself) live in the store as an ``AgentConfig``
with code ``chat-assistant``. This example saves that config if it is absent, loads it
back by code, builds the agent from it with a ``PersistencePlugin`` naming the tenant,
user and session, and streams a couple of turns, each persisted as it streams.

    python examples/agent_from_database_streaming.py --store sqlite:///threadline_demo.db
    python examples/agent_from_database_streaming.py --new   # start the session over

Offline the provider row is of type ``echo``; with ``OPENAI_API_KEY`` or
``OPENAI_BASE_URL`` set it is ``openai`` (api_base from ``OPENAI_BASE_URL``; model from
``OPENAI_MODEL``, else gpt-4o-mini).
"""

from __future__ import annotations

import argparse
import asyncio
import os

import threadline
from threadline import AgentConfig, AgentRecord, ProviderRecord

CODE = "chat-assistant"
DEMO_TENANT = "019bda9f-0000-7000-8000-000000000001"
DEMO_USER = "019bda9f-0000-7000-8000-000000000002"
SESSION_ID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d6"
DEFAULT_STORE = "sqlite:///threadline_demo.db"
QUESTIONS = ["Hello! Who are you?", "Summarise our conversation in one sentence."]


def wanted_provider(tenant_id: str, provider_id: str) -> ProviderRecord:
    """The provider row this environment asks for: ``openai`` if configured, else ``echo``."""
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        return ProviderRecord(
            id=provider_id,
            tenant_id=tenant_id,
            name="openai",
            type="openai",
            api_base=os.environ.get("OPENAI_BASE_URL") or None,
            # a reference, resolved when the agent is built: the key never reaches the store
            api_key_ref="env:OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None,
        )
    return ProviderRecord(id=provider_id, tenant_id=tenant_id, name="local-echo", type="echo")


async def ensure_config(store: threadline.Store, tenant_id: str) -> None:
    """Save the ``chat-assistant`` config unless the store has it, for this provider type."""
    stored = await store.load_agent_config(tenant_id=tenant_id, code=CODE)
    stored_provider = stored.provider if stored is not None else None
    provider = wanted_provider(
        tenant_id, stored_provider.id if stored_provider is not None else threadline.new_id()
    )
    if stored_provider is not None:
        have = (stored_provider.type, stored_provider.api_base, stored_provider.api_key_ref)
        if have == (provider.type, provider.api_base, provider.api_key_ref):
            print(f"agent config {CODE!r} found in the store")
            return
    agent = AgentRecord(
        id=stored.agent.id if stored is not None else threadline.new_id(),
        tenant_id=tenant_id,
        code=CODE,
        name="Chat assistant",
        system_prompt="You are a friendly assistant loaded from the database. Be brief.",
        model=(os.environ.get("OPENAI_MODEL") or "gpt-4o-mini")
        if provider.type == "openai"
        else None,
        temperature=0.7,
        max_tokens=512,
        window=2,
        provider_id=provider.id,
    )
    await store.save_agent_config(AgentConfig(agent=agent, provider=provider))
    print(f"agent config {CODE!r} {'updated' if stored else 'saved'} (provider {provider.type})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--store",
        default=os.environ.get("THREADLINE_STORE", DEFAULT_STORE),
        help=f"store URL (default: THREADLINE_STORE, else {DEFAULT_STORE})",
    )
    parser.add_argument("--new", action="store_true", help="start the demo session over")
    args = parser.parse_args()
    tenant = os.environ.get("TENANT_ID", DEMO_TENANT)
    user = os.environ.get("USER_ID", DEMO_USER)

    store = await threadline.connect(args.store)
    try:
        await ensure_config(store, tenant)
        config = await store.load_agent_config(tenant_id=tenant, code=CODE)
        if config is None:
            raise SystemExit(f"no agent config {CODE!r} in {store.url}")
        a, p = config.agent, config.provider
        print(
            f"loaded agent config {a.code!r} (v{a.version}): name={a.name!r}, "
            f"model={a.model or 'provider default'}, window={a.window} rounds, "
            f"temperature={a.temperature}"
        )
        if p is not None:
            print(
                f"  provider {p.name!r}: type={p.type}, api_base={p.api_base}, key={p.api_key_ref}"
            )

        if args.new:
            await store.delete_session(tenant, SESSION_ID)
        persistence = threadline.PersistencePlugin.from_store(
            store, user_id=user, tenant_id=tenant, agent_id=config.agent.id, session_id=SESSION_ID
        )
        agent = await (
            threadline.AgentBuilder.from_agent_config(config)
            .with_persistence_plugin(persistence)
            .build()
        )
        try:
            await agent.open_session()
            earlier = await agent.history()
            if len(earlier) > 1:
                print(f"resumed session {agent.session_id}: {len(earlier)} messages stored")
            else:
                print(f"new session {agent.session_id}")
            for question in QUESTIONS:
                print(f"user> {question}")
                print("assistant> ", end="", flush=True)
                async for text in agent.chat_stream(question):
                    print(text, end="", flush=True)
                print()
            history = await agent.history()
            calls = await store.list_api_calls(tenant, agent.session_id)
            print(
                f"session {agent.session_id} now holds {len(history)} messages "
                f"(agent_id {history[-1].agent_id}); {len(calls)} API calls, "
                f"last {calls[-1].status} with {calls[-1].total_tokens} tokens"
            )
        finally:
            await agent.close()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
