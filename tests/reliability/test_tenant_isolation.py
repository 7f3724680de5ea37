"""Tenant isolation: tenant B, knowing every id of tenant A, reaches nothing of A's.

For every store and every read and write of the public API (the :class:`Store` methods,
:class:`PersistenceContext`, :class:`Agent`, the graph ``Persistency`` handle and its
rollbacks, and the CLI commands ``sessions``, ``agents``, ``chat`` and ``checkpoints``),
a caller acting as tenant B finds nothing of A's: no session, message, API call,
checkpoint or agent config, and cannot change, roll back or delete any of them.

Tenant A's world (an agent config with its provider, a graph run stopped half way with
its checkpoints, a hand-written conversation with a tool call and a reply left
``streaming``, an API call, and a second session written by a chat agent) is built
once per store. Each case then runs one operation as a fresh tenant B and checks:

* the operation returned nothing or raised a typed error (never a driver exception);
* everything A can read through the public API is byte-for-byte what it was;
* for operations that must not write at all, the storage below the API is unchanged
  (rows, files and objects; see :meth:`StoreHandle.snapshot`);
* nothing B was shown (return values, CLI output) carries A's private text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

import threadline
from threadline import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    ConflictError,
    Message,
    NotFoundError,
    PersistenceContext,
    ProviderRecord,
    Session,
    ThreadlineError,
    ToolCall,
)
from threadline.cli import cli
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.ids import new_id
from threadline.runtime.agent import AgentBuilder, PersistencePlugin
from threadline.runtime.providers import EchoProvider

from ._record import record
from ._stores import KINDS, StoreHandle, describe_change, open_store, tenant_view

pytestmark = pytest.mark.asyncio(loop_scope="module")

MARK = "A-PRIVATE-7c1f"
"""Text only tenant A's data holds: B must never be shown it."""
REFUSED = (NotFoundError, ConflictError)


class Crash(Exception):
    """Stops tenant A's graph run half way, leaving a resumable checkpoint."""


def pipeline(crash_at: str | None = None) -> Strategy:
    """plan -> write -> review -> finish, as tenant A's graph agent runs it."""
    s = Strategy("isolation-pipeline")

    @s.node("plan")
    async def plan(ctx: GraphContext, topic: str) -> str:
        ctx.append("user", topic)
        ctx.state["topic"] = topic
        return topic.upper()

    @s.node("write")
    async def write(ctx: GraphContext, heading: str) -> str:
        ctx.append("assistant", f"draft of {heading}")
        ctx.state["drafts"] = 1
        return heading + " (draft)"

    @s.node("review")
    async def review(ctx: GraphContext, draft: str) -> str:
        if crash_at == "review":
            raise Crash(draft)
        ctx.append("assistant", f"reviewed {draft}")
        return draft + " (reviewed)"

    s.edge(s.start, plan).edge(plan, write).edge(write, review).edge(review, s.finish)
    return s


@attrs.define
class World:
    """Tenant A's data on one store, and the ids B is assumed to know."""

    handle: StoreHandle
    directory: Path
    tenant: str
    user: str
    config: AgentConfig
    session: Session
    """The graph run's session, with a conversation written into it as well."""
    chat_session_id: str
    messages: list[Message]
    streaming: Message
    api_call: ApiCall
    checkpoints: list[Checkpoint]

    @property
    def store(self) -> threadline.Store:
        return self.handle.store

    @property
    def sid(self) -> str:
        return self.session.id

    @property
    def checkpoint(self) -> Checkpoint:
        """A's latest checkpoint (not a tombstone: the run stopped half way)."""
        return self.checkpoints[-1]

    async def view(self) -> bytes:
        return await tenant_view(
            self.store,
            self.tenant,
            extra_session_ids=[self.sid, self.chat_session_id],
            extra_checkpoint_ids=[c.id for c in self.checkpoints],
        )


