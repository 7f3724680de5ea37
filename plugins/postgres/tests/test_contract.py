"""The store-contract hooks the facade does not reach, and the derived hooks the store keeps.

Every derived hook PostgreSQL overrides (to be faster, or to be one transaction) must
answer exactly as the core's default built on the store's own required hooks: both run
here on the same data. The defaults also exercise the primitives the overrides bypass
(``read_messages`` by role and backwards, ``rewrite_messages``,
``rewrite_checkpoint_records``, ``delete_api_calls``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import attrs
import pytest
import pytest_asyncio

import threadline
from threadline import ApiCall, Checkpoint, Message, NotFoundError
from threadline.ids import new_id
from threadline.queries import MessageRange
from threadline.storekit.defaults import DEFAULTS
from threadline.storekit.records import CheckpointRecord, RecordRewrite, StaleRecordError
from threadline.testing._support import Conversation, new_conversation
from threadline_postgres import PostgresStore


class OwnHooks:
    """The store's own hooks, as a core default calls them (no dispatch, no overrides)."""

    def __init__(self, plugin: PostgresStore) -> None:
        self.plugin = plugin
        self.state: dict[str, Any] = {}

    def has(self, hook: str) -> bool:
        return hasattr(self.plugin, hook)

    async def call(self, hook: str, **kwargs: Any) -> Any:
        return await getattr(self.plugin, hook)(**kwargs)


async def default(store: threadline.Store, hook: str, **kwargs: Any) -> Any:
    """The core default of ``hook`` run on ``store``'s own required hooks."""
    plugin = store.primary
    assert isinstance(plugin, PostgresStore) and hook in DEFAULTS
    return await DEFAULTS[hook].function(OwnHooks(plugin), **kwargs)


def pg(store: threadline.Store) -> PostgresStore:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore)
    return plugin


