"""erase_user in the SQLite store: checkpoint records rewritten, caches, old rows, indexes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
from _sqlite_support import integrity_ok, query

import threadline
from threadline import Checkpoint, Message, Session
from threadline.ids import new_id
from threadline.storekit import log
from threadline.storekit.erasure import redact
from threadline_sqlite import SQLiteStore, checkpoints, retention


def _msg(session: Session, user_id: str | None, role: Any, content: str = "") -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, user_id=user_id,
                   role=role, content=content)  # fmt: skip


def _plugin(store: threadline.Store) -> SQLiteStore:
    plugin = store.primary
    assert isinstance(plugin, SQLiteStore)
    return plugin


def _cache(store: threadline.Store) -> Any:
    """The history cache the core keeps for the store's checkpoints."""
    return log.history_cache(store._bindings[0])


def _redacted(history: tuple[Message, ...], user_id: str) -> tuple[Message, ...]:
    return tuple(redact(m) if m.user_id == user_id else m for m in history)


def _tags(db_path: Path) -> dict[str, tuple[Any, ...]]:
    found = query(db_path, "SELECT id, history, history_depth, history_tag FROM entity_checkpoint")
    return {row[0]: row[1:] for row in found}


async def _run_with_b(
    store: threadline.Store, session: Session, a: str, b: str
) -> tuple[list[Checkpoint], list[tuple[Message, ...]]]:
    """A's run in which B speaks in the second step only: c1 (A), c2 (+B), c3 (+A), c4 (+A)."""
    h1 = (_msg(session, a, "user", "hello"),)
    h2 = (*h1, _msg(session, b, "user", "b's secret"))
    h3 = (*h2, _msg(session, a, "assistant", "answer"))
    h4 = (*h3, _msg(session, a, "user", "more"))
    made: list[Checkpoint] = []
    for history in (h1, h2, h3, h4):
        made.append(
            await store.create_checkpoint(
                Checkpoint(
                    tenant_id=session.tenant_id,
                    session_id=session.id,
                    history=history,
                    parent_id=made[-1].id if made else None,
                )
            )
        )
    return made, [h1, h2, h3, h4]


async def _children_after_erasure(
    writer: threadline.Store,
    session: Session,
    made: list[Checkpoint],
    history: tuple[Message, ...],
    b: str,
) -> list[Checkpoint]:
    """Two children of c3 (whose own record holds nothing of B's): stale and redacted."""
    t, s, parent = session.tenant_id, session.id, made[2].id
    stale = (*history, _msg(session, session.user_id, "user", "stale"))
    fresh = (*_redacted(history, b), _msg(session, session.user_id, "user", "fresh"))
    return [
        await writer.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=h, parent_id=parent)
        )
        for h in (stale, fresh)
    ]


async def test_no_history_cache_serves_an_unredacted_history(db_path: Path) -> None:
    """Every cache that held the checkpoints, this store's and another process's, misses.

    c3's own record holds nothing of B's and is not rewritten, yet its history changed:
    a cached unredacted c3 would make a child written on it keep B's messages (or lose
    a stale writer's). Nothing reads the checkpoints between the erasure and the writes.
    """
    erasing = await threadline.connect(f"sqlite:///{db_path}")
    other = await threadline.connect(f"sqlite:///{db_path}")  # another process's cache
    try:
        for writer in (erasing, other):
            tenant, a, b = new_id(), new_id(), new_id()
            session = await writer.create_session(Session(tenant_id=tenant, user_id=a))
            made, histories = await _run_with_b(writer, session, a, b)
            before = _tags(db_path)
            assert _cache(writer).get(made[2].id) is not None
            assert await erasing.erase_user(tenant, b) == {
                "sessions": 0, "messages": 0, "messages_redacted": 0, "api_calls": 0,
                "checkpoints": 0, "checkpoints_redacted": 3,
            }  # fmt: skip
            after = _tags(db_path)
            assert after[made[0].id] == before[made[0].id]  # c1 never held B's messages
            for c in made[1:]:
                assert after[c.id][2] != before[c.id][2]  # a new tag for every changed history
            assert after[made[2].id][:2] == before[made[2].id][:2]  # c3's record as it was
            assert after[made[1].id][0] != before[made[1].id][0]  # c2's rewritten
            stale, fresh = await _children_after_erasure(writer, session, made, histories[2], b)
            reader = await threadline.connect(f"sqlite:///{db_path}")
            try:
                for c in (stale, fresh):
                    assert await reader.get_checkpoint(tenant, c.id) == c
                listed = await reader.list_checkpoints(tenant, session_id=session.id)
                assert [c.history for c in listed[:4]] == [_redacted(h, b) for h in histories]
            finally:
                await reader.close()
    finally:
        await other.close()
        await erasing.close()
    integrity_ok(db_path)


async def test_a_dry_run_changes_no_record_and_no_tag(
    store: threadline.Store, db_path: Path
) -> None:
    tenant, a, b = new_id(), new_id(), new_id()
    session = await store.create_session(Session(tenant_id=tenant, user_id=a))
    await _run_with_b(store, session, a, b)
    before = _tags(db_path)
    assert (await store.erase_user(tenant, b, dry_run=True))["checkpoints_redacted"] == 3
    assert _tags(db_path) == before


async def test_records_keep_their_kind_keep_and_depth(
    store: threadline.Store, db_path: Path
) -> None:
    tenant, a, b = new_id(), new_id(), new_id()
    session = await store.create_session(Session(tenant_id=tenant, user_id=a))
    made, histories = await _run_with_b(store, session, a, b)
    before = _tags(db_path)
    await store.erase_user(tenant, b)
    after = _tags(db_path)
    for c in made:
        old, new = json.loads(before[c.id][0]), json.loads(after[c.id][0])
        assert {k: v for k, v in new.items() if k != "messages"} == {
            k: v for k, v in old.items() if k != "messages"
        }
        assert len(new["messages"]) == len(old["messages"])
        assert after[c.id][1] == before[c.id][1]  # depth
    assert "secret" not in repr(after)
    for c, history in zip(made, histories):
        assert await store.get_checkpoint(tenant, c.id) == attrs.evolve(
            c, history=_redacted(history, b)
        )


def _plan(connection: sqlite3.Connection, sql: str, params: object) -> str:
    return " | ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_erase_queries_use_indexes(store: threadline.Store) -> None:
    plugin = _plugin(store)
    params = ("t", "u", "u")
    messages = await plugin.run_read(_plan, retention.ERASE_FOREIGN_MESSAGES, params)
    assert "INDEX idx_message_user_sessions" in messages, messages
    assert "SCAN" not in messages, messages
    calls = await plugin.run_read(_plan, "SELECT a.id " + retention.ERASE_FOREIGN_CALLS, params)
    assert "INDEX idx_api_call_tenant_user" in calls, calls
    assert "SCAN" not in calls, calls
    who = {"tenant": "t", "user": "u"}
    sessions = await plugin.run_read(_plan, retention.ERASE_CHECKPOINTED_SESSIONS, who)
    assert "INDEX idx_session_tenant_updated" in sessions, sessions
    assert "INDEX idx_checkpoint_session_version" in sessions, sessions
    assert "SCAN entity_checkpoint" not in sessions, sessions
    of_session = checkpoints.OF_SESSION + " ORDER BY version"
    found = await plugin.run_read(_plan, of_session, ("s", "t"))
    assert "INDEX idx_checkpoint_session_version" in found, found
    assert "TEMP B-TREE" not in found, found
