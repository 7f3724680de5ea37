"""Behaviour specific to the SQLite store: threads, indexes, errors, exact round trips."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest
from _sqlite_support import hand_offs, integrity_ok, query

import threadline
from threadline import (
    Checkpoint,
    Message,
    Session,
    StoreError,
    StoreUnavailableError,
    ToolCall,
)
from threadline.ids import new_id
from threadline.storekit.window import select_window
from threadline_sqlite import SQLiteStore, messages, window


async def _session(store: threadline.Store) -> Session:
    return await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))


def _msg(session: Session, role: str, content: str = "", **fields: object) -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, role=role,  # type: ignore[arg-type]
                   content=content, **fields)  # type: ignore[arg-type]  # fmt: skip


# -- the event loop -------------------------------------------------------------------------


async def test_event_loop_keeps_running_during_a_big_write(store: threadline.Store) -> None:
    session = await _session(store)
    batch = [_msg(session, "user", "x" * 2000, metadata={"i": i}) for i in range(20_000)]
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    started = time.perf_counter()
    stored = await store.save_messages(batch)
    elapsed = time.perf_counter() - started
    done.set()
    await task
    assert len(stored) == 20_000
    during = [t for t in ticks if started <= t <= started + elapsed]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert elapsed > 0.05, "the batch was too small to prove anything"
    assert len(during) >= 10, f"only {len(during)} ticks in {elapsed:.3f}s of writing"
    assert max(gaps) < max(0.25, elapsed / 3), f"the loop stalled for {max(gaps):.3f}s"


async def test_work_runs_on_the_store_threads(store: threadline.Store) -> None:
    sqlite_store = store.primary
    assert isinstance(sqlite_store, SQLiteStore)

    def thread_name(connection: sqlite3.Connection) -> str:
        return threading.current_thread().name

    assert await sqlite_store.run_write(thread_name) == "threadline-sqlite-writer"
    assert await sqlite_store.run_read(thread_name) == "threadline-sqlite-reader"


def _hand_offs(plugin: SQLiteStore) -> list[str]:
    """The names of the calls ``plugin`` hands to its reader thread from now on."""
    return hand_offs(plugin._reader)


async def test_small_reads_of_a_recent_session_run_on_the_loop(db_path: Path) -> None:
    """A window, count or session read of a session this store used lately runs on the
    loop's thread (no hand-off); an unseen session's first read, and a whole-session read
    go to the reader thread. Results are the same."""
    store = await threadline.connect(f"sqlite:///{db_path}")
    try:
        plugin = store.primary
        assert isinstance(plugin, SQLiteStore)
        session = await _session(store)
        t, s = session.tenant_id, session.id
        submitted = _hand_offs(plugin)
        assert await store.load_window(t, s, 5) == []  # unseen by the loop: reader thread
        assert submitted == ["load_window"]
        first = await store.save_message(_msg(session, "user", "hello"))
        assert await store.load_window(t, s, 5) == [first]
        assert await store.count_messages(t, s) == 1
        found = await store.get_session(t, s)
        assert found is not None and found.id == s and found.updated_at > session.updated_at
        assert submitted == ["load_window"]  # all three inline
        assert await store.load_window(t, s, None) == [first]  # the whole session: thread
        assert submitted[-1] == "load_window"
        other = await _session(store)
        assert await store.count_messages(other.tenant_id, other.id) == 0  # created, not
        assert submitted[-1] == "count_messages"  # written: its first read is on the thread
    finally:
        await store.close()


async def test_bounded_message_reads_of_a_recent_session_run_on_the_loop(db_path: Path) -> None:
    """``read_messages`` of at most MAX_INLINE_ROWS rows runs on the loop's thread, and so
    does a whole read of a session that holds no more; a longer session is read on the
    reader thread from then on. The messages are the same on both paths."""
    from threadline_sqlite.inline import MAX_INLINE_ROWS

    store = await threadline.connect(f"sqlite:///{db_path}")
    try:
        plugin = store.primary
        assert isinstance(plugin, SQLiteStore)
        session = await _session(store)
        t, s = session.tenant_id, session.id
        submitted = _hand_offs(plugin)
        saved = await store.save_messages(
            [_msg(session, "user" if i % 2 == 0 else "assistant", f"m{i}",
                  metadata={"i": i} if i % 3 else {}) for i in range(MAX_INLINE_ROWS)]
        )  # fmt: skip
        assert await store.read_messages(t, s, limit=20, newest_first=True) == saved[::-1][:20]
        assert await store.read_messages(t, s, after_seq=5, before_seq=9) == saved[5:8]
        assert await store.read_messages(t, s) == saved  # exactly MAX_INLINE_ROWS: inline
        assert submitted == []
        more = await store.save_message(_msg(session, "user", "one too many"))
        assert await store.read_messages(t, s) == [*saved, more]  # tried inline, then thread
        assert submitted == ["read_messages"]
        assert await store.read_messages(t, s, after_seq=1) == [*saved[1:], more]
        assert submitted == ["read_messages"] * 2  # remembered as long: straight to the thread
        assert await store.read_messages(t, s, limit=3, newest_first=True) == [more, *saved[:-3:-1]]
        assert len(submitted) == 2  # a bounded read of it still inline
        read = await store.read_messages(t, s, limit=1)
        assert read == saved[:1] and read[0].session_id == s and read[0].tenant_id == t
        assert await store.read_messages(new_id(), s, limit=5) == []  # another tenant's
    finally:
        await store.close()


async def test_bounded_row_reads_of_a_recent_session_run_on_the_loop(db_path: Path) -> None:
    """``read_message_rows`` follows ``read_messages``' rule: at most MAX_INLINE_ROWS rows
    on the loop's thread, a longer session on the reader thread; the same rows either way."""
    from threadline_sqlite.inline import MAX_INLINE_ROWS

    store = await threadline.connect(f"sqlite:///{db_path}")
    try:
        plugin = store.primary
        assert isinstance(plugin, SQLiteStore)
        session = await _session(store)
        t, s = session.tenant_id, session.id
        submitted = _hand_offs(plugin)
        saved = await store.save_messages(
            [_msg(session, "user", f"m{i}") for i in range(MAX_INLINE_ROWS)]
        )
        fields = ("seq", "id", "content")
        rows = [(m.seq, m.id, m.content) for m in saved]
        assert await store.read_message_rows(t, s, fields) == rows  # the whole session
        assert (
            await store.read_message_rows(t, s, fields, limit=3, newest_first=True)
            == (rows[::-1][:3])
        )
        assert submitted == []
        more = await store.save_message(_msg(session, "user", "one too many"))
        assert await store.read_message_rows(t, s, fields) == [
            *rows,
            (more.seq, more.id, more.content),
        ]  # tried inline, then the thread
        assert submitted == ["read_message_rows"]
        assert await store.read_message_rows(t, s, ("id",), after_seq=1, limit=2) == [
            (saved[1].id,),
            (saved[2].id,),
        ]
        assert len(submitted) == 1  # a bounded read of it still inline
    finally:
        await store.close()