async def test_window_and_count_answer_as_the_defaults(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    await conv.add("system", "be brief")
    for n in range(12):
        await conv.add_round(n, tool=n % 3 == 0)
        if n == 5:
            await conv.add("system", "a later system message")
    # A tool result whose call is rounds away: the window grows back to its call.
    late = await conv.add("assistant", "", tool_calls=[{"id": "far", "name": "t", "arguments": {}}])
    await conv.add_round(12)
    await conv.add("tool", "late result", tool_call_id="far", name="t")
    t, s = conv.tenant_id, conv.id
    for rounds in (None, 0, 1, 2, 3, 5, 100):
        own = await store.load_window(t, s, rounds)
        assert own == await default(store, "threadline_load_window", tenant_id=t,
                                    session_id=s, last_rounds=rounds), rounds  # fmt: skip
    assert late in await store.load_window(t, s, 1)
    assert await store.count_messages(t, s) == await default(
        store, "threadline_count_messages", tenant_id=t, session_id=s
    ) == len(await conv.messages())  # fmt: skip
    assert await store.count_messages(t, new_id()) == 0


async def test_read_messages_by_range_backwards_and_by_role(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    saved = await store.save_messages(
        [conv.message("system" if i % 4 == 0 else "user", f"m{i}") for i in range(20)]
    )
    t, s = conv.tenant_id, conv.id

    async def read(tenant: str, *query: Any) -> list[Message]:
        return list(await pg(store).threadline_read_messages(tenant, s, MessageRange(*query)))

    assert await read(t, 3, 9, None, False, None) == saved[3:8]
    assert await read(t, 0, None, 4, True, None) == saved[:-5:-1]
    assert await read(t, 0, 13, None, False, "system") == saved[0:12:4]
    assert await read(t, 0, None, 2, True, "system") == [saved[16], saved[12]]
    assert await read(new_id(), 0, None, None, False, None) == []


async def test_update_and_interrupt_answer_as_the_defaults(store: threadline.Store) -> None:
    convs = [await new_conversation(store) for _ in range(2)]
    streaming = []
    for conv in convs:
        await conv.add_round(0)
        streaming.append(await conv.add("assistant", "partial", status="streaming"))
        await conv.add("assistant", "also left", status="streaming")
    call = {"id": "c1", "name": "lookup", "arguments": {"q": "\x00"}}
    changes = {"content": "flushed", "metadata": {"k": 1}, "name": "bot", "tool_calls": [call]}
    own = await store.update_message(attrs.evolve(streaming[0], **changes))
    derived = await default(
        store, "threadline_update_message", message=attrs.evolve(streaming[1], **changes)
    )
    fields = ("content", "tool_calls", "status", "name", "metadata", "seq")
    assert [getattr(own, f) for f in fields] == [getattr(derived, f) for f in fields]
    assert (own.user_id, derived.user_id) == (streaming[0].user_id, streaming[1].user_id)
    # The rewritten call ids serve the window: a later result of c1 grows it back to c1.
    for conv, updated in zip(convs, (own, derived)):
        await conv.add_round(1)
        await conv.add("tool", "r", tool_call_id="c1", name="lookup")
        window = await store.load_window(conv.tenant_id, conv.id, 1)
        assert updated.id in [m.id for m in window] and window[0].content == "question 0"
    before = [await store.get_session(c.tenant_id, c.id) for c in convs]
    a, b = convs
    assert await store.interrupt_streaming(a.tenant_id, a.id) == 2
    assert await default(store, "threadline_interrupt_streaming", tenant_id=b.tenant_id,
                         session_id=b.id) == 2  # fmt: skip
    for conv, old in zip(convs, before):
        messages = await conv.messages()
        assert [m.status for m in messages][2:4] == ["interrupted", "interrupted"]
        session = await store.get_session(conv.tenant_id, conv.id)
        assert session is not None and old is not None and session.updated_at > old.updated_at


async def test_rewrite_messages_is_all_or_nothing(store: threadline.Store) -> None:
    conv = await new_conversation(store)
    first, second = await store.save_messages(
        [conv.message("user", "a"), conv.message("user", "b")]
    )
    plugin = pg(store)

    async def rewrite(tenant_id: str, messages: list[Message]) -> int:
        return await plugin.threadline_rewrite_messages(tenant_id, messages, True, False)

    stranger = conv.message("user", "never stored")
    with pytest.raises(NotFoundError):
        await rewrite(conv.tenant_id, [attrs.evolve(first, content="x"), stranger])
    with pytest.raises(NotFoundError):  # another tenant's messages are not found
        await rewrite(new_id(), [attrs.evolve(first, content="x")])
    assert await conv.messages() == [first, second]
    changed = [attrs.evolve(first, content="x", user_id=None), attrs.evolve(second, content="y")]
    assert await rewrite(conv.tenant_id, changed) == 2
    assert await conv.messages() == changed


async def _checkpoints(conv: Conversation, steps: int) -> list[Checkpoint]:
    made: list[Checkpoint] = []
    history: list[Message] = []
    for i in range(steps):
        history = [*history, *(await conv.add_round(i))]
        made.append(await conv.store.create_checkpoint(Checkpoint(
            tenant_id=conv.tenant_id, session_id=conv.id, history=history,
            parent_id=made[-1].id if made else None,
        )))  # fmt: skip
    return made


async def test_record_hooks_refuse_a_stale_parent_and_rewrite_whole(
    store: threadline.Store,
) -> None:
    conv = await new_conversation(store)
    made = await _checkpoints(conv, 3)
    plugin, t, s = pg(store), conv.tenant_id, conv.id
    chain = await plugin.threadline_read_checkpoint_records(t, made[2].id, True)
    assert [r.id for r in chain] == [c.id for c in reversed(made)]
    assert [r.id for r in await plugin.threadline_read_checkpoint_records(t, made[2].id, False)
            ] == [made[2].id]  # fmt: skip
    child = CheckpointRecord(
        Checkpoint(tenant_id=t, session_id=s, parent_id=made[2].id), chain[0].record, 3, 7
    )
    with pytest.raises(StaleRecordError):
        await plugin.threadline_insert_checkpoint_record(child, chain[0].tag + 1)
    with pytest.raises(NotFoundError):
        await plugin.threadline_rewrite_checkpoint_records(
            new_id(), s, RecordRewrite((), [made[0].id], {})
        )
    latest = await plugin.threadline_list_checkpoint_records(t, s, None, True)
    assert latest[0] == chain[0]  # the newest record whole, then its chain
    assert [r.id for r in latest] == [r.id for r in chain]
    with pytest.raises(StaleRecordError):  # a plan made before the last checkpoint is stale
        await plugin.threadline_rewrite_checkpoint_records(
            t, s, RecordRewrite((), [made[0].id], {r.id: r.tag for r in chain[1:]})
        )
    assert await store.list_checkpoints(t, session_id=s) == made


@pytest_asyncio.fixture
async def twin(database_url: str, make_url: Callable[..., str]) -> AsyncIterator[threadline.Store]:
    """A second store in a schema of its own, for the same data written twice."""
    name = f"t_{secrets.token_hex(5)}"
    opened = await threadline.connect(make_url(schema=name))
    yield opened
    await opened.close()
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def _write(store: threadline.Store, sessions: list[Any], rows: list[Any]) -> None:
    for session in sessions:
        await store.create_session(session)
    for row in rows:
        if isinstance(row, Message):
            await store.save_message(row)
        elif isinstance(row, ApiCall):
            await store.save_api_call(row)
        else:
            await store.create_checkpoint(row)


async def _contents(store: threadline.Store, tenant: str) -> list[Any]:
    out: list[Any] = []
    for session in sorted(await store.list_sessions(tenant, limit=100), key=lambda s: s.id):
        sid = session.id
        out += [session.id, session.user_id, await store.get_messages(tenant, sid)]
        out += [await store.list_api_calls(tenant, sid)]
        out += [await store.list_checkpoints(tenant, session_id=sid)]
    return out


async def test_erase_and_prune_answer_as_the_defaults(
    store: threadline.Store, twin: threadline.Store
) -> None:
    """The one-transaction overrides leave exactly what the defaults leave, counts too."""
    tenant, a, b = new_id(), new_id(), new_id()
    sessions, rows = [], []
    for owner in (a, a, b):
        session = threadline.Session(tenant_id=tenant, user_id=owner)
        sessions.append(session)
        history: list[Message] = []
        parent = None
        for i in range(6):
            who = b if i % 3 == 1 else owner
            m = Message(session_id=session.id, tenant_id=tenant, user_id=who, role="user",
                        content=f"{who[-4:]} says {i}", metadata={"i": i})  # fmt: skip
            history.append(m)
            rows.append(m)
            rows.append(ApiCall(session_id=session.id, tenant_id=tenant, user_id=who,
                                model="m", status="success"))  # fmt: skip
            checkpoint = Checkpoint(tenant_id=tenant, session_id=session.id,
                                    history=list(history), parent_id=parent)  # fmt: skip
            rows.append(checkpoint)
            parent = checkpoint.id
    for each in (store, twin):
        pg(each).snapshot_every = 4  # a snapshot mid-run: prune rewrites a kept delta
        await _write(each, sessions, rows)
    erase = {"tenant_id": tenant, "user_id": b}
    for dry_run in (True, False):
        counts = await store.erase_user(dry_run=dry_run, **erase)
        assert counts == await default(twin, "threadline_erase_user", dry_run=dry_run, **erase)
    assert counts["sessions"] == 1 and counts["messages_redacted"] == 4
    assert await _contents(store, tenant) == await _contents(twin, tenant)
    kept = sessions[0].id
    prune = {"tenant_id": tenant, "session_id": kept, "keep": 3}
    for dry_run in (True, False):
        gone = await store.prune_checkpoints(dry_run=dry_run, **prune)
        assert gone == await default(twin, "threadline_prune_checkpoints", dry_run=dry_run,
                                     **prune) == 3  # fmt: skip
    assert await _contents(store, tenant) == await _contents(twin, tenant)
