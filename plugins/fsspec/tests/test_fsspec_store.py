"""URLs, the layout on disk, format versions, checkpoint deltas and lost races."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import fsspec
import pytest

import threadline
from threadline import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    ConfigurationError,
    Message,
    PluginNotInstalledError,
    Session,
    ToolCall,
)
from threadline.ids import new_id
from threadline.models import Role
from threadline.queries import SessionQuery
from threadline.storekit import CheckpointRecord
from threadline.storekit.delta import SNAPSHOT_EVERY, encode_history
from threadline_fsspec import FsspecStore


def _msg(session: Session, role: Role = "user", content: str = "", **fields: Any) -> Message:
    return Message(
        session_id=session.id, tenant_id=session.tenant_id, role=role, content=content, **fields
    )


async def test_the_documented_layout(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    t, s = session.tenant_id, session.id
    await store.save_message(_msg(session, "system", "be brief"))
    await store.save_messages([_msg(session, "user", "hi"), _msg(session, "assistant", "Hel",
                                                                  status="streaming")])  # fmt: skip
    await store.save_api_call(ApiCall(tenant_id=t, session_id=s, model="m", status="success"))
    await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=s, node_id="n"))
    await store.save_agent_config(
        AgentConfig(agent=AgentRecord(tenant_id=t, code="chat-assistant", name="Chat"))
    )
    await store.close()
    sd = root / "tenants" / t / "sessions" / s
    assert json.loads((root / "threadline-fsspec.json").read_text())["format"] == 1
    for path in [
        sd / "session.json",
        sd / "head.json",
        sd / "messages" / "000000000001.json",
        sd / "messages" / "000000000002.json",  # the batch of two, in one file
        sd / "api-calls" / "000000000001.json",
        sd / "checkpoints" / "000000000001.json",
        root / "tenants" / t / "agents" / "chat-assistant.json",
        root / "ids" / "sessions" / s[-2:] / f"{s}.json",
    ]:
        assert path.is_file(), path
    assert not (sd / "messages" / "000000000003.json").exists()
    assert len(list((sd / "streaming").iterdir())) == 1
    batch = json.loads((sd / "messages" / "000000000002.json").read_text())
    assert (batch["start"], batch["prev"], batch["systems"]) == (2, 1, [[1, 1]])
    assert [m["seq"] for m in batch["messages"]] == [2, 3]


async def test_migrate_once_and_refuse_newer_layouts(root: Path) -> None:
    store = await threadline.connect(f"file://{root}", migrate=False)
    assert await store.migrate() == ["0001_layout"]
    assert await store.migrate() == []
    await store.close()
    (root / "threadline-fsspec.json").write_text('{"format": 99}')
    with pytest.raises(ConfigurationError, match="layout version 99"):
        await threadline.connect(f"file://{root}")


async def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_name: str) -> None:
    monkeypatch.chdir(tmp_path)
    store = await threadline.connect("file://relative/dir")
    assert (tmp_path / "relative" / "dir" / "threadline-fsspec.json").is_file()
    await store.close()
    store = await threadline.connect(f"fsspec+file://{tmp_path}/Mixed Case")
    assert (tmp_path / "Mixed Case" / "threadline-fsspec.json").is_file()
    await store.close()

    named = f"fsspec+memory://{memory_name}"
    a, b = await threadline.connect(named), await threadline.connect(named)
    session = await a.create_session(Session(tenant_id=new_id()))
    assert await b.get_session(session.tenant_id, session.id) == session  # shared by name
    fresh = await threadline.connect("fsspec+memory://")
    assert await fresh.get_session(session.tenant_id, session.id) is None
    for opened in (a, b, fresh):
        await opened.close()

    for bad in ("file://", f"file://{tmp_path}?lock_timeout=soon", f"file://{tmp_path}?fsync=2"):
        with pytest.raises(ConfigurationError):
            await threadline.connect(bad)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        await threadline.connect(f"file://{tmp_path}/plain")


async def test_object_store_without_its_package_names_it() -> None:
    if importlib.util.find_spec("s3fs") is not None:  # pragma: no cover
        pytest.skip("s3fs is installed")
    with pytest.raises(PluginNotInstalledError, match="s3"):
        await threadline.connect("s3://bucket/prefix")


async def test_from_filesystem_takes_any_fsspec_object(memory_name: str, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    store = threadline.Store(FsspecStore.from_filesystem(fs, f"/{memory_name}"))
    session = await store.create_session(Session(tenant_id=new_id()))
    assert fs.isfile(
        f"/{memory_name}/tenants/{session.tenant_id}/sessions/{session.id}/session.json"
    )
    await store.close()
    local = FsspecStore.from_filesystem(fsspec.filesystem("file"), str(tmp_path / "x"))
    assert repr(local) == f"<FsspecStore file://{tmp_path / 'x'}>"


async def test_checkpoints_store_deltas_with_bounded_chains(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    every = SNAPSHOT_EVERY  # a chain holds at most this many files
    session = await store.create_session(Session(tenant_id=new_id()))
    history: list[Message] = []
    made: list[Checkpoint] = []
    parent = None
    for i in range(every + 6):
        history.append(await store.save_message(_msg(session, "user", f"m{i}")))
        checkpoint = await store.create_checkpoint(
            Checkpoint(
                tenant_id=session.tenant_id,
                session_id=session.id,
                node_id=f"n{i}",
                history=history,
                parent_id=parent,
                state={"i": i},
            )  # fmt: skip
        )
        made.append(checkpoint)
        parent = checkpoint.id

    async def add(
        history: list[Message], parent_id: str | None, db: threadline.Store = store
    ) -> None:
        made.append(
            await db.create_checkpoint(
                Checkpoint(
                    tenant_id=session.tenant_id,
                    session_id=session.id,
                    node_id="again",
                    history=history,
                    parent_id=parent_id,
                )  # fmt: skip
            )
        )

    await add(history[:2], parent)  # rolled back by hand: keeps 2 of the parent's messages
    await add([history[0], _msg(session, "user", "fresh")], None)  # a fresh run: a snapshot
    assert await store.list_checkpoints(session.tenant_id, session_id=session.id) == made
    await store.close()
    again = await threadline.connect(f"file://{root}")  # a new store: nothing cached
    for checkpoint in made:
        assert await again.get_checkpoint(session.tenant_id, checkpoint.id) == checkpoint
    assert await again.get_latest_checkpoint(session.tenant_id, session.id) == made[-1]
    await add(list(made[5].history), made[5].id, again)  # a rollback copy, parent from disk
    assert await again.get_checkpoint(session.tenant_id, made[-1].id) == made[-1]
    await again.close()

    folder = root / "tenants" / session.tenant_id / "sessions" / session.id / "checkpoints"
    docs = [json.loads(p.read_text()) for p in sorted(folder.iterdir())]
    assert all(d["history"]["v"] == 1 and d["tag"] for d in docs)
    lengths = [1] * every + [every + 1] + [1] * 5 + [0, 2, 0]
    assert [len(d["history"]["messages"]) for d in docs] == lengths
    assert [d["depth"] for d in docs] == [*range(every), *range(6), 6, 0, 6]
    assert [d["base"] for d in docs] == [None, *range(1, every), None, *range(every + 1, every + 7),
                                         None, 6]  # fmt: skip
    assert [d["history"].get("keep") for d in docs][-3:] == [2, None, 6]


async def test_a_lost_race_for_a_number_takes_the_next_one(memory_name: str) -> None:
    """What two processes on an object store do: both claim a number, one loses."""
    url = f"fsspec+memory://{memory_name}"
    mine, theirs = await threadline.connect(url), await threadline.connect(url)
    session = await mine.create_session(Session(tenant_id=new_id()))
    plugin, rival = mine.primary, theirs.primary
    assert isinstance(plugin, FsspecStore) and isinstance(rival, FsspecStore)
    backend: Any = plugin.backend
    create = backend.create
    raced: list[str] = []

    def racing_create(path: str, data: bytes) -> bool:
        # Just before each numbered record, the rival process writes its own first.
        if path.endswith("1.json") and "/ids/" not in path and path not in raced:
            raced.append(path)
            if "/messages/" in path:
                rival.save_messages([_msg(session, "user", "rival", status="streaming")])
            elif "/checkpoints/" in path:
                t, s = session.tenant_id, session.id
                snapshot = encode_history((), tenant_id=t, session_id=s)
                checkpoint = Checkpoint(tenant_id=t, session_id=s, node_id="r")
                rival.insert_checkpoint_record(
                    CheckpointRecord(checkpoint, snapshot.text, 0, 1), None
                )
            elif "/api-calls/" in path:
                rival.save_api_call(
                    ApiCall(
                        tenant_id=session.tenant_id,
                        session_id=session.id,
                        model="r",
                        status="success",
                    )  # fmt: skip
                )
        return create(path, data)  # type: ignore[no-any-return]

    backend.create = racing_create
    call = ToolCall(id="c1", name="f")
    mine_msg = await mine.save_message(_msg(session, "assistant", "mine", status="streaming",
                                            tool_calls=[call]))  # fmt: skip
    checkpoint = await mine.create_checkpoint(
        Checkpoint(tenant_id=session.tenant_id, session_id=session.id, node_id="mine")
    )
    api_call = await mine.save_api_call(
        ApiCall(tenant_id=session.tenant_id, session_id=session.id, model="mine", status="success")
    )
    assert len(raced) == 3
    assert (mine_msg.seq, checkpoint.version) == (2, 2)
    messages = await theirs.get_messages(session.tenant_id, session.id)
    assert [(m.seq, m.content) for m in messages] == [(1, "rival"), (2, "mine")]
    assert await mine.save_message(attrs.evolve(mine_msg, seq=None)) == mine_msg  # index right
    assert await mine.interrupt_streaming(session.tenant_id, session.id) == 2  # both markers
    assert (await mine.get_checkpoint(session.tenant_id, checkpoint.id)) == checkpoint
    calls = await mine.list_api_calls(session.tenant_id, session.id)
    assert [c.model for c in calls] == ["r", "mine"] and calls[1] == api_call
    tool = await mine.save_message(_msg(session, "tool", "r", tool_call_id="c1"))
    window = await mine.load_window(session.tenant_id, session.id, 1)
    assert [m.id for m in window] == [m.id for m in messages] + [tool.id]
    await mine.close()
    await theirs.close()


async def test_a_dangling_index_from_a_crash_counts_as_absent(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    message = _msg(session, "user", "after the crash")
    backend = store.primary.backend  # type: ignore[attr-defined]
    from threadline_fsspec import layout

    entry = {"tenant_id": session.tenant_id, "session_id": session.id, "seq": 1, "segment": 1}
    backend.write(layout.id_file("messages", message.id), json.dumps(entry).encode())
    stored = await store.save_message(message)  # the index pointed at nothing: a new save
    assert stored.seq == 1
    assert await store.save_message(message) == stored
    assert await store.delete_session(session.tenant_id, session.id) is True
    assert not (root / "tenants" / session.tenant_id / "sessions" / session.id).exists()
    assert backend.read(layout.id_file("messages", message.id)) is None
    await store.close()
    assert os.listdir(root / "ids" / "sessions" / session.id[-2:]) == []


async def test_a_deletion_cut_short_leaves_nothing_for_a_new_session(root: Path) -> None:
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(Session(tenant_id=new_id()))
    await store.save_message(_msg(session, "user", "old"))
    await store.create_checkpoint(Checkpoint(tenant_id=session.tenant_id, session_id=session.id))
    sd = root / "tenants" / session.tenant_id / "sessions" / session.id
    await asyncio.to_thread((sd / "session.json").unlink)  # what a crash mid-delete leaves
    assert await store.get_session(session.tenant_id, session.id) is None
    again = await store.create_session(Session(id=session.id, tenant_id=session.tenant_id))
    assert await store.get_messages(session.tenant_id, again.id) == []
    assert await store.list_checkpoints(session.tenant_id, session_id=again.id) == []
    assert (await store.save_message(_msg(again, "user", "new"))).seq == 1
    await store.close()


async def test_activity_without_messages_lives_in_head_json(root: Path) -> None:
    """A graph session (checkpoints and API calls, no message yet) records its activity in
    ``head.json``; another process reads it, and the first messages after it still get
    seq 1 onwards and a correct window."""
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    store = await threadline.connect(f"file://{root}")
    session = await store.create_session(
        Session(tenant_id=new_id(), created_at=old, updated_at=old)
    )
    t, s = session.tenant_id, session.id
    sd = root / "tenants" / t / "sessions" / s
    assert not (sd / "head.json").exists()
    await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=s, node_id="plan"))
    head = json.loads((sd / "head.json").read_text())
    assert set(head) == {"updated_at"}
    assert json.loads((sd / "session.json").read_text())["updated_at"] == old.isoformat()

    other = await threadline.connect(f"file://{root}")  # as another process would
    seen = await other.get_session(t, s)
    assert seen is not None and seen.updated_at > datetime.now(timezone.utc) - timedelta(1)
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=3)
    assert await other.delete_sessions_before(t, cutoff, dry_run=True) == 0
    await other.save_api_call(ApiCall(tenant_id=t, session_id=s, model="m", status="success"))
    stored = await other.save_messages([_msg(session, "system", "be brief"),
                                        _msg(session, "user", "hi")])  # fmt: skip
    assert [m.seq for m in stored] == [1, 2]
    assert {"start", "end", "systems", "updated_at"} <= set(
        json.loads((sd / "head.json").read_text())
    )
    await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=s, node_id="again"))
    assert await store.load_window(t, s, 1) == stored  # the hint kept its segment fields
    assert (await store.save_message(_msg(session, "assistant", "hello"))).seq == 3
    await other.close()
    await store.close()


async def test_a_session_written_to_after_the_listing_is_not_pruned(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``delete_sessions_before`` lists, then deletes one by one: each deletion checks the
    session is still idle under its lock, so a checkpoint written in between keeps it."""
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    store = await threadline.connect(f"file://{root}")
    [plugin] = store.plugins
    assert isinstance(plugin, FsspecStore)
    t = new_id()
    busy, idle = [
        await store.create_session(Session(tenant_id=t, created_at=old, updated_at=old))
        for _ in range(2)
    ]
    stale = plugin.list_sessions(t, SessionQuery(limit=10))  # the listing, taken first
    await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=busy.id))  # then a write
    monkeypatch.setattr(plugin, "list_sessions", lambda *args: stale)
    assert await store.delete_sessions_before(t, old + timedelta(seconds=1)) == 1
    monkeypatch.undo()
    assert [s.id for s in await store.list_sessions(t)] == [busy.id]
    assert await store.get_session(t, idle.id) is None
    await store.close()
