"""Incremental checkpoint histories in the SQLite store: records, chains, old rows, the cache."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import pytest
from _sqlite_support import query

import threadline
from threadline import Checkpoint, ConflictError, Message, Session
from threadline.ids import new_id
from threadline.storekit.delta import SNAPSHOT_EVERY
from threadline_sqlite import SQLiteStore, checkpoints


async def _session(store: threadline.Store) -> Session:
    return await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))


def _msg(session: Session, role: Any, content: str = "", **fields: Any) -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, user_id=session.user_id,
                   role=role, content=content, **fields)  # fmt: skip


def _plugin(store: threadline.Store) -> SQLiteStore:
    plugin = store.primary
    assert isinstance(plugin, SQLiteStore)
    return plugin


def _records(db_path: Path) -> list[tuple[Any, ...]]:
    return query(
        db_path,
        "SELECT version, history, history_depth, history_tag FROM entity_checkpoint "
        "ORDER BY session_id, version",
    )


async def _run(
    store: threadline.Store, session: Session, steps: int, size: int = 400
) -> list[Checkpoint]:
    """A loop adding a user and an assistant message per step, checkpointing each."""
    history: list[Message] = []
    made: list[Checkpoint] = []
    for i in range(steps):
        history += [_msg(session, "user", f"q{i} " + "x" * size),
                    _msg(session, "assistant", f"a{i} " + "y" * size)]  # fmt: skip
        made.append(
            await store.create_checkpoint(
                Checkpoint(
                    tenant_id=session.tenant_id,
                    session_id=session.id,
                    node_id="n",
                    history=history,
                    state={"i": i},
                    parent_id=made[-1].id if made else None,
                )  # fmt: skip
            )
        )
    return made


async def test_a_long_run_stores_deltas_and_restores_every_checkpoint(
    store: threadline.Store, db_path: Path
) -> None:
    session = await _session(store)
    made = await _run(store, session, 40)
    stored = _records(db_path)
    assert [r[2] for r in stored] == list(range(40))  # one snapshot, then deltas on the parent
    assert all(json.loads(r[1])["v"] == 1 for r in stored)
    assert all(len(json.loads(r[1])["messages"]) == 2 for r in stored)
    text = sum(len(m.content) for m in made[-1].history)
    assert sum(len(r[1]) for r in stored) < 1.3 * text  # linear: each message stored once
    for checkpoint in made:
        assert await store.get_checkpoint(session.tenant_id, checkpoint.id) == checkpoint
    assert await store.get_latest_checkpoint(session.tenant_id, session.id) == made[-1]
    assert await store.list_checkpoints(session.tenant_id, session_id=session.id) == made
    # A fresh store object (empty cache) reads the same and writes the next delta.
    again = await threadline.connect(f"sqlite:///{db_path}")
    try:
        latest = await again.get_latest_checkpoint(session.tenant_id, session.id)
        assert latest == made[-1]
        assert latest is not None
        more = (*latest.history, _msg(session, "user", "more"))
        child = await again.create_checkpoint(
            Checkpoint(
                tenant_id=session.tenant_id,
                session_id=session.id,
                history=more,
                parent_id=latest.id,
            )  # fmt: skip
        )
        assert await again.get_checkpoint(session.tenant_id, child.id) == child
    finally:
        await again.close()
    assert json.loads(_records(db_path)[-1][1])["keep"] == 80


async def test_restore_reads_at_most_snapshot_every_rows_in_one_query(
    store: threadline.Store, db_path: Path
) -> None:
    session = await _session(store)
    made = await _run(store, session, SNAPSHOT_EVERY + 2, size=1)
    depths = [r[2] for r in _records(db_path)]
    assert depths == [*range(SNAPSHOT_EVERY), 0, 1]

    def chain_length(connection: sqlite3.Connection, checkpoint_id: str) -> int:
        found = connection.execute(checkpoints.CHAIN, (checkpoint_id, session.tenant_id))
        return len(found.fetchall())

    lengths = [await _plugin(store).run_read(chain_length, c.id) for c in made]
    assert lengths == [*range(1, SNAPSHOT_EVERY + 1), 1, 2]
    for checkpoint in made[-4:]:
        assert await store.get_checkpoint(session.tenant_id, checkpoint.id) == checkpoint
    assert SNAPSHOT_EVERY == 128


async def test_rollbacks_branches_and_new_histories(store: threadline.Store, db_path: Path) -> None:
    session = await _session(store)
    made = await _run(store, session, 5, size=5)
    t, s = session.tenant_id, session.id
    target = made[1]

    async def child(parent: Checkpoint, history: Any, **fields: Any) -> Checkpoint:
        return await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=history, parent_id=parent.id, **fields)
        )

    copy = await child(target, target.history, node_id="rolled back")  # a rollback copy
    left = await child(made[-1], (*made[-1].history, _msg(session, "user", "left")))
    right = await child(made[-1], (*made[-1].history, _msg(session, "user", "right")))
    moved = await child(made[-1], [_msg(session, "system", "a new history")])
    cut = await child(made[-1], made[-1].history[:3])
    written = [copy, left, right, moved, cut]
    records = {r[0]: json.loads(r[1]) for r in _records(db_path)}
    assert records[copy.version]["keep"] == 4 and records[copy.version]["messages"] == []
    assert records[left.version]["keep"] == records[right.version]["keep"] == 10
    assert records[moved.version]["kind"] == "snapshot"
    assert records[cut.version]["keep"] == 3 and records[cut.version]["messages"] == []
    fresh = await threadline.connect(f"sqlite:///{db_path}")
    try:
        for checkpoint in [*made, *written]:
            assert await fresh.get_checkpoint(t, checkpoint.id) == checkpoint
        assert await fresh.list_checkpoints(t, session_id=s) == [*made, *written]
    finally:
        await fresh.close()


async def test_list_by_agent_rebuilds_through_other_agents_checkpoints(
    store: threadline.Store,
) -> None:
    session = await _session(store)
    t, s = session.tenant_id, session.id
    planner, writer = new_id(), new_id()
    history: list[Message] = []
    made: list[Checkpoint] = []
    for i in range(6):
        history = [*history, _msg(session, "user", f"m{i}")]
        made.append(
            await store.create_checkpoint(
                Checkpoint(
                    tenant_id=t,
                    session_id=s,
                    history=history,
                    agent_id=planner if i % 3 else writer,
                    parent_id=made[-1].id if made else None,
                )  # fmt: skip
            )
        )
    fresh = await threadline.connect(f"sqlite:///{_plugin(store).options.path}")
    try:
        assert await fresh.list_checkpoints(t, agent_id=planner) == [
            c for c in made if c.agent_id == planner
        ]
        assert await fresh.list_checkpoints(t, session_id=s, agent_id=writer) == [made[0], made[3]]
        assert await fresh.get_latest_checkpoint(t, s, agent_id=writer) == made[3]
    finally:
        await fresh.close()


async def test_retries_compare_the_whole_history(store: threadline.Store) -> None:
    session = await _session(store)
    first = await _run(store, session, 2, size=3)
    history = (*first[-1].history, _msg(session, "tool", "r", tool_call_id="c",
                                        metadata={"pair": (1, 2)}))  # fmt: skip
    checkpoint = Checkpoint(tenant_id=session.tenant_id, session_id=session.id,
                            history=history, parent_id=first[-1].id)  # fmt: skip
    stored = await store.create_checkpoint(checkpoint)
    read = await store.get_checkpoint(session.tenant_id, stored.id)
    assert read is not None and read.history[-1].metadata == {"pair": [1, 2]}
    assert await store.create_checkpoint(checkpoint) == read  # a retry, tuples and all
    other = (*history[:-1], attrs.evolve(history[-1], content="changed"))
    with pytest.raises(ConflictError):
        await store.create_checkpoint(attrs.evolve(checkpoint, history=other))


async def test_a_checkpoint_id_written_again_elsewhere_is_not_trusted_from_the_cache(
    store: threadline.Store, db_path: Path
) -> None:
    """Another process deletes the session and writes the same ids with other histories."""
    session = await _session(store)
    t, s = session.tenant_id, session.id
    parent_id = new_id()
    await store.create_checkpoint(
        Checkpoint(
            id=parent_id, tenant_id=t, session_id=s, history=[_msg(session, "user", "mine")]
        )  # fmt: skip
    )  # now in this store's cache
    other = await threadline.connect(f"sqlite:///{db_path}")
    try:
        assert await other.delete_session(t, s)
        await other.create_session(session)
        await other.create_checkpoint(
            Checkpoint(
                id=parent_id, tenant_id=t, session_id=s, history=[_msg(session, "user", "theirs")]
            )  # fmt: skip
        )
    finally:
        await other.close()
    theirs = await store.get_checkpoint(t, parent_id)
    assert theirs is not None
    child = await store.create_checkpoint(
        Checkpoint(
            tenant_id=t,
            session_id=s,
            parent_id=parent_id,
            history=(*theirs.history, _msg(session, "assistant", "reply")),
        )  # fmt: skip
    )
    fresh = await threadline.connect(f"sqlite:///{db_path}")
    try:
        read = await fresh.get_checkpoint(t, child.id)
        assert read is not None and [m.content for m in read.history] == ["theirs", "reply"]
    finally:
        await fresh.close()