async def test_a_new_session_never_sees_the_messages_of_a_deleted_one(db_path: Path) -> None:
    """Sessions are keyed by an integer (migration 0009) that a new session may get again
    once the session holding the highest key is deleted: its messages went with it, so
    the new session starts empty, numbered from 1; sessions inserted without the store
    get a key too."""
    store = await threadline.connect(f"sqlite:///{db_path}")
    try:
        kept = await _session(store)
        await store.save_message(_msg(kept, "user", "kept"))
        doomed = await _session(store)
        await store.save_messages([_msg(doomed, "user", f"gone {i}") for i in range(5)])
        assert await store.delete_session(doomed.tenant_id, doomed.id)
        fresh = await store.create_session(Session(tenant_id=doomed.tenant_id))
        t, s = fresh.tenant_id, fresh.id
        assert await store.load_window(t, s, 3) == []
        assert await store.read_messages(t, s, limit=10, newest_first=True) == []
        assert await store.count_messages(t, s) == 0
        first = await store.save_message(_msg(fresh, "user", "new"))
        assert first.seq == 1 and await store.get_messages(t, s) == [first]
        assert [m.content for m in await store.get_messages(kept.tenant_id, kept.id)] == ["kept"]
    finally:
        await store.close()
    keys = query(db_path, "SELECT id, key FROM entity_session")
    assert len({key for _, key in keys}) == len(keys) == 2 and None not in {k for _, k in keys}
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:  # a session written by another tool, without a key, gets the next one
        raw.execute(
            "INSERT INTO entity_session (id, tenant_id, metadata, created_at, updated_at) "
            "VALUES (?, ?, '{}', 0, 0)",
            (new_id(), new_id()),
        )
        got = raw.execute("SELECT max(key), count(DISTINCT key) FROM entity_session").fetchone()
        assert got == (max(key for _, key in keys) + 1, 3)
    finally:
        raw.close()


