"""What the PostgreSQL store adds to the conformance suite: storage details and races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import attrs
import pytest
import pytest_asyncio

import threadline
from threadline import ApiCall, Checkpoint, Message, Session, ToolCall
from threadline.ids import new_id
from threadline.storekit.delta import SNAPSHOT_EVERY
from threadline.storekit.window import select_window
from threadline.testing._support import Conversation, new_conversation
from threadline_postgres import PostgresStore

NUL_TEXTS = ["\x00", "a\x00b", "\x01", "\x01\x02", "\x00\x01\x00", "tail\x00", "\x01\x01\x02x"]


@pytest_asyncio.fixture
async def raw(database_url: str, fresh_schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection whose search_path is the test's schema, to look at the rows."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": fresh_schema})
    yield conn
    await conn.close()


async def test_nul_characters_round_trip_everywhere(
    store: threadline.Store, raw: asyncpg.Connection
) -> None:
    conv = await new_conversation(store, title="t\x00itle", metadata={"k\x00": "v\x00"})
    assert (await store.get_session(conv.tenant_id, conv.id)) == conv.session
    for text in NUL_TEXTS:
        call = ToolCall(id="c\x00" + text, name="n\x00", arguments={text: [text, {text: 1}]})
        message = conv.message(
            "assistant", text, tool_calls=[call], name=text, metadata={text: text, "x": [text]}
        )
        stored = await store.save_message(message)
        assert attrs.evolve(stored, seq=None) == message
        answer = await conv.add("tool", text, tool_call_id=call.id)
        assert (await conv.messages())[-2:] == [stored, answer]
        updated = attrs.evolve(stored, content=text * 2, metadata={"u": text})
        assert await store.update_message(updated) == updated
    # The window finds calls by (escaped) id too.
    window = await store.load_window(conv.tenant_id, conv.id, 1)
    assert window == select_window(await conv.messages(), 1)
    # Ordinary text is stored verbatim; only NUL and SOH are escaped, reversibly.
    await conv.add("user", "plain text ✓")
    contents = [r[0] for r in await raw.fetch("SELECT content FROM entity_message ORDER BY seq")]
    assert contents[-1] == "plain text ✓"
    assert "a\x01\x02b" in contents and "\x01\x01" in contents
    assert all("\x00" not in c for c in contents)


async def test_nul_in_checkpoints_and_configs(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    history = [await conv.add("user", "q\x00"), await conv.add("assistant", "\x01a")]
    checkpoint = Checkpoint(
        tenant_id=conv.tenant_id, session_id=conv.id, node_id="n\x00", input="i\x00",
        input_type="str\x00", history=history, state={"s\x00": "\x00"},
        properties={"p": "\x01"},
    )  # fmt: skip
    stored = await store.create_checkpoint(checkpoint)
    assert await store.get_checkpoint(conv.tenant_id, checkpoint.id) == stored
    assert attrs.evolve(stored, version=None) == checkpoint


async def test_json_numbers_round_trip_exactly(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    values = {
        "big": 1e23, "neg": -1.5e300, "tiny": 1e-7, "sub": 5e-324, "int": 2**70,
        "negint": -(2**65), "one": 1.0, "zero": -0.0, "pi": 3.141592653589793, "e16": 1e16,
        "list": [1e22, 12345678901234567890.0, 0.1],
    }  # fmt: skip
    stored = await conv.add("user", "numbers", metadata=values)
    [read] = await conv.messages()
    assert read == stored
    for key, value in values.items():
        assert type(read.metadata[key]) is type(value), key
        assert read.metadata[key] == value, key


async def test_timestamps_round_trip_to_the_microsecond(store: threadline.Store) -> None:
    plus_five = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=plus_five)
    session = await store.create_session(Session(tenant_id=new_id(), created_at=when))
    conv = Conversation(store, session)
    message = conv.message("user", "leap", created_at=datetime(1999, 12, 31, 23, 59, 59, 1,
                                                                tzinfo=timezone.utc))  # fmt: skip
    await store.save_message(message)
    [read] = await conv.messages()
    assert read.created_at == message.created_at
    assert read.created_at.tzinfo is not None and read.created_at.utcoffset() == timedelta(0)
    assert read.created_at.microsecond == 1
    got = await store.get_session(session.tenant_id, session.id)
    assert got is not None and got.created_at == when and got.created_at.microsecond == 999_999


async def test_window_matches_the_definition_on_random_sessions(store: threadline.Store) -> None:
    import random

    rng = random.Random(7)
    for _ in range(5):
        conv = await new_conversation(store)
        pending: list[str] = []
        for i in range(60):
            roll = rng.random()
            if roll < 0.05:
                await conv.add("system", f"sys {i}")
            elif roll < 0.35:
                await conv.add("user", f"u {i}")
            elif roll < 0.5:
                call = ToolCall(id=f"call-{i}", name="t", arguments={})
                pending.append(call.id)
                await conv.add("assistant", "", tool_calls=[call])
            elif roll < 0.65 and pending:
                await conv.add("tool", "r", tool_call_id=pending.pop(rng.randrange(len(pending))))
            else:
                await conv.add("assistant", f"a {i}")
        everything = await conv.messages()
        for rounds in (None, 0, 1, 2, 3, 5, 8, 100):
            window = await store.load_window(conv.tenant_id, conv.id, rounds)
            assert window == select_window(everything, rounds), rounds


async def test_window_reads_an_index_not_the_session(
    store: threadline.Store, raw: asyncpg.Connection
) -> None:
    conv = await new_conversation(store)
    await conv.add("system", "be brief")
    batch = [conv.message("user" if i % 2 == 0 else "assistant", f"m{i}") for i in range(3000)]
    await store.save_messages(batch)
    await raw.execute("ANALYZE")
    pg = store.primary
    assert isinstance(pg, PostgresStore)
    plan = "\n".join(
        r[0]
        for r in await raw.fetch(
            "EXPLAIN "
            + pg.sql.window.replace("$1::uuid", f"'{conv.id}'::uuid")
            .replace("$2::uuid", f"'{conv.tenant_id}'::uuid")
            .replace("$3::bigint", "9")
        )
    )
    assert "Seq Scan" not in plan, plan
    assert "entity_message_user_turns" in plan and "entity_message_system" in plan, plan
    window = await store.load_window(conv.tenant_id, conv.id, 10)
    assert len(window) == 21 and window[0].content == "be brief"


async def test_checkpoint_histories_are_stored_as_deltas(
    store: threadline.Store, raw: asyncpg.Connection
) -> None:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore) and plugin.snapshot_every == SNAPSHOT_EVERY
    plugin.snapshot_every = 16
    conv = await new_conversation(store)
    history: list[Message] = []
    parent = None
    made = []
    for i in range(40):
        history.extend(await conv.add_round(i))
        checkpoint = await store.create_checkpoint(
            Checkpoint(
                tenant_id=conv.tenant_id,
                session_id=conv.id,
                node_id=f"n{i}",
                history=history,
                parent_id=parent,
            )  # fmt: skip
        )
        parent = checkpoint.id if i != 20 else None  # a fresh run: a snapshot
        made.append(checkpoint)
    rows = await raw.fetch(
        "SELECT history_base, history_delta->>'v' AS v, history_delta->>'kind' AS kind, "
        "jsonb_array_length(history_delta->'messages') AS n, chain_depth, history_tag "
        "FROM entity_checkpoint ORDER BY version"
    )
    assert [r["chain_depth"] for r in rows] == [*range(16), *range(5), *range(16), *range(3)]
    assert {r["v"] for r in rows} == {"1"} and all(r["history_tag"] for r in rows)
    assert [r["kind"] == "snapshot" for r in rows] == [r["history_base"] is None for r in rows]
    stored_messages = sum(r["n"] for r in rows)
    whole = sum(len(c.history) for c in made)
    assert stored_messages < whole / 5  # 3,280 messages logically; a fraction physically
    assert await store.list_checkpoints(conv.tenant_id, session_id=conv.id) == made
    assert await store.list_checkpoints(conv.tenant_id) == made
    for checkpoint in made[::7]:
        assert await store.get_checkpoint(conv.tenant_id, checkpoint.id) == checkpoint
    assert await store.get_latest_checkpoint(conv.tenant_id, conv.id) == made[-1]
    # A branch from an old checkpoint (a rollback) stores its own history correctly.
    branch = await store.create_checkpoint(
        Checkpoint(
            tenant_id=conv.tenant_id,
            session_id=conv.id,
            node_id="branch",
            history=made[5].history[:-1],
            parent_id=made[5].id,
        )  # fmt: skip
    )
    assert await store.get_checkpoint(conv.tenant_id, branch.id) == branch
    delta = await raw.fetchval(
        "SELECT history_delta FROM entity_checkpoint WHERE id = $1", branch.id
    )
    assert '"keep": ' + str(len(made[5].history) - 1) in delta


async def test_checkpoints_of_a_fresh_store_and_other_agents(
    store: threadline.Store, make_url: Callable[..., str], fresh_schema: str
) -> None:
    """No cache: the parent's history comes from its chain; listing by agent reads bases."""
    conv = await new_conversation(store)
    planner, writer = new_id(), new_id()
    history: list[Message] = []
    made: list[Checkpoint] = []
    for i in range(6):
        history = [*history, *(await conv.add_round(i))]
        made.append(
            await store.create_checkpoint(
                Checkpoint(
                    tenant_id=conv.tenant_id,
                    session_id=conv.id,
                    history=history,
                    agent_id=planner if i % 3 else writer,
                    parent_id=made[-1].id if made else None,
                )  # fmt: skip
            )
        )
    fresh = await threadline.connect(make_url(schema=fresh_schema))
    try:
        t, s = conv.tenant_id, conv.id
        assert await fresh.list_checkpoints(t, agent_id=writer) == [made[0], made[3]]
        assert await fresh.get_latest_checkpoint(t, s, agent_id=writer) == made[3]
        latest = await fresh.get_latest_checkpoint(t, s)
        assert latest == made[-1] and latest is not None
        child = await fresh.create_checkpoint(
            Checkpoint(
                tenant_id=t,
                session_id=s,
                parent_id=latest.id,
                history=(*latest.history, conv.message("user", "more")),
            )  # fmt: skip
        )
        again = await threadline.connect(make_url(schema=fresh_schema))
        try:
            assert await again.get_checkpoint(t, child.id) == child
        finally:
            await again.close()
    finally:
        await fresh.close()


