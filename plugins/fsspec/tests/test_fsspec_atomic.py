"""Atomic writes: no reader ever sees a half-written file, whatever happens mid-write."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import time
from pathlib import Path

import attrs
import pytest
from _fsspec_support import start_child, temporary_files, visible_files

import threadline
from threadline import Message, Session, StoreError
from threadline.ids import new_id


def _all_files_parse(root: Path) -> int:
    files = visible_files(root)
    for path in files:
        json.loads(path.read_bytes())  # a torn write would fail here
    return len(files)


@pytest.mark.parametrize("delay", [0.2, 0.6])
async def test_a_writer_killed_mid_write_leaves_only_whole_files(root: Path, delay: float) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    await store.close()

    child = start_child("scribble", str(root), session.tenant_id, session.id)
    try:
        segments = root / "tenants" / session.tenant_id / "sessions" / session.id / "messages"
        deadline = time.monotonic() + 120  # a hang guard: the child may start slowly
        while len(list(segments.glob("*.json"))) < 2:  # it is writing 1 MB files by now
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(delay)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()

    assert _all_files_parse(root) > 0
    store = await threadline.connect(f"file://{root}")
    try:
        messages = await store.get_messages(session.tenant_id, session.id)
        assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
        assert all(len(m.content) >= 1024 * 1024 for m in messages)
        assert await store.count_messages(session.tenant_id, session.id) == len(messages)
        leftover = sum(m.status == "streaming" for m in messages)
        assert await store.interrupt_streaming(session.tenant_id, session.id) == leftover
        after = await store.save_message(
            Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="ok")
        )
        assert after.seq == len(messages) + 1
    finally:
        await store.close()


@pytest.mark.parametrize("failing", ["replace", "link", "fsync"])
async def test_a_failed_write_changes_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    kept = await store.save_message(
        Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="kept")
    )
    partial = await store.save_message(
        Message(
            session_id=session.id,
            tenant_id=session.tenant_id,
            role="assistant",
            content="Hel",
            status="streaming",
        )
    )
    before = {p: p.read_bytes() for p in visible_files(root)}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(StoreError):
        await store.save_message(
            Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="x")
        )
    if failing != "link":  # replacing a file never links
        with pytest.raises(StoreError):
            await store.update_message(attrs.evolve(partial, content="Hello!" * 1000))
    monkeypatch.undo()

    # Nothing half-written under a final name, no temporary file left behind ...
    assert temporary_files(root) == []
    after = {p: p.read_bytes() for p in visible_files(root)}
    changed = {p for p in after if before.get(p) != after[p]}
    # ... and the only files that may have changed are indexes pointing at nothing.
    assert all("ids" in p.parts for p in changed), changed
    assert await store.get_messages(session.tenant_id, session.id) == [kept, partial]
    again = await store.save_message(
        Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="y")
    )
    assert again.seq == 3
    await store.close()


async def test_reopening_a_crashed_session_sweeps_its_temporary_files(tmp_path: Path) -> None:
    import threadline
    from threadline.ids import new_id

    store = await threadline.connect(f"file://{tmp_path}")
    try:
        ctx = await threadline.PersistenceContext.open(store, tenant_id=new_id())
        await ctx.save_user_message("hi")
        await ctx.save_assistant_message("half", status="streaming")
        [folder] = {
            p.parent
            for p in tmp_path.rglob("*.json")
            if "sessions" in p.parts and p.parent.name == "messages"
        }
        stale = folder / ".tmp-12345-1-1.part"
        stale.write_bytes(b'{"half written')
        again = await threadline.PersistenceContext.open(
            store, tenant_id=ctx.tenant_id, session_id=ctx.session_id
        )
        assert again.interrupted == 1
        assert not stale.exists()
        assert [m.content for m in await again.get_history()] == ["hi", "half"]
    finally:
        await store.close()