async def test_reads_do_not_queue_behind_a_write_waiting_for_the_lock(db_path: Path) -> None:
    """Read hooks run on the reader thread: a write stuck on another process's lock
    delays no read of the session (windows, counts, checkpoints, configs)."""
    store = await threadline.connect(f"sqlite:///{db_path}?busy_timeout=3000")
    session = await _session(store)
    first = await store.save_message(_msg(session, "user", "before"))
    t, s = session.tenant_id, session.id
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        waiting = asyncio.create_task(store.save_message(_msg(session, "user", "waits")))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        assert await store.get_session(t, s) is not None
        assert await store.load_window(t, s, 5) == [first]
        assert await store.get_messages(t, s) == [first]
        assert await store.count_messages(t, s) == 1
        assert await store.get_latest_checkpoint(t, s) is None
        assert await store.list_sessions(t) != []
        assert time.perf_counter() - started < 1.0
        assert not waiting.done()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert (await waiting).seq == 2
    await store.close()


async def test_close_stops_the_threads(db_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    store = await threadline.connect(f"sqlite:///{db_path}")
    sqlite_store = store.primary
    assert isinstance(sqlite_store, SQLiteStore)
    await store.close()
    await asyncio.sleep(0.05)
    names = [t.name for t in threading.enumerate() if t.name not in before]
    assert not [n for n in names if n.startswith("threadline-sqlite")]
    assert sqlite_store.closed
    with pytest.raises(StoreError):
        await sqlite_store.threadline_count_messages(new_id(), new_id())


# -- the window: indexed, and exactly select_window ------------------------------------------


def _plan(connection: sqlite3.Connection, sql: str, params: object) -> list[str]:
    return [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]


async def test_window_queries_use_indexes_not_scans(store: threadline.Store) -> None:
    sqlite_store = store.primary
    assert isinstance(sqlite_store, SQLiteStore)
    queries = {
        "window": (window.WINDOW, {"session": "s", "tenant": "t", "skip": 1}),
        "systems": (window.SYSTEM_BEFORE, ("s", "t", 5)),
        "tail": (messages.read_sql(False, False, False), ("s", "t", 0, 20)),
        "last": (messages.read_sql(True, True, False), ("s", "t", 0, 9, 20)),
        "system head": (messages.read_sql(True, False, True), ("s", "t", 0, 9, "system", -1)),
        "range": (window.MESSAGES_RANGE, ("s", "t", 1, 9)),
        "caller": (window.NEAREST_CALLERS.format(marks="?,?"), ("s", 9, "a", "b")),
        "round": (window.ROUND_START, ("s", 9)),
        "count": (messages.COUNT, ("s", "t")),
        "streaming": (messages.INTERRUPT, ("s", "t")),
    }
    for name, (sql, params) in queries.items():
        plan = await sqlite_store.run_read(_plan, sql, params)
        text = " | ".join(plan)
        assert "SCAN entity_message" not in text and "TEMP B-TREE" not in text, (name, text)
        assert any("USING" in step for step in plan), (name, text)
    window_plan = " | ".join(await sqlite_store.run_read(_plan, *queries["window"]))
    assert "INDEX idx_message_round" in window_plan  # the n-th last user, the system head
    assert "USING PRIMARY KEY (session_key=? AND seq>?)" in window_plan  # the rounds after it


def _random_conversation(rng: random.Random, session: Session, n: int) -> list[Message]:
    messages: list[Message] = []
    pending: list[str] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.05:
            messages.append(_msg(session, "system", f"rule {i}"))
        elif roll < 0.35:
            messages.append(_msg(session, "user", f"q {i}"))
        elif roll < 0.55:
            count = rng.randint(1, 2)
            calls = [ToolCall(id=f"c{rng.randrange(12)}", name="t") for _ in range(count)]
            pending.extend(c.id for c in calls)
            messages.append(_msg(session, "assistant", tool_calls=calls))
        elif roll < 0.8 and pending:
            call_id = pending.pop(rng.randrange(len(pending)))
            messages.append(_msg(session, "tool", "r", tool_call_id=call_id))
        elif roll < 0.85:  # a result whose call was never made (or is long gone)
            messages.append(_msg(session, "tool", "r", tool_call_id=f"c{rng.randrange(20)}"))
        else:
            messages.append(_msg(session, "assistant", f"a {i}"))
    return messages


async def test_window_matches_select_window_on_random_sessions(store: threadline.Store) -> None:
    rng = random.Random(7)
    for _ in range(12):
        session = await _session(store)
        stored = await store.save_messages(_random_conversation(rng, session, rng.randint(1, 150)))
        for rounds in (None, 0, 1, 2, 3, 5, 8, 40, 1000):
            expected = select_window(stored, rounds)
            assert await store.load_window(session.tenant_id, session.id, rounds) == expected


async def test_window_grows_back_across_many_rounds(store: threadline.Store) -> None:
    session = await _session(store)
    call = ToolCall(id="slow", name="t")
    head = [_msg(session, "system", "s"), _msg(session, "user", "q0"),
            _msg(session, "assistant", tool_calls=[call])]  # fmt: skip
    middle = [_msg(session, "user" if i % 2 == 0 else "assistant", str(i)) for i in range(200)]
    tail = [_msg(session, "user", "late"), _msg(session, "tool", "done", tool_call_id="slow")]
    stored = await store.save_messages(head + middle + tail)
    window = await store.load_window(session.tenant_id, session.id, 1)
    assert window == select_window(stored, 1) == stored


async def test_window_after_a_tool_call_is_updated(store: threadline.Store) -> None:
    session = await _session(store)
    first = await store.save_messages(
        [_msg(session, "user", "q"), _msg(session, "assistant", status="streaming")]
    )
    calling = await store.update_message(
        attrs.evolve(first[1], tool_calls=[ToolCall(id="late", name="t")], status="complete")
    )
    rest = await store.save_messages(
        [_msg(session, "user", "again"), _msg(session, "tool", "x", tool_call_id="late")]
    )
    stored = [first[0], calling, *rest]
    assert await store.load_window(session.tenant_id, session.id, 1) == select_window(stored, 1)
    assert await store.load_window(session.tenant_id, session.id, 1) == stored


# -- exact round trips ----------------------------------------------------------------------


async def test_timestamps_round_trip_to_the_microsecond(store: threadline.Store) -> None:
    paris = timezone(timedelta(hours=2))
    moments = [
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=paris),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=timezone.utc),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc),
        datetime(1, 1, 1, tzinfo=timezone.utc),
    ]
    session = await _session(store)
    for moment in moments:
        saved = await store.save_message(_msg(session, "user", created_at=moment))
        assert saved.created_at == moment and saved.created_at.tzinfo == timezone.utc
    read = await store.get_messages(session.tenant_id, session.id)
    assert [m.created_at for m in read] == moments
    assert all(m.created_at.utcoffset() == timedelta(0) for m in read)