async def test_checkpoint_list_by_agent_rebuilds_foreign_bases(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    a, b = new_id(), new_id()
    history: list[Message] = []
    made = []
    for i in range(6):
        history.append(await conv.add("user", f"q{i}"))
        made.append(await store.create_checkpoint(Checkpoint(
            tenant_id=conv.tenant_id, session_id=conv.id, agent_id=a if i % 2 else b,
            history=history,
        )))  # fmt: skip
    assert await store.list_checkpoints(conv.tenant_id, agent_id=a) == made[1::2]
    assert await store.get_latest_checkpoint(conv.tenant_id, conv.id, agent_id=b) == made[4]


async def test_batch_retry_with_some_ids_stored_leaves_no_gap(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    first = await store.save_messages([conv.message("user", "a"), conv.message("assistant", "b")])
    mixed = [first[1], conv.message("user", "c"), first[0], conv.message("assistant", "d")]
    again = await store.save_messages([attrs.evolve(m, seq=None) for m in mixed])
    assert [m.seq for m in again] == [2, 3, 1, 4]
    assert again[0] == first[1] and again[2] == first[0]
    assert [m.content for m in await conv.messages()] == ["a", "b", "c", "d"]


async def test_racing_saves_of_one_message_store_it_once(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    message = conv.message("user", "once")
    results = await asyncio.gather(*(store.save_message(message) for _ in range(12)))
    assert {m.seq for m in results} == {1}
    assert await store.count_messages(conv.tenant_id, conv.id) == 1
    assert (await conv.add("assistant", "next")).seq == 2


async def test_concurrent_batches_and_singles(store: threadline.Store) -> None:
    conv = await new_conversation(store)

    async def batches(w: int) -> None:
        for i in range(5):
            await store.save_messages([conv.message("user", f"b{w}-{i}-{k}") for k in range(7)])

    async def singles(w: int) -> None:
        for i in range(10):
            await conv.add("assistant", f"s{w}-{i}")

    await asyncio.gather(*(batches(w) for w in range(4)), *(singles(w) for w in range(4)))
    messages = await conv.messages()
    assert [m.seq for m in messages] == list(range(1, 4 * 35 + 4 * 10 + 1))
    for w in range(4):  # each batch landed contiguously, in order
        for i in range(5):
            seqs = [m.seq for m in messages if m.content.startswith(f"b{w}-{i}-")]
            assert seqs == list(range(seqs[0], seqs[0] + 7))


async def test_every_kind_of_session_write_at_once_touches_without_deadlock(
    store: threadline.Store,
) -> None:
    """Appends, streaming flushes, interrupts, API calls and checkpoints of one session race.

    Each moves the session's ``updated_at`` in its own statement or transaction, all
    locking the session row first: none deadlocks or fails, and the last activity wins.
    """
    conv = await new_conversation(store, created_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    t, s = conv.tenant_id, conv.id
    streaming = [await conv.add("assistant", f"r{i}", status="streaming") for i in range(8)]
    start = datetime.now(timezone.utc)

    async def appends() -> None:
        for i in range(10):
            await conv.add("user", f"u{i}")

    async def flushes(message: Message) -> None:
        for i in range(5):
            await store.update_message(attrs.evolve(message, content=f"{message.content} {i}"))

    async def checkpoints() -> None:
        parent = None
        for _ in range(10):
            parent = await store.create_checkpoint(
                Checkpoint(tenant_id=t, session_id=s, parent_id=parent.id if parent else None)
            )

    async def calls() -> None:
        for _ in range(10):
            await store.save_api_call(ApiCall(tenant_id=t, session_id=s, model="m",
                                              status="success"))  # fmt: skip

    async def interrupts() -> None:
        for _ in range(5):
            await store.interrupt_streaming(t, s)

    await asyncio.gather(
        appends(), checkpoints(), calls(), interrupts(), *(flushes(m) for m in streaming)
    )
    session = await store.get_session(t, s)
    assert session is not None and session.updated_at >= start
    assert await store.count_messages(t, s) == 18
    assert len(await store.list_checkpoints(t, session_id=s)) == 10
    assert len(await store.list_api_calls(t, s)) == 10
    await store.interrupt_streaming(t, s)
    assert {m.status for m in (await conv.messages())[:8]} == {"interrupted"}


async def test_agent_config_with_unknown_provider_id(store: threadline.Store) -> None:
    from threadline import AgentConfig, AgentRecord, NotFoundError

    agent = AgentRecord(tenant_id=new_id(), code="x", name="X", provider_id=new_id())
    with pytest.raises(NotFoundError):
        await store.save_agent_config(AgentConfig(agent=agent))
    assert await store.list_agent_configs(agent.tenant_id) == []


async def test_stores_in_two_schemas_are_separate(make_url: Callable[..., str]) -> None:
    one = await threadline.connect(make_url(schema="iso_one"))
    two = await threadline.connect(make_url(schema="iso_two"))
    try:
        session = await one.create_session(Session(tenant_id=new_id()))
        assert await two.get_session(session.tenant_id, session.id) is None
    finally:
        await one.close()
        await two.close()


async def test_a_blocked_statement_times_out_typed_and_the_pool_survives(
    make_url: Callable[..., str], database_url: str
) -> None:
    import time

    from threadline import StoreUnavailableError

    store = await threadline.connect(make_url(schema="timeouts", command_timeout=0.5, max_size=2))
    blocker = await asyncpg.connect(database_url)
    try:
        conv = await new_conversation(store)
        async with blocker.transaction():  # another process holds the session row
            await blocker.execute(
                "SELECT 1 FROM timeouts.entity_session WHERE id = $1 FOR UPDATE", conv.id
            )
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="did not answer in time"):
                await conv.add("user", "blocked")
            assert time.monotonic() - started < 2
        assert (await conv.add("user", "after")).seq == 1  # nothing half-written, pool fine
        assert [m.content for m in await conv.messages()] == ["after"]
    finally:
        await blocker.close()
        await store.close()


# -- erase_user: checkpoint records ---------------------------------------------------------


async def _records(raw: asyncpg.Connection) -> dict[str, tuple[Any, ...]]:
    """Each checkpoint's stored record: base, depth, kind, keep, tag and text, by id."""
    rows = await raw.fetch(
        "SELECT id, history_base, chain_depth, history_delta->>'kind', history_delta->>'keep', "
        "history_tag, history_delta::text FROM entity_checkpoint"
    )
    return {str(r[0]): (r[1] and str(r[1]), *r[2:]) for r in rows}


async def test_erase_user_rewrites_only_the_records_holding_the_users_messages(
    store: threadline.Store,
    raw: asyncpg.Connection,
    make_url: Callable[..., str],
    fresh_schema: str,
) -> None:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore)
    plugin.snapshot_every = 4  # snapshots mid-run hold B's messages as well
    tenant, a, b = new_id(), new_id(), new_id()
    conv = await new_conversation(store, tenant, a)
    t, s = tenant, conv.id
    secret = "b-secret\x00\x01"

    def msg(user: str, role: str) -> Message:
        if user == a:
            return attrs.evolve(conv.message(role, "from A\x00"), user_id=a)
        message = conv.message(role, f"{secret} {role}", metadata={"k": secret}, name=secret)
        return attrs.evolve(message, user_id=b)

    A, B = (a, "assistant"), (b, "user")
    steps = [[A], [B, A], [A], [B], [B, A], [B], [A], [B, B], [A], [A]]
    history: list[Message] = []
    made: list[Checkpoint] = []
    for i, step in enumerate(steps):
        history = [*history, *(msg(*who) for who in step)]
        made.append(await store.create_checkpoint(Checkpoint(
            tenant_id=t, session_id=s, history=history, node_id=f"n{i}",
            parent_id=made[-1].id if made else None,
        )))  # fmt: skip
    # A branch whose only message is B's, after B's last one: its user_id is implied.
    made.append(await store.create_checkpoint(Checkpoint(
        tenant_id=t, session_id=s, history=(*made[5].history, msg(*B)), parent_id=made[5].id,
    )))  # fmt: skip
    before = await _records(raw)
    kinds = [before[c.id][2] for c in made]
    assert kinds == ["snapshot", *["delta"] * 3, "snapshot", *["delta"] * 3, "snapshot",
                     "delta", "delta"]  # fmt: skip
    assert '"user_id"' not in before[made[10].id][5]
    # Another process has the histories cached (and so does the erasing store).
    other = await threadline.connect(make_url(schema=fresh_schema))
    try:
        assert await other.list_checkpoints(t, session_id=s) == made
        expected = {
            "sessions": 0,
            "messages": 0,
            "messages_redacted": 0,
            "api_calls": 0,
            "checkpoints": 0,
            "checkpoints_redacted": 10,
        }
        assert await store.erase_user(t, b, dry_run=True) == expected
        assert await _records(raw) == before
        assert await store.erase_user(t, b) == expected
        after = await _records(raw)
        rewritten = {made[i].id for i in (1, 3, 4, 5, 7, 8, 10)}
        # A new tag for every checkpoint whose history changed, its record rewritten or not.
        retagged = {c.id for c in made if any(m.user_id == b for m in c.history)}
        assert rewritten < retagged and len(retagged) == expected["checkpoints_redacted"]
        for cid, record in after.items():
            old = before[cid]
            assert record[:4] == old[:4]  # base, depth, kind and keep stay
            assert (record[4] != old[4]) == (cid in retagged)
            assert (record[5] != old[5]) == (cid in rewritten)
            assert "secret" not in record[5] and b not in record[5]

        def redacted(m: Message) -> Message:
            if m.user_id != b:
                return m
            return attrs.evolve(m, content="", tool_calls=(), metadata={}, name=None, user_id=None)

        want = [attrs.evolve(c, history=tuple(redacted(m) for m in c.history)) for c in made]
        # Writers whose cached parent histories predate the erasure (before anything reads
        # them again): the new write tags make them read the rewritten records, so stale
        # and redacted histories both come back exactly.
        stale = (*made[7].history, msg(*A))
        fresh = (*want[9].history, msg(*A))
        children = [
            await writer.create_checkpoint(
                Checkpoint(tenant_id=t, session_id=s, history=h, parent_id=p)
            )
            for writer, h, p in ((store, stale, made[7].id), (other, stale, made[7].id),
                                 (store, fresh, made[9].id), (other, fresh, made[9].id))
        ]  # fmt: skip
        for reader in (store, other):
            assert await reader.list_checkpoints(t, session_id=s) == [*want, *children]
        for c in (*want, *children):
            assert await other.get_checkpoint(t, c.id) == c
        assert (await store.erase_user(t, b))["checkpoints_redacted"] == 2  # the stale ones
    finally:
        await other.close()


async def test_erase_user_finds_messages_elsewhere_through_the_user_index(
    store: threadline.Store, raw: asyncpg.Connection
) -> None:
    tenant, a, b = new_id(), new_id(), new_id()
    for _ in range(3):
        conv = await new_conversation(store, tenant, a)
        await store.save_messages([conv.message("user", f"m{i}") for i in range(1500)])
        await store.save_message(attrs.evolve(conv.message("user", "from b"), user_id=b))
        for user in (a, a, b):
            await store.save_api_call(
                ApiCall(session_id=conv.id, tenant_id=tenant, user_id=user, model="m",
                        status="success")
            )  # fmt: skip
    own = await new_conversation(store, tenant, b)
    await store.save_messages([own.message("user", f"b{i}") for i in range(5)])
    await raw.execute("ANALYZE")
    pg = store.primary
    assert isinstance(pg, PostgresStore)
    where = pg.sql.user_rows_elsewhere.replace("$1::uuid", f"'{tenant}'::uuid").replace(
        "$2::uuid", f"'{b}'::uuid"
    )
    plan = "\n".join(
        r[0] for r in await raw.fetch(f"EXPLAIN SELECT count(*) FROM entity_message WHERE {where}")
    )
    assert "entity_message_tenant_user" in plan, plan
    assert "Seq Scan on entity_message" not in plan, plan
    # Nine API calls: too few for the planner to prefer any index; can it use this one?
    await raw.execute("SET enable_seqscan = off")
    plan = "\n".join(
        r[0] for r in await raw.fetch(f"EXPLAIN SELECT count(*) FROM entity_api_call WHERE {where}")
    )
    await raw.execute("RESET enable_seqscan")
    assert "entity_api_call_tenant_user" in plan, plan
    assert "Seq Scan on entity_api_call" not in plan, plan
    erased = await store.erase_user(tenant, b)
    assert (erased["messages"], erased["messages_redacted"], erased["api_calls"]) == (5, 3, 3)
