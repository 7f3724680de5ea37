"""The plugin is found through its entry point, and its log survives restarts and crashes."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

import threadline
from threadline import Checkpoint, Message, Session, StoreError, StoreUnavailableError
from threadline.cli import cli
from threadline.ids import new_id
from threadline.plugins import store_registry


def test_discovered_through_its_entry_point() -> None:
    entry = store_registry()["jsonl"]
    assert entry.plugin == "jsonl"  # the entry point's name, from pyproject.toml
    assert entry.factory.__module__ == "threadline_jsonl.plugin"


def test_listed_by_the_cli() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    [plugin] = json.loads(result.output)  # conftest let only this one load
    assert plugin["name"] == "threadline-jsonl"
    assert "threadline_register_stores" in plugin["hooks"]


async def test_survives_a_restart_and_a_torn_last_line(tmp_path: Path) -> None:
    url = f"jsonl:///{tmp_path}/chat.jsonl"
    store = await threadline.connect(url)
    session = await store.create_session(Session(tenant_id=new_id()))
    tenant, sid = session.tenant_id, session.id
    saved = await store.save_message(Message(session_id=sid, tenant_id=tenant, role="user"))
    await store.close()
    log = (tmp_path / "chat.jsonl").read_bytes()
    (tmp_path / "chat.jsonl").write_bytes(log + b'{"op": "messages", "ses')  # a crash mid-write
    store = await threadline.connect(url)
    assert await store.get_messages(tenant, sid) == [saved]
    again = await store.save_message(Message(session_id=sid, tenant_id=tenant, role="user"))
    assert again.seq == 2
    await store.close()
    store = await threadline.connect(url)
    assert [m.seq for m in await store.get_messages(tenant, sid)] == [1, 2]
    await store.close()


async def test_a_damaged_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "chat.jsonl").write_bytes(b'{"op": "session", "session": {}}\n')
    with pytest.raises(StoreError, match="line 1"):
        await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")


async def test_one_open_store_per_file(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("the lock is POSIX flock")
    store = await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")
    with pytest.raises(StoreUnavailableError):
        await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")
    await store.close()
    await (await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")).close()


async def test_erased_data_leaves_the_file(tmp_path: Path) -> None:
    store = await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")
    tenant, user = new_id(), new_id()
    for secret in ("my card is 4242-XQZ", "my address is 1 Main St"):
        session = await store.create_session(Session(tenant_id=tenant, user_id=user))
        await store.save_message(
            Message(session_id=session.id, tenant_id=tenant, role="user", content=secret)
        )
    kept = await store.create_session(Session(tenant_id=tenant, title="someone else's"))
    said = Message(session_id=kept.id, tenant_id=tenant, role="user", user_id=user)
    await store.save_message(attrs.evolve(said, content="call me on 555-0199"))
    assert b"4242-XQZ" in (tmp_path / "chat.jsonl").read_bytes()
    counts = await store.erase_user(tenant, user)
    assert (counts["messages"], counts["messages_redacted"]) == (2, 1)
    log = (tmp_path / "chat.jsonl").read_bytes()
    assert b"4242-XQZ" not in log and b"Main St" not in log and b"555-0199" not in log
    assert list(tmp_path.iterdir()) == [tmp_path / "chat.jsonl"]  # no temporary file left
    await store.close()
    store = await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")
    assert [s.id for s in await store.list_sessions(tenant)] == [kept.id]
    [redacted] = await store.get_messages(tenant, kept.id)
    assert (redacted.id, redacted.content, redacted.user_id) == (said.id, "", None)
    await store.close()


async def test_redacted_checkpoints_and_a_set_updated_at_survive_a_restart(tmp_path: Path) -> None:
    url = f"jsonl:///{tmp_path}/chat.jsonl"
    store = await threadline.connect(url)
    tenant, owner, guest = new_id(), new_id(), new_id()
    session = await store.create_session(Session(tenant_id=tenant, user_id=owner))

    def said(user_id: str, content: str) -> Message:
        return Message(
            session_id=session.id, tenant_id=tenant, role="user", content=content, user_id=user_id
        )

    first = await store.create_checkpoint(
        Checkpoint(
            tenant_id=tenant,
            session_id=session.id,
            history=[said(owner, "hi"), said(guest, "my card is 4242-XQZ")],
        )
    )
    await store.create_checkpoint(  # a delta on the first: it shares the guest's message
        Checkpoint(
            tenant_id=tenant,
            session_id=session.id,
            history=[*first.history, said(owner, "thanks")],
            parent_id=first.id,
        )
    )
    then = datetime(2024, 2, 29, 12, 0, 0, 123456, tzinfo=timezone.utc)
    await store.set_session_updated_at(tenant, session.id, then)
    assert (await store.erase_user(tenant, guest))["checkpoints_redacted"] == 2
    checkpoints = await store.list_checkpoints(tenant, session_id=session.id)
    assert [m.content for m in checkpoints[1].history] == ["hi", "", "thanks"]
    log = (tmp_path / "chat.jsonl").read_bytes()
    assert b"4242-XQZ" not in log
    # Compacted: one line per kind of row, the guest's message redacted in the record.
    assert {c["op"] for line in log.splitlines() for c in json.loads(line)} == {
        "sessions",
        "records",
    }
    await store.close()
    store = await threadline.connect(url)
    assert await store.list_checkpoints(tenant, session_id=session.id) == checkpoints
    reopened = await store.get_session(tenant, session.id)
    assert reopened is not None and reopened.updated_at == then
    await store.close()


async def test_activity_survives_a_restart(tmp_path: Path) -> None:
    """A checkpoint is activity: the line that stores it carries the session's new
    ``updated_at``, which a restart replays; other sessions keep theirs."""
    url = f"jsonl:///{tmp_path}/chat.jsonl"
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    store = await threadline.connect(url)
    tenant = new_id()
    graph, idle = [
        await store.create_session(Session(tenant_id=tenant, created_at=old, updated_at=old))
        for _ in range(2)
    ]
    checkpoint = await store.create_checkpoint(Checkpoint(tenant_id=tenant, session_id=graph.id))
    active = await store.get_session(tenant, graph.id)
    assert active is not None and active.updated_at > old
    await store.close()
    store = await threadline.connect(url)
    assert await store.get_session(tenant, graph.id) == active
    assert await store.get_session(tenant, idle.id) == idle
    assert await store.get_checkpoint(tenant, checkpoint.id) == checkpoint
    assert await store.delete_sessions_before(tenant, old + timedelta(seconds=1)) == 1
    assert [s.id for s in await store.list_sessions(tenant)] == [graph.id]
    await store.close()


async def test_an_update_appends_and_only_erasure_rewrites(tmp_path: Path) -> None:
    """A streamed reply's final text is one more line (the file is not rewritten per turn)."""
    store = await threadline.connect(f"jsonl:///{tmp_path}/chat.jsonl")
    session = await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))
    reply = await store.save_message(
        Message(session_id=session.id, tenant_id=session.tenant_id, role="assistant",
                status="streaming", content="Hel")
    )  # fmt: skip
    before = (tmp_path / "chat.jsonl").read_bytes()
    await store.update_message(attrs.evolve(reply, content="Hello", status="complete"))
    after = (tmp_path / "chat.jsonl").read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    await store.close()