async def test_set_session_updated_at_stores_integer_microseconds(
    store: threadline.Store, db_path: Path
) -> None:
    session = await _session(store)
    then = datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=timezone(timedelta(hours=-4)))
    stored = await store.set_session_updated_at(session.tenant_id, session.id, then)
    assert stored.updated_at == then
    connection = sqlite3.connect(db_path)
    try:
        row = connection.execute(
            "SELECT updated_at, typeof(updated_at) FROM entity_session WHERE id = ?", (session.id,)
        ).fetchone()
    finally:
        connection.close()
    assert row == ((then - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1),
                   "integer")  # fmt: skip


async def test_checkpoint_history_round_trips_hostile_content(store: threadline.Store) -> None:
    session = await _session(store)
    history = await store.save_messages([
        _msg(session, "system", "NUL\x00 and 🧵"),
        _msg(session, "assistant", tool_calls=[ToolCall(id="c", name="n", arguments={"a": [1]})],
             metadata={"k\x00": None}),
        _msg(session, "tool", "x" * 1_000_000, tool_call_id="c", name="n"),
    ])  # fmt: skip
    checkpoint = await store.create_checkpoint(
        Checkpoint(
            tenant_id=session.tenant_id,
            session_id=session.id,
            history=history,
            input=["a", {"b": 1.25}],
            state={"\x00": "\x00"},
        )  # fmt: skip
    )
    assert await store.get_checkpoint(session.tenant_id, checkpoint.id) == checkpoint
    assert checkpoint.history == tuple(history)