async def build_world(handle: StoreHandle, directory: Path) -> World:
    store = handle.store
    tenant, user = new_id(), new_id()
    provider = ProviderRecord(
        tenant_id=tenant,
        name="openai",
        api_base="http://127.0.0.1:9/v1",
        api_key_ref="env:TENANT_A_KEY",
        metadata={"note": MARK},
    )
    config = AgentConfig(
        agent=AgentRecord(
            tenant_id=tenant,
            code="support-bot",
            name=f"{MARK} bot",
            system_prompt=f"{MARK} system prompt",
            model="gpt-a",
            provider_id=provider.id,
            custom_params={"private": MARK},
        ),
        provider=provider,
    )
    await store.save_agent_config(config)

    graph = GraphAgent(
        pipeline(crash_at="review"),
        provider="echo",
        tenant_id=tenant,
        user_id=user,
        agent_id=config.agent.id,
        features=[Persistency(store)],
    )
    sid = new_id()
    with pytest.raises(Crash):
        await graph.run(f"{MARK} topic", session_id=sid)
    await graph.close()
    checkpoints = await store.list_checkpoints(tenant, session_id=sid)
    assert [c.node_id for c in checkpoints] == ["write", "review"]

    ctx = await PersistenceContext.open(
        store, tenant_id=tenant, user_id=user, agent_id=config.agent.id, session_id=sid
    )
    await ctx.save_system_message(f"{MARK} be helpful")
    await ctx.save_user_message(f"{MARK} question", metadata={"private": MARK})
    call = ToolCall(id="call-a-1", name="lookup", arguments={"q": MARK})
    await ctx.save_assistant_message("", tool_calls=[call])
    await ctx.save_tool_message("call-a-1", f"{MARK} result", name="lookup")
    await ctx.save_assistant_message(f"{MARK} answer")
    streaming_id = await ctx.save_assistant_message(f"{MARK} partial", status="streaming")
    messages = await store.get_messages(tenant, sid)
    streaming = next(m for m in messages if m.id == streaming_id)
    api_call = await store.save_api_call(
        ApiCall(
            tenant_id=tenant,
            session_id=sid,
            user_id=user,
            model="gpt-a",
            status="success",
            request_message_id=messages[1].id,
            prompt_tokens=3,
            completion_tokens=4,
            total_tokens=7,
            metadata={"private": MARK},
        )
    )

    chat = await (
        AgentBuilder(f"{MARK} chat prompt")
        .with_store(store)
        .with_tenant_id(tenant)
        .with_user_id(user)
        .with_agent_id(config.agent.id)
        .with_provider(EchoProvider())
        .build()
    )
    assert MARK in await chat.chat(f"{MARK} hello")
    session = await store.get_session(tenant, sid)
    assert session is not None
    return World(
        handle=handle,
        directory=directory,
        tenant=tenant,
        user=user,
        config=config,
        session=session,
        chat_session_id=chat.session_id,
        messages=messages,
        streaming=streaming,
        api_call=api_call,
        checkpoints=checkpoints,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    kind: str = request.param
    directory = tmp_path_factory.mktemp(f"isolation-{kind}")
    async with open_store(kind, directory) as handle:
        yield await build_world(handle, directory)


# -- tenant B ---------------------------------------------------------------------------------


@attrs.define
class Intruder:
    """Tenant B: a fresh tenant and user, with everything A's world exposes as ids."""

    w: World
    tenant: str = attrs.field(factory=new_id)
    user: str = attrs.field(factory=new_id)
    shown: list[str] = attrs.field(factory=list)
    """What B was shown (reprs, CLI output): scanned for A's private text."""

    @property
    def store(self) -> threadline.Store:
        return self.w.store

    def saw(self, value: object) -> Any:
        self.shown.append(value if isinstance(value, str) else repr(value))
        return value

    async def own_session(self) -> Session:
        return await self.store.create_session(Session(tenant_id=self.tenant, user_id=self.user))

    def message(self, session_id: str, content: str = "B's text", **fields: Any) -> Message:
        fields.setdefault("role", "user")
        return Message(session_id=session_id, tenant_id=self.tenant, content=content, **fields)

    def graph_agent(self, storage: Any = None, strategy: Strategy | None = None) -> GraphAgent:
        return GraphAgent(
            strategy or pipeline(),
            provider="echo",
            tenant_id=self.tenant,
            user_id=self.user,
            agent_id=self.w.config.agent.id,  # B even uses A's agent id
            features=[Persistency(self.store if storage is None else storage)],
        )

    async def chat_agent(self, session_id: str | None = None) -> threadline.Agent:
        builder = (
            AgentBuilder("B's prompt")
            .with_store(self.store)
            .with_tenant_id(self.tenant)
            .with_user_id(self.user)
            .with_provider(EchoProvider())
        )
        if session_id is not None:
            builder.with_session_id(session_id)
        return await builder.build()

    async def cli(self, *args: str) -> Result:
        """Run ``threadline ARGS --store URL --tenant B --user B`` in process."""
        argv = [*args, "--store", self.w.handle.url, "--tenant", self.tenant, "--user", self.user]
        env = {"OPENAI_API_KEY": None, "OPENAI_BASE_URL": None, "THREADLINE_STORE": None}
        result = await asyncio.to_thread(CliRunner().invoke, cli, argv, env=env)
        self.saw(result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"CLI crashed: {result.exception!r}\n{result.output}")
        return result


Action = Callable[[Intruder], Awaitable[None]]


@attrs.frozen
class Op:
    name: str
    run: Action
    writes: bool = False
    """B may legitimately write its own data (storage snapshot not compared)."""


async def refused(awaitable: Awaitable[Any], errors: Any = REFUSED) -> None:
    with pytest.raises(errors):
        await awaitable


def cli_failed(result: Result, *words: str) -> None:
    assert result.exit_code != 0, result.output
    for word in words:
        assert word in result.output, result.output


# -- Store reads ------------------------------------------------------------------------------


async def get_session(b: Intruder) -> None:
    assert b.saw(await b.store.get_session(b.tenant, b.w.sid)) is None


async def list_sessions(b: Intruder) -> None:
    assert b.saw(await b.store.list_sessions(b.tenant, limit=1000)) == []
    assert b.saw(await b.store.list_sessions(b.tenant, user_id=b.w.user)) == []
    assert b.saw(await b.store.list_sessions(b.tenant, agent_id=b.w.config.agent.id)) == []


async def get_messages(b: Intruder) -> None:
    assert b.saw(await b.store.get_messages(b.tenant, b.w.sid)) == []
    assert b.saw(await b.store.get_messages(b.tenant, b.w.sid, after_seq=1, limit=3)) == []
    assert b.saw(await b.store.get_messages(b.tenant, b.w.chat_session_id)) == []


async def load_window(b: Intruder) -> None:
    for rounds in (None, 0, 1, 5):
        assert b.saw(await b.store.load_window(b.tenant, b.w.sid, rounds)) == []


async def count_messages(b: Intruder) -> None:
    assert await b.store.count_messages(b.tenant, b.w.sid) == 0


async def list_api_calls(b: Intruder) -> None:
    assert b.saw(await b.store.list_api_calls(b.tenant, b.w.sid)) == []


async def get_checkpoint(b: Intruder) -> None:
    for checkpoint in b.w.checkpoints:
        assert b.saw(await b.store.get_checkpoint(b.tenant, checkpoint.id)) is None


async def list_checkpoints(b: Intruder) -> None:
    store, agent = b.store, b.w.config.agent.id
    assert b.saw(await store.list_checkpoints(b.tenant)) == []
    assert b.saw(await store.list_checkpoints(b.tenant, session_id=b.w.sid)) == []
    assert b.saw(await store.list_checkpoints(b.tenant, agent_id=agent)) == []
    assert b.saw(await store.list_checkpoints(b.tenant, session_id=b.w.sid, agent_id=agent)) == []


async def get_latest_checkpoint(b: Intruder) -> None:
    assert b.saw(await b.store.get_latest_checkpoint(b.tenant, b.w.sid)) is None
    found = await b.store.get_latest_checkpoint(b.tenant, b.w.sid, agent_id=b.w.config.agent.id)
    assert b.saw(found) is None


async def load_agent_config(b: Intruder) -> None:
    agent = b.w.config.agent
    assert b.saw(await b.store.load_agent_config(tenant_id=b.tenant, code=agent.code)) is None
    assert b.saw(await b.store.load_agent_config(tenant_id=b.tenant, agent_id=agent.id)) is None


async def list_agent_configs(b: Intruder) -> None:
    assert b.saw(await b.store.list_agent_configs(b.tenant)) == []


# -- Store writes -----------------------------------------------------------------------------


async def create_session_with_a_id(b: Intruder) -> None:
    await refused(b.store.create_session(Session(id=b.w.sid, tenant_id=b.tenant)), ConflictError)


async def update_session(b: Intruder) -> None:
    stolen = attrs.evolve(b.w.session, tenant_id=b.tenant, title="B's now", metadata={"b": 1})
    await refused(b.store.update_session(stolen), NotFoundError)


async def delete_session(b: Intruder) -> None:
    assert await b.store.delete_session(b.tenant, b.w.sid) is False
    assert await b.store.delete_session(b.tenant, b.w.chat_session_id) is False


async def save_message_into_a_session(b: Intruder) -> None:
    await refused(b.store.save_message(b.message(b.w.sid)), NotFoundError)
    await refused(b.store.save_message(b.message(b.w.sid, role="system")), NotFoundError)


async def save_message_with_a_message_id(b: Intruder) -> None:
    for mine in b.w.messages:
        await refused(b.store.save_message(attrs.evolve(mine, tenant_id=b.tenant, seq=None)))


async def save_a_message_id_into_b_session(b: Intruder) -> None:
    own = await b.own_session()
    stolen = b.w.messages[1]
    await refused(b.store.save_message(b.message(own.id, "B overwrites", id=stolen.id)))
    assert await b.store.get_messages(b.tenant, own.id) == []


async def save_messages_batch(b: Intruder) -> None:
    await refused(
        b.store.save_messages([b.message(b.w.sid), b.message(b.w.sid, "two")]), NotFoundError
    )
    own = await b.own_session()
    batch = [b.message(own.id, "fine"), b.message(own.id, "stolen", id=b.w.messages[2].id)]
    await refused(b.store.save_messages(batch))
    assert await b.store.get_messages(b.tenant, own.id) == []  # refused whole


async def update_message(b: Intruder) -> None:
    for mine in (b.w.streaming, *b.w.messages):
        hacked = attrs.evolve(mine, tenant_id=b.tenant, content="hacked", status="complete")
        await refused(b.store.update_message(hacked), NotFoundError)


async def update_message_via_b_session(b: Intruder) -> None:
    own = await b.own_session()
    hacked = attrs.evolve(b.w.streaming, tenant_id=b.tenant, session_id=own.id, content="hacked")
    await refused(b.store.update_message(hacked), NotFoundError)


async def interrupt_streaming(b: Intruder) -> None:
    assert await b.store.interrupt_streaming(b.tenant, b.w.sid) == 0


async def save_api_call(b: Intruder) -> None:
    call = ApiCall(tenant_id=b.tenant, session_id=b.w.sid, model="m", status="success")
    await refused(b.store.save_api_call(call), NotFoundError)
    await refused(
        b.store.save_api_call(attrs.evolve(b.w.api_call, tenant_id=b.tenant, model="hacked"))
    )


async def save_a_api_call_id_into_b_session(b: Intruder) -> None:
    own = await b.own_session()
    stolen = attrs.evolve(b.w.api_call, tenant_id=b.tenant, session_id=own.id, model="hacked")
    await refused(b.store.save_api_call(stolen))
    assert await b.store.list_api_calls(b.tenant, own.id) == []


async def create_checkpoint_in_a_session(b: Intruder) -> None:
    await refused(
        b.store.create_checkpoint(Checkpoint(tenant_id=b.tenant, session_id=b.w.sid, node_id="x")),
        NotFoundError,
    )
    stolen = attrs.evolve(b.w.checkpoint, tenant_id=b.tenant, version=None, node_id="plan")
    await refused(b.store.create_checkpoint(stolen))


async def create_checkpoint_with_a_id(b: Intruder) -> None:
    own = await b.own_session()
    stolen = attrs.evolve(
        b.w.checkpoint, tenant_id=b.tenant, session_id=own.id, version=None, parent_id=None
    )
    await refused(b.store.create_checkpoint(stolen))
    assert await b.store.list_checkpoints(b.tenant, session_id=own.id) == []


async def create_checkpoint_on_a_parent(b: Intruder) -> None:
    """A checkpoint whose parent is A's: refused, or at least never rebuilt from A's history."""
    own = await b.own_session()
    mine = Message(session_id=own.id, tenant_id=b.tenant, role="user", content="B only")
    checkpoint = Checkpoint(
        tenant_id=b.tenant,
        session_id=own.id,
        node_id="write",
        history=[mine],
        parent_id=b.w.checkpoint.id,
    )
    try:
        stored = await b.store.create_checkpoint(checkpoint)
    except REFUSED:
        assert await b.store.list_checkpoints(b.tenant, session_id=own.id) == []
        return
    # Accepted: the parent link must not pull A's history into B's checkpoint.
    for found in (
        stored,
        await b.store.get_checkpoint(b.tenant, checkpoint.id),
        await b.store.get_latest_checkpoint(b.tenant, own.id),
        *(await b.store.list_checkpoints(b.tenant, session_id=own.id)),
    ):
        assert found is not None
        assert b.saw(found).history == (mine,), "B's checkpoint came back with A's history"
    raise AssertionError("a checkpoint whose parent is another tenant's was accepted")


async def save_config_with_a_agent_id(b: Intruder) -> None:
    agent = attrs.evolve(b.w.config.agent, tenant_id=b.tenant, name="B", provider_id=None)
    await refused(b.store.save_agent_config(AgentConfig(agent=agent)), ConflictError)


async def save_config_with_a_provider_id(b: Intruder) -> None:
    assert b.w.config.provider is not None
    provider = attrs.evolve(b.w.config.provider, tenant_id=b.tenant, api_base="http://evil/v1")
    agent = AgentRecord(tenant_id=b.tenant, code="b-bot", name="B", provider_id=provider.id)
    await refused(b.store.save_agent_config(AgentConfig(agent=agent, provider=provider)))
    assert await b.store.load_agent_config(tenant_id=b.tenant, code="b-bot") is None


async def link_config_to_a_provider(b: Intruder) -> None:
    """B's agent row naming A's provider id (and no provider row) must not reach A's row."""
    assert b.w.config.provider is not None
    agent = AgentRecord(
        tenant_id=b.tenant, code="linked", name="B", provider_id=b.w.config.provider.id
    )
    try:
        await b.store.save_agent_config(AgentConfig(agent=agent))
    except (*REFUSED, threadline.ValidationError):
        return
    loaded = b.saw(await b.store.load_agent_config(tenant_id=b.tenant, code="linked"))
    assert loaded is not None and loaded.provider is None, "B's agent got A's provider"
    for config in b.saw(await b.store.list_agent_configs(b.tenant)):
        assert config.provider is None, "B's agent got A's provider"


async def save_config_with_a_code(b: Intruder) -> None:
    """Codes are per tenant: B may use A's code for its own agent, A's stays as it was."""
    code = b.w.config.agent.code
    mine = AgentConfig(agent=AgentRecord(tenant_id=b.tenant, code=code, name="B's bot"))
    assert await b.store.save_agent_config(mine) == mine
    assert await b.store.load_agent_config(tenant_id=b.tenant, code=code) == mine


# -- PersistenceContext, Agent ----------------------------------------------------------------


async def context_open_a_session(b: Intruder) -> None:
    await refused(
        PersistenceContext.open(b.store, tenant_id=b.tenant, user_id=b.user, session_id=b.w.sid),
        ConflictError,
    )
    await refused(
        PersistenceContext.open(b.store, tenant_id=b.tenant, user_id=b.w.user, session_id=b.w.sid),
        ConflictError,
    )


async def context_save_with_a_message_id(b: Intruder) -> None:
    ctx = await PersistenceContext.open(b.store, tenant_id=b.tenant, user_id=b.user)
    await refused(ctx.save(ctx.message("user", "B", message_id=b.w.messages[1].id)))
    assert b.saw(await ctx.get_history()) == []


async def agent_chat_in_a_session(b: Intruder) -> None:
    agent = await b.chat_agent(b.w.sid)
    assert b.saw(await agent.history()) == []
    assert b.saw(await agent.history(last_rounds=1)) == []
    await refused(agent.chat("B was here"), ConflictError)
    other = await b.chat_agent()
    await refused(other.chat("B was here", session_id=b.w.chat_session_id), ConflictError)
    await refused(other.open_session(b.w.sid), ConflictError)


async def agent_from_persistence_plugin(b: Intruder) -> None:
    plugin = PersistencePlugin.from_store(
        b.store, tenant_id=b.tenant, user_id=b.w.user, session_id=b.w.sid
    )
    agent = (
        await AgentBuilder("x")
        .with_provider(EchoProvider())
        .with_persistence_plugin(plugin)
        .build()
    )
    assert b.saw(await agent.history()) == []
    await refused(agent.chat("B was here"), ConflictError)


# -- graph Persistency ------------------------------------------------------------------------


async def graph_reads(b: Intruder) -> None:
    handle = b.graph_agent().persistency(b.w.sid)
    assert b.saw(await handle.get_checkpoints()) == []
    assert b.saw(await handle.get_latest_checkpoint()) is None
    for checkpoint in b.w.checkpoints:
        assert b.saw(await handle.get_checkpoint(checkpoint.id)) is None


async def graph_rollback(b: Intruder) -> None:
    handle = b.graph_agent().persistency(b.w.sid)
    for checkpoint in b.w.checkpoints:
        await refused(handle.rollback_to_checkpoint(checkpoint.id), NotFoundError)
    assert await handle.rollback_to_latest_checkpoint() is None


async def graph_rollback_via_url(b: Intruder) -> None:
    agent = b.graph_agent(storage=b.w.handle.url)
    try:
        handle = agent.persistency(b.w.sid)
        await refused(handle.rollback_to_checkpoint(b.w.checkpoint.id), NotFoundError)
        assert await handle.rollback_to_latest_checkpoint() is None
        assert b.saw(await handle.get_checkpoints()) == []
    finally:
        await agent.close()


async def graph_writes(b: Intruder) -> None:
    handle = b.graph_agent().persistency(b.w.sid)
    await refused(handle.create_checkpoint("write", "B input"), ConflictError)
    await refused(handle.set_execution_point("review", [], "B input"), ConflictError)


async def graph_run_in_a_session(b: Intruder) -> None:
    await refused(b.graph_agent().run("B topic", session_id=b.w.sid), ConflictError)


async def graph_rollback_inside_a_run(b: Intruder) -> None:
    """Inside B's own run, ``ctx.persistency()`` cannot reach A's checkpoints either."""
    s = Strategy("intruder")
    outcome: dict[str, Any] = {}

    @s.node("probe")
    async def probe(ctx: GraphContext, value: str) -> str:
        p = ctx.persistency()
        outcome["get"] = await p.get_checkpoint(b.w.checkpoint.id)
        try:
            await p.rollback_to_checkpoint(b.w.checkpoint.id)
        except NotFoundError:
            outcome["rollback"] = "refused"
        return value

    s.edge(s.start, probe).edge(probe, s.finish)
    agent = b.graph_agent(strategy=s)
    assert await agent.run("B", session_id=new_id()) == "B"
    assert outcome == {"get": None, "rollback": "refused"}


# -- CLI --------------------------------------------------------------------------------------


async def cli_sessions_list(b: Intruder) -> None:
    for extra in (["--all-users"], []):
        result = await b.cli("sessions", "list", "--json", *extra)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == []
    result = await b.cli("sessions", "list", "--all-users")
    assert result.exit_code == 0 and b.w.sid not in result.output


async def cli_sessions_show(b: Intruder) -> None:
    for sid in (b.w.sid, b.w.chat_session_id):
        cli_failed(await b.cli("sessions", "show", sid), "no session")
        cli_failed(await b.cli("sessions", "show", sid, "--json"), "no session")


async def cli_sessions_delete(b: Intruder) -> None:
    for sid in (b.w.sid, b.w.chat_session_id):
        cli_failed(await b.cli("sessions", "delete", sid, "--yes"), "no session")


async def cli_agents_list(b: Intruder) -> None:
    result = await b.cli("agents", "list", "--json")
    assert result.exit_code == 0 and json.loads(result.output) == [], result.output
    result = await b.cli("agents", "list")
    assert result.exit_code == 0 and b.w.config.agent.code not in result.output


async def cli_agents_show(b: Intruder) -> None:
    cli_failed(await b.cli("agents", "show", b.w.config.agent.code), "no agent")


async def cli_agents_add_same_code(b: Intruder) -> None:
    code = b.w.config.agent.code
    result = await b.cli("agents", "add", "--code", code, "--name", "B's", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["agent"]["tenant_id"] == b.tenant


def _file(b: Intruder, data: dict[str, Any]) -> str:
    path = b.w.directory / f"config-{new_id()}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


async def cli_agents_add_file_replacing_a_config(b: Intruder) -> None:
    """``--tenant B --from-file`` with A's config (A's ids, B's changes) must not replace A's."""
    data = b.w.config.to_dict()
    data["agent"]["system_prompt"] = "B rewrote A's prompt"
    data["provider"]["api_base"] = "http://attacker.invalid/v1"
    result = await b.cli("agents", "add", "--from-file", _file(b, data))
    assert result.exit_code != 0, f"B replaced A's agent config: {result.output}"


async def cli_agents_add_file_into_a_tenant(b: Intruder) -> None:
    """``--tenant B --from-file`` naming tenant A must not add an agent to tenant A."""
    config = AgentConfig(agent=AgentRecord(tenant_id=b.w.tenant, code="planted", name="B's"))
    result = await b.cli("agents", "add", "--from-file", _file(b, config.to_dict()))
    assert result.exit_code != 0, f"B added an agent to tenant A: {result.output}"


async def cli_chat_in_a_session(b: Intruder) -> None:
    """A's session id looks to B exactly like an id nobody has; ``--new`` is refused too."""
    for sid in (b.w.sid, b.w.chat_session_id):
        result = await b.cli("chat", "--provider", "echo", "--session", sid, "B was here")
        cli_failed(result, f"no session {sid} for this tenant")
        result = await b.cli("chat", "--provider", "echo", "--session", sid, "--new", "B")
        cli_failed(result, "cannot be used here")


async def cli_chat_continue(b: Intruder) -> None:
    cli_failed(await b.cli("chat", "--provider", "echo", "--continue", "x"), "no session")


def _checkpoints_group() -> Any:
    try:
        from threadline.cli.checkpoints import checkpoints_group
    except ImportError:  # pragma: no cover - not in this tree yet
        pytest.skip("threadline.cli.checkpoints is not available")
    return checkpoints_group


async def cli_checkpoints(b: Intruder) -> None:
    group = _checkpoints_group()
    argv_tail = ["--store", b.w.handle.url, "--tenant", b.tenant, "--user", b.user]

    async def run(*args: str) -> Result:
        result = await asyncio.to_thread(CliRunner().invoke, group, [*args, *argv_tail])
        b.saw(result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        return result

    cli_failed(await run("list", b.w.sid, "--json"), "no session")
    cli_failed(await run("show", b.w.checkpoint.id), "no checkpoint")
    for checkpoint in b.w.checkpoints:
        cli_failed(await run("rollback", b.w.sid, checkpoint.id), "no checkpoint")


OPS = [
    Op("store.get_session", get_session),
    Op("store.list_sessions", list_sessions),
    Op("store.get_messages", get_messages),
    Op("store.load_window", load_window),
    Op("store.count_messages", count_messages),
    Op("store.list_api_calls", list_api_calls),
    Op("store.get_checkpoint", get_checkpoint),
    Op("store.list_checkpoints", list_checkpoints),
    Op("store.get_latest_checkpoint", get_latest_checkpoint),
    Op("store.load_agent_config", load_agent_config),
    Op("store.list_agent_configs", list_agent_configs),
    Op("store.create_session(A's id)", create_session_with_a_id),
    Op("store.update_session", update_session),
    Op("store.delete_session", delete_session),
    Op("store.save_message(into A's session)", save_message_into_a_session),
    Op("store.save_message(A's message ids)", save_message_with_a_message_id),
    Op("store.save_message(A's id, B's session)", save_a_message_id_into_b_session, True),
    Op("store.save_messages", save_messages_batch, True),
    Op("store.update_message", update_message),
    Op("store.update_message(via B's session)", update_message_via_b_session, True),
    Op("store.interrupt_streaming", interrupt_streaming),
    Op("store.save_api_call", save_api_call),
    Op("store.save_api_call(A's id, B's session)", save_a_api_call_id_into_b_session, True),
    Op("store.create_checkpoint(A's session)", create_checkpoint_in_a_session),
    Op("store.create_checkpoint(A's id)", create_checkpoint_with_a_id, True),
    Op("store.create_checkpoint(A's parent)", create_checkpoint_on_a_parent, True),
    Op("store.save_agent_config(A's agent id)", save_config_with_a_agent_id),
    Op("store.save_agent_config(A's provider id)", save_config_with_a_provider_id),
    Op("store.save_agent_config(link A's provider)", link_config_to_a_provider, True),
    Op("store.save_agent_config(A's code)", save_config_with_a_code, True),
    Op("context.open(A's session)", context_open_a_session),
    Op("context.save(A's message id)", context_save_with_a_message_id, True),
    Op("agent.chat(A's session)", agent_chat_in_a_session),
    Op("agent.persistence_plugin(A's session)", agent_from_persistence_plugin),
    Op("graph.persistency reads", graph_reads),
    Op("graph.rollback", graph_rollback),
    Op("graph.rollback(storage=URL)", graph_rollback_via_url),
    Op("graph.create_checkpoint/set_execution_point", graph_writes),
    Op("graph.run(A's session)", graph_run_in_a_session),
    Op("graph.ctx.persistency() in B's run", graph_rollback_inside_a_run, True),
    Op("cli.sessions list", cli_sessions_list),
    Op("cli.sessions show", cli_sessions_show),
    Op("cli.sessions delete", cli_sessions_delete),
    Op("cli.agents list", cli_agents_list),
    Op("cli.agents show", cli_agents_show),
    Op("cli.agents add(A's code)", cli_agents_add_same_code, True),
    Op("cli.agents add --from-file(A's config)", cli_agents_add_file_replacing_a_config, True),
    Op("cli.agents add --from-file(tenant A)", cli_agents_add_file_into_a_tenant, True),
    Op("cli.chat --session(A's)", cli_chat_in_a_session),
    Op("cli.chat --continue", cli_chat_continue),
    Op("cli.checkpoints list/show/rollback", cli_checkpoints),
]


@pytest.mark.parametrize("op", [pytest.param(op, id=op.name) for op in OPS])
@pytest.mark.parametrize("world", KINDS, indirect=True)
async def test_tenant_b_cannot_reach_tenant_a(world: World, op: Op) -> None:
    before = await world.view()
    raw_before = await world.handle.snapshot()
    b = Intruder(world)
    failure: BaseException | None = None
    try:
        await op.run(b)
    except (AssertionError, ThreadlineError) as exc:
        failure = exc
    after = await world.view()
    raw_after = await world.handle.snapshot()
    leaked = [text for text in b.shown if MARK in text]
    lost = int(after != before)
    record(
        f"tenant_isolation[{op.name}]",
        store=world.handle.kind,
        what="tenant B with tenant A's ids: reads find nothing, writes change nothing",
        faults=1,
        operations=1,
        lost=lost,
        notes="; ".join(x for x in (str(failure or ""), "leaked" if leaked else "") if x),
    )
    if failure is not None:
        raise failure
    assert not leaked, f"B was shown A's private data: {leaked[0][:300]}"
    assert after == before, "tenant A's data changed"
    if not op.writes:
        assert raw_after == raw_before, (
            "the storage changed under an operation that must not write:\n"
            + describe_change(raw_before, raw_after)
        )
