"""erase_user on files: checkpoint records rewritten in place, caches, crashes part way."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import threadline
from threadline import Checkpoint, Message, Session, StoreError
from threadline.ids import new_id
from threadline.models import Role
from threadline.storekit.erasure import redact
from threadline_fsspec import FsspecStore


def _msg(
    session: Session, user: str | None, role: Role = "user", content: str = "", **fields: Any
) -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, role=role,
                   content=content, user_id=user, **fields)  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _checkpoint_docs(root: Path, session: Session) -> list[dict[str, Any]]:
    folder = root / "tenants" / session.tenant_id / "sessions" / session.id / "checkpoints"
    return [json.loads(p.read_text()) for p in sorted(folder.iterdir())]


async def _save(
    store: threadline.Store, session: Session, history: Any, parent: Checkpoint | None
) -> Checkpoint:
    return await store.create_checkpoint(
        Checkpoint(
            tenant_id=session.tenant_id,
            session_id=session.id,
            history=history,
            parent_id=None if parent is None else parent.id,
        )
    )


async def test_only_records_holding_the_user_change_and_no_cache_goes_stale(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    tenant, a, b = new_id(), new_id(), new_id()
    shared = await store.create_session(Session(tenant_id=tenant, user_id=a))
    quiet = await store.create_session(Session(tenant_id=tenant, user_id=a))
    secret = f"secret-{new_id()}"
    h1 = (_msg(shared, a, "system", "be nice"), _msg(shared, a, "user", "hi"))
    h2 = (*h1, _msg(shared, b, "user", f"{secret} 1"), _msg(shared, b, "user", f"{secret} 2"))
    h3 = (*h2, _msg(shared, a, "assistant", "A after B"))  # nothing of B's in its own part
    h4 = (*h1, _msg(shared, a, "assistant", "A only"))  # never held B's
    c1 = await _save(store, shared, h1, None)
    c2 = await _save(store, shared, h2, c1)
    c3 = await _save(store, shared, h3, c2)
    c4 = await _save(store, shared, h4, c1)
    await store.save_messages(list(h2))
    q = await _save(store, quiet, [_msg(quiet, a, "user", "quiet")], None)

    # Another process read c3 before the erasure: its cache holds the unredacted history.
    other = await threadline.connect(f"file://{root}")
    assert await other.get_checkpoint(tenant, c3.id) == c3
    before = _checkpoint_docs(root, shared)
    quiet_files = {k: v for k, v in _files(root).items() if quiet.id in k}

    assert (await store.erase_user(tenant, b, dry_run=True))["checkpoints_redacted"] == 2
    assert _checkpoint_docs(root, shared) == before
    assert (await store.erase_user(tenant, b))["checkpoints_redacted"] == 2
    after = _checkpoint_docs(root, shared)
    assert after[0] == before[0] and after[3] == before[3]  # c1, c4: not touched
    assert after[2]["history"] == before[2]["history"]  # c3's own part holds nothing of B's
    for old, new in zip(before[1:3], after[1:3]):  # c2, c3: a new tag, all else kept
        assert new["tag"] != old["tag"]
        assert {**new, "tag": 0, "history": 0} == {**old, "tag": 0, "history": 0}
        assert new["history"].get("keep") == old["history"].get("keep")
    assert not [k for k, v in _files(root).items() if secret.encode() in v]
    assert {k: v for k, v in _files(root).items() if quiet.id in k} == quiet_files

    # Both processes go on from c3: with the stale history and with the redacted one.
    redacted = tuple(redact(m) if m.user_id == b else m for m in h3)
    stale = await _save(other, shared, (*h3, _msg(shared, a, "user", "stale")), c3)
    fresh = await _save(other, shared, (*redacted, _msg(shared, a, "user", "go on")), c3)
    again = await _save(store, shared, (*h3, _msg(shared, a, "user", "stale too")), c3)
    for db in (store, other):
        got = await db.get_checkpoint(tenant, c3.id)
        assert got is not None and got.history == redacted
    reader = await threadline.connect(f"file://{root}")  # nothing cached
    for made in (fresh, stale, again, c4, q):
        assert await reader.get_checkpoint(made.tenant_id, made.id) == made
    expected = {"sessions": 0, "messages": 0, "messages_redacted": 0, "api_calls": 0,
                "checkpoints": 0, "checkpoints_redacted": 2}  # fmt: skip
    assert await reader.erase_user(tenant, b) == expected  # stale and again held B's again
    for db in (store, other, reader):
        await db.close()


@pytest.mark.parametrize("crash_after", range(5))
async def test_an_erasure_cut_short_leaves_every_checkpoint_readable(
    root: Path, crash_after: int
) -> None:
    store = await threadline.connect(f"file://{root}")
    plugin = store.primary
    assert isinstance(plugin, FsspecStore)
    tenant, a, b = new_id(), new_id(), new_id()
    session = await store.create_session(Session(tenant_id=tenant, user_id=a))
    p = (_msg(session, a, "user", "hi"), _msg(session, b, "user", "B in the parent"))
    c = (*p, _msg(session, None, "assistant", "to nobody"), _msg(session, b, "user", "B"))
    g = (*c, _msg(session, b, "user", "B again"))  # its user_id left out: same as before
    d = (*p, _msg(session, b, "user", "B on a branch"))  # likewise, after the parent's
    made = [await _save(store, session, p, None)]
    made.append(await _save(store, session, c, made[0]))
    made.append(await _save(store, session, g, made[1]))
    made.append(await _save(store, session, d, made[0]))
    write = plugin.backend.write
    written: list[str] = []

    def crashing_write(path: str, data: bytes, **kwargs: Any) -> None:
        if "/checkpoints/" in path:
            if len(written) == crash_after:
                raise OSError("the disk went away")
            written.append(path)
        write(path, data, **kwargs)

    plugin.backend.write = crashing_write  # type: ignore[method-assign]
    if crash_after < len(made):
        with pytest.raises(StoreError):
            await store.erase_user(tenant, b)
    else:
        assert (await store.erase_user(tenant, b))["checkpoints_redacted"] == len(made)
    plugin.backend.write = write  # type: ignore[method-assign]
    reader = await threadline.connect(f"file://{root}")
    for db in (store, reader):
        for old in made:
            new = await db.get_checkpoint(tenant, old.id)
            assert new is not None and len(new.history) == len(old.history)
            for was, now in zip(old.history, new.history):
                assert now == was or (was.user_id == b and now == redact(was))
    await reader.erase_user(tenant, b)  # a second run finishes the first
    for db in (store, reader):
        for old in made:
            new = await db.get_checkpoint(tenant, old.id)
            assert new is not None
            assert new.history == tuple(redact(m) if m.user_id == b else m for m in old.history)
    await reader.close()
    await store.close()


async def test_set_updated_at_reads_back_exactly_after_reopening(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    empty = await store.create_session(Session(tenant_id=session.tenant_id))
    await store.save_message(_msg(session, None, "user", "hi"))
    then = datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    for s in (session, empty):
        assert (await store.set_session_updated_at(s.tenant_id, s.id, then)).updated_at == then
    again = await threadline.connect(f"file://{root}")
    for s in (session, empty):
        got = await again.get_session(s.tenant_id, s.id)
        assert got is not None and got.updated_at == then
    await again.save_message(_msg(session, None, "user", "later"))
    moved = await again.get_session(session.tenant_id, session.id)
    assert moved is not None and moved.updated_at - then > timedelta(days=1)
    await again.close()
    await store.close()