# -- errors: typed, never silent ----------------------------------------------------------------


async def test_a_lock_held_too_long_is_store_unavailable(db_path: Path) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}?busy_timeout=100")
    session = await _session(store)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.perf_counter()
        with pytest.raises(StoreUnavailableError, match="locked"):
            await store.save_message(_msg(session, "user", "blocked"))
        assert 0.05 < time.perf_counter() - started < 5
        # reads go on while another connection holds the write lock (WAL)
        assert await store.count_messages(session.tenant_id, session.id) == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    saved = await store.save_message(_msg(session, "user", "after"))
    assert saved.seq == 1  # the failed attempt left no gap
    await store.close()
    integrity_ok(db_path)


async def test_a_writer_waits_for_a_short_lock(db_path: Path) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}?busy_timeout=5000")
    session = await _session(store)
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: blocker.execute("COMMIT"))
    release.start()
    try:
        saved = await store.save_message(_msg(session, "user", "waited"))
        assert saved.seq == 1
    finally:
        release.join()
        blocker.close()
        await store.close()


async def test_a_file_that_is_not_a_database_is_a_store_error(db_path: Path) -> None:
    with open(db_path, "wb") as garbage:  # noqa: ASYNC230
        garbage.write(b"this is not a database" * 100)
    with pytest.raises(StoreError) as caught:
        await threadline.connect(f"sqlite:///{db_path}")
    assert not isinstance(caught.value, StoreUnavailableError)
    assert "not a database" in str(caught.value)


async def test_a_table_gone_mid_operation_is_a_store_error(db_path: Path) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}")
    session = await _session(store)
    await store.save_message(_msg(session, "user", "kept"))
    vandal = sqlite3.connect(db_path, isolation_level=None)
    vandal.execute("PRAGMA foreign_keys = OFF")
    vandal.execute("DROP TABLE entity_api_call")
    vandal.close()
    with pytest.raises(StoreError, match="entity_api_call"):
        await store.save_api_call(
            threadline.ApiCall(
                tenant_id=session.tenant_id, session_id=session.id, model="m", status="success"
            )  # fmt: skip
        )
    # the rest of the store still works, nothing was lost
    assert [m.content for m in await store.get_messages(session.tenant_id, session.id)] == ["kept"]
    await store.close()


async def test_a_directory_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    with open(blocker, "w") as plain:  # noqa: ASYNC230
        plain.write("x")
    with pytest.raises(StoreError):
        await threadline.connect(f"sqlite:///{blocker}/sub/chat.db")


def test_rows_cover_every_model_field() -> None:
    """A field added to a model must get a column, or reads would build half a model."""
    from threadline import AgentRecord, ApiCall, ProviderRecord
    from threadline_sqlite import rows

    def columns(text: str) -> set[str]:
        return {name.strip().strip('"') for name in text.split(",")}

    for model, text in (
        (Message, rows.MESSAGE_COLUMNS), (Session, rows.SESSION_COLUMNS),
        (ApiCall, rows.API_CALL_COLUMNS), (Checkpoint, rows.CHECKPOINT_COLUMNS),
        (AgentRecord, rows.AGENT_COLUMNS), (ProviderRecord, rows.PROVIDER_COLUMNS),
    ):  # fmt: skip
        extra = {"history_depth", "history_tag"} if model is Checkpoint else set()
        assert {a.name for a in attrs.fields(model)} | extra == columns(text), model.__name__
    assert tuple(n.strip() for n in rows.MESSAGE_COLUMNS.split(",")) == rows.MESSAGE_FIELDS


async def test_checkpoint_retry_with_reordered_keys_is_idempotent(store: threadline.Store) -> None:
    session = await _session(store)
    first = Checkpoint(tenant_id=session.tenant_id, session_id=session.id,
                       state={"a": 1, "b": [1, 2]}, input={"x": 1, "y": 2})  # fmt: skip
    stored = await store.create_checkpoint(first)
    retry = attrs.evolve(first, state={"b": [1, 2], "a": 1}, input={"y": 2, "x": 1})
    assert await store.create_checkpoint(retry) == stored
    with pytest.raises(threadline.ConflictError):
        await store.create_checkpoint(attrs.evolve(first, state={"a": 2}))
