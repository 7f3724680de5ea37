"""Appends on the event loop's thread (``threadline_sqlite.inline.InlineWriter``): when they
run there, when they go to the writer thread, and that nothing a user relies on changes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from _sqlite_support import hand_offs, integrity_ok, open_sqlite

import threadline
from threadline import Message, Session
from threadline.ids import new_id
from threadline_sqlite import SQLiteStore, inline
from threadline_sqlite.inline import MAX_INLINE_WRITE_ROWS


def _msg(session: Session, role: str, content: str = "") -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, role=role,  # type: ignore[arg-type]
                   content=content, user_id=session.user_id)  # fmt: skip


def _written(plugin: SQLiteStore) -> list[str]:
    """The names of the calls ``plugin`` hands to its writer thread from now on."""
    return hand_offs(plugin._writer)


async def test_appends_of_a_recent_session_run_on_the_loop(db_path: Path) -> None:
    """At ``synchronous=normal`` an append to a session the store wrote lately, and a batch
    of up to MAX_INLINE_WRITE_ROWS, commit without the writer thread; a bigger batch and a
    new session's first append go to it. Seqs stay contiguous and everything reads back."""
    store, plugin = await open_sqlite(db_path)
    try:
        session = await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))
        t, s = session.tenant_id, session.id
        written = _written(plugin)
        first = await store.save_message(_msg(session, "system", "be brief"))
        assert written == ["save_message"]  # unseen: the writer thread warms it
        one = await store.save_message(_msg(session, "user", "hi"))
        small = await store.save_messages(
            [_msg(session, "assistant", f"m{i}") for i in range(MAX_INLINE_WRITE_ROWS)]
        )
        assert written == ["save_message"]  # both inline
        big = await store.save_messages(
            [_msg(session, "user", f"b{i}") for i in range(MAX_INLINE_WRITE_ROWS + 1)]
        )
        assert written == ["save_message", "save_messages"]
        stored = [first, one, *small, *big]
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
        assert await store.read_messages(t, s) == stored
        assert await store.count_messages(t, s) == len(stored)
        again = await store.save_message(one)  # an idempotent retry, inline: no gap
        assert again == one and await store.count_messages(t, s) == len(stored)
    finally:
        await store.close()
    integrity_ok(db_path)
    reopened, _ = await open_sqlite(db_path)
    try:
        assert await reopened.read_messages(t, s) == stored  # committed, nothing lost
    finally:
        await reopened.close()


async def test_appends_at_synchronous_full_stay_on_the_writer_thread(db_path: Path) -> None:
    """A commit at ``full`` waits for an fsync: it never runs on the loop."""
    store, plugin = await open_sqlite(db_path, "full")
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        written = _written(plugin)
        for i in range(3):
            await store.save_message(_msg(session, "user", f"m{i}"))
        assert written == ["save_message"] * 3
    finally:
        await store.close()


async def test_an_append_waits_on_the_writer_thread_while_another_connection_writes(
    db_path: Path,
) -> None:
    """Another connection (another process) holding the write lock: the inline attempt
    gives up at once and the writer thread waits for the lock; the loop keeps running."""
    store, plugin = await open_sqlite(db_path)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        await store.save_message(_msg(session, "user", "warm"))
        written = _written(plugin)
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(store.save_message(_msg(session, "assistant", "later")))
        for _ in range(20):  # the loop runs other tasks meanwhile
            await asyncio.sleep(0)
        assert written == ["save_message"] and not task.done()
        other.execute("COMMIT")
        saved = await task
        assert saved.seq == 2
        assert await store.count_messages(session.tenant_id, session.id) == 2
    finally:
        other.close()
        await store.close()


async def test_an_append_never_overtakes_a_queued_write(db_path: Path) -> None:
    """While the writer thread has work queued, an append queues behind it instead of
    running inline: one store's writes keep the order they were made in."""
    store, plugin = await open_sqlite(db_path)
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        t, s = session.tenant_id, session.id
        await store.save_message(_msg(session, "user", "warm"))
        release = threading.Event()

        def slow_count(db: sqlite3.Connection) -> int:
            release.wait(30)
            row = db.execute("SELECT last_seq FROM entity_session WHERE id = ?", (s,))
            return int(row.fetchone()[0])

        queued = plugin.run_write(slow_count)
        task = asyncio.create_task(store.save_message(_msg(session, "assistant", "after")))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()  # behind the queued write, not inline
        release.set()
        assert await queued == 1  # the queued write saw the store before the append
        assert (await task).seq == 2
        await store.save_message(_msg(session, "user", "inline again"))
        assert await store.count_messages(t, s) == 3
    finally:
        release.set()
        await store.close()


async def test_inline_appends_keep_the_wal_checkpointed(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline connection never checkpoints on the loop (an fsync); the writer thread
    does it every so many pages (here 100), so the WAL file stops growing."""
    monkeypatch.setattr(inline, "_CHECKPOINT_PAGES", 100)
    store, _ = await open_sqlite(db_path)
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        text = "x" * 3000
        await store.save_message(_msg(session, "user", text))
        for i in range(300):  # without checkpoints: a WAL of ~2,400 pages (10 MB)
            await store.save_message(_msg(session, "user" if i % 2 else "assistant", text))
        await plugin_idle(store)
        wal = Path(f"{db_path}-wal")
        assert wal.stat().st_size < 2**20, wal.stat().st_size
        assert await store.count_messages(session.tenant_id, session.id) == 301
    finally:
        await store.close()
    integrity_ok(db_path)
    assert os.path.getsize(db_path) > 300 * 3000  # the rows reached the database file


async def plugin_idle(store: threadline.Store) -> None:
    """Wait for the writer thread's queue (a job behind whatever is queued there)."""
    plugin = store.primary
    assert isinstance(plugin, SQLiteStore)
    await plugin.run_write(lambda db: None)
