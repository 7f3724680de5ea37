"""Checkpoint writes on the event loop's thread (``InlineWriter.prepare``): a record and the
appends to its state run there when small and their session was used lately, else on the
writer thread; what a caller reads back, retries and errors stay as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _sqlite_support import hand_offs, integrity_ok, open_sqlite, query

from threadline import Checkpoint, Message, Session
from threadline.errors import ConflictError, NotFoundError
from threadline.ids import new_id
from threadline_sqlite import SQLiteStore
from threadline_sqlite.inline import MAX_INLINE_WRITE_BYTES


def _written(plugin: SQLiteStore) -> list[str]:
    """The names of the calls ``plugin`` hands to its writer thread from now on."""
    return hand_offs(plugin._writer)


def _checkpoint(session: Session, parent: Checkpoint | None, **state: Any) -> Checkpoint:
    history = (Message(session_id=session.id, tenant_id=session.tenant_id, role="user",
                       content=f"turn {new_id()}"),)  # fmt: skip
    return Checkpoint(
        tenant_id=session.tenant_id, session_id=session.id, state={"pw": [], **state},
        history=history, parent_id=parent.id if parent else None,
    )  # fmt: skip


async def test_small_checkpoint_writes_of_a_recent_session_run_on_the_loop(db_path: Path) -> None:
    """The first record of a session goes to the writer thread (it warms the session), and
    so do the appends to it; the next records and the appends to their state commit
    inline, numbered in order; a retried record comes back as stored, without a version
    gap; all survive a reopen."""
    store, plugin = await open_sqlite(db_path)
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        t = session.tenant_id
        written = _written(plugin)
        first = await store.create_checkpoint(_checkpoint(session, None))
        assert written == ["insert_checkpoint_record"]
        made = [first]
        for i in range(5):
            made.append(await store.create_checkpoint(_checkpoint(session, made[-1], n=i)))
            assert await store.append_checkpoint_state(t, made[-1].id, "pw", {"w": i})
            assert await store.append_checkpoint_state(t, made[-1].id, "pw", [i, "x"])
        assert written == ["insert_checkpoint_record"]  # everything after it inline
        # first's size is unknown (not encoded on the loop): its appends take the thread
        assert await store.append_checkpoint_state(t, first.id, "pw", "late")
        del written[1:]
        assert [c.version for c in made] == list(range(1, 7))
        retried = _checkpoint(session, made[-1])
        once = await store.create_checkpoint(retried)
        again = await store.create_checkpoint(retried)  # a retry, inline
        assert again.version == once.version == 7
        assert not await store.append_checkpoint_state(t, made[-1].id, "none", 1)
        assert written == ["insert_checkpoint_record"]
        assert not await store.append_checkpoint_state(t, new_id(), "pw", 1)  # not seen: thread
        newest = await store.create_checkpoint(_checkpoint(session, made[-1]))
        assert newest.version == 8  # the retry left no gap
    finally:
        await store.close()
    integrity_ok(db_path)
    reopened, _ = await open_sqlite(db_path)
    try:
        for i, c in enumerate(made[1:]):
            stored = await reopened.get_checkpoint(t, c.id)
            assert stored is not None and stored.history == c.history
            assert stored.state == {"pw": [{"w": i}, [i, "x"]], "n": i}
        stored = await reopened.get_checkpoint(t, first.id)
        assert stored is not None and stored.state == {"pw": ["late"]}
    finally:
        await reopened.close()


async def test_large_checkpoint_writes_go_to_the_writer_thread(db_path: Path) -> None:
    """A record over MAX_INLINE_WRITE_BYTES, and the appends that would take a state over
    it, are written on the writer thread, with the same results."""
    store, plugin = await open_sqlite(db_path)
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        t = session.tenant_id
        first = await store.create_checkpoint(_checkpoint(session, None))
        written = _written(plugin)
        big = await store.create_checkpoint(
            _checkpoint(session, first, blob="x" * MAX_INLINE_WRITE_BYTES)
        )
        assert written == ["insert_checkpoint_row"]  # encoded to size it, then handed over
        assert await store.append_checkpoint_state(t, big.id, "pw", 1)
        assert written == ["insert_checkpoint_row", "append_checkpoint_text"]
        small = await store.create_checkpoint(_checkpoint(session, big))
        assert await store.append_checkpoint_state(t, small.id, "pw", "y" * 100)
        assert len(written) == 2  # both inline
        near = MAX_INLINE_WRITE_BYTES - 50  # the state would grow past the bound
        assert await store.append_checkpoint_state(t, small.id, "pw", "z" * near)
        assert written[2:] == ["append_checkpoint_text"]
        stored = await store.get_checkpoint(t, small.id)
        assert stored is not None and stored.state["pw"] == ["y" * 100, "z" * near]
        stored = await store.get_checkpoint(t, big.id)
        assert stored is not None and stored.state["pw"] == [1]
    finally:
        await store.close()
    integrity_ok(db_path)


async def test_checkpoint_writes_at_synchronous_full_stay_on_the_writer_thread(
    db_path: Path,
) -> None:
    store, plugin = await open_sqlite(db_path, "full")
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        first = await store.create_checkpoint(_checkpoint(session, None))
        written = _written(plugin)
        second = await store.create_checkpoint(_checkpoint(session, first))
        assert await store.append_checkpoint_state(session.tenant_id, second.id, "pw", 1)
        assert written == ["insert_checkpoint_record", "append_checkpoint_state"]
    finally:
        await store.close()


async def test_inline_checkpoint_errors_are_the_stores(db_path: Path) -> None:
    """Run inline, a record of another session's id conflicts, a missing parent or session
    is not found, and a failed insert leaves no version used and nothing written."""
    store, plugin = await open_sqlite(db_path)
    try:
        tenant = new_id()
        one = await store.create_session(Session(tenant_id=tenant))
        two = await store.create_session(Session(tenant_id=tenant))
        a = await store.create_checkpoint(_checkpoint(one, None))
        b = await store.create_checkpoint(_checkpoint(two, None))
        written = _written(plugin)
        moved = _checkpoint(two, b)
        taken = Checkpoint(
            id=a.id, tenant_id=tenant, session_id=two.id, state={}, parent_id=b.id
        )  # a's id in the other session
        with pytest.raises(ConflictError):
            await store.create_checkpoint(taken)
        orphan = Checkpoint(tenant_id=tenant, session_id=two.id, parent_id=a.id)  # a is one's
        with pytest.raises(NotFoundError):
            await store.create_checkpoint(orphan)
        assert written == []  # all inline
        done = await store.create_checkpoint(moved)
        assert done.version == 2  # the failures used no version
        rows = query(db_path, "SELECT count(*) FROM entity_checkpoint")
        assert rows == [(3,)]
    finally:
        await store.close()
    integrity_ok(db_path)
