"""Versioned migrations recorded in the database, safe to run again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest
from _sqlite_support import at_migration, integrity_ok, query

import threadline
from threadline import Message, Session, ToolCall
from threadline.ids import new_id
from threadline_sqlite.migrations import MIGRATION_NAMES, MIGRATION_SET

TABLES = {
    "entity_provider", "entity_agent", "entity_session", "entity_message",
    "entity_message_tool_call", "entity_message_user", "entity_api_call", "entity_checkpoint",
    "_sqlite_migrations", "usage_rollup", "usage_histogram", "usage_bucket",
}  # fmt: skip


def _tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}
    finally:
        connection.close()


async def test_migrate_applies_once_and_records_it(db_path: Path) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}", migrate=False)
    try:
        assert await store.migrate() == list(MIGRATION_NAMES)
        assert await store.migrate() == []
    finally:
        await store.close()
    assert _tables(db_path) == TABLES
    rows = query(
        db_path, "SELECT migration_set, name, applied_at FROM _sqlite_migrations ORDER BY id"
    )
    assert [(s, n) for s, n, _ in rows] == [(MIGRATION_SET, n) for n in MIGRATION_NAMES]
    assert all(applied_at for _, _, applied_at in rows)


async def test_connect_migrates_and_reconnecting_applies_nothing(db_path: Path) -> None:
    first = await threadline.connect(f"sqlite:///{db_path}")  # migrates the new file
    await first.close()
    second = await threadline.connect(f"sqlite:///{db_path}")
    try:
        assert await second.migrate() == []
    finally:
        await second.close()
    assert _tables(db_path) == TABLES


async def test_a_failed_migration_leaves_nothing_half_done(db_path: Path) -> None:
    # A table in the way makes the first migration fail: nothing of it may remain.
    connection = sqlite3.connect(db_path)
    connection.execute("CREATE TABLE entity_checkpoint (x)")
    connection.commit()
    connection.close()
    store = await threadline.connect(f"sqlite:///{db_path}", migrate=False)
    try:
        try:
            await store.migrate()
        except threadline.StoreError:
            pass
        else:  # pragma: no cover
            raise AssertionError("migrate should have failed")
    finally:
        await store.close()
    assert _tables(db_path) == {"entity_checkpoint"}


def test_threadline_migrate_command_reports_then_applies_nothing(db_path: Path) -> None:
    cli = pytest.importorskip("threadline.cli")
    from click.testing import CliRunner

    runner = CliRunner()
    first = runner.invoke(cli.cli, ["migrate", f"sqlite:///{db_path}"])
    assert first.exit_code == 0, first.output
    assert [f"applied {name}" for name in MIGRATION_NAMES] == first.output.splitlines()
    again = runner.invoke(cli.cli, ["migrate", f"sqlite:///{db_path}"])
    assert again.exit_code == 0, again.output
    assert "no migrations to apply" in again.output


def _indexes(path: Path) -> dict[str, str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        return {name: sql for name, sql in rows if sql is not None}
    finally:
        connection.close()


@pytest.mark.parametrize("by_hand", [False, True])
async def test_0003_upgrades_a_database_at_0002(db_path: Path, by_hand: bool) -> None:
    """An existing file gets the index; one where it was created already upgrades too."""
    connection = at_migration(db_path, 2)
    if by_hand:
        connection.execute(
            "CREATE INDEX idx_message_tenant_user ON entity_message (tenant_id, user_id) "
            "WHERE user_id IS NOT NULL"
        )
    connection.commit()
    connection.close()
    assert ("idx_message_tenant_user" in _indexes(db_path)) == by_hand

    store = await threadline.connect(f"sqlite:///{db_path}", migrate=False)
    try:
        assert await store.migrate() == list(MIGRATION_NAMES[2:])
        assert await store.migrate() == []
    finally:
        await store.close()
    indexes = _indexes(db_path)
    assert "(tenant_id, user_id) WHERE user_id IS NOT NULL" in indexes["idx_api_call_tenant_user"]
    # 0006 rebuilt the message table; 0008 finds a user's sessions by entity_message_user.
    assert "idx_message_tenant_user" not in indexes and "idx_message_user" not in indexes
    assert "entity_message_user (user_id)" in indexes["idx_message_user_sessions"]


async def test_0006_upgrades_a_filled_database_in_place(db_path: Path) -> None:
    """A file of the previous release (at 0005), with messages of every kind, is rebuilt
    clustered by (session_id, seq) with nothing lost; appends go on where they stopped;
    0008's (session, user) pairs come from the stored messages: erasure finds them."""
    connection = at_migration(db_path, 5)
    # This code records (session, user) pairs on every write: a scratch table takes them
    # while the old layout is filled, and is dropped before the upgrade (0008 makes it).
    connection.execute(
        "CREATE TABLE entity_message_user (session_id, user_id, UNIQUE (session_id, user_id))"
    )
    connection.commit()
    connection.close()
    old = await threadline.connect(f"sqlite:///{db_path}", migrate=False)
    tenant, user = new_id(), new_id()
    try:
        sessions = [await old.create_session(Session(tenant_id=tenant, user_id=user))
                    for _ in range(3)]  # fmt: skip
        s = sessions[0]
        call = ToolCall(id="call-1", name="lookup", arguments={"q": "x"})
        written = await old.save_messages([
            Message(session_id=s.id, tenant_id=tenant, role="system", content="be brief"),
            Message(session_id=s.id, tenant_id=tenant, role="user", user_id=user,
                    content="nul \x00 and ünïcode", metadata={"k": [1, 2]}),
            Message(session_id=s.id, tenant_id=tenant, role="assistant", tool_calls=[call]),
            Message(session_id=s.id, tenant_id=tenant, role="tool", tool_call_id="call-1",
                    name="lookup", content="found"),
            Message(session_id=s.id, tenant_id=tenant, role="assistant", status="streaming"),
        ])  # fmt: skip
        for other in sessions[1:]:
            await old.save_messages([
                Message(session_id=other.id, tenant_id=tenant, role="user", content=f"m{i}")
                for i in range(50)
            ])  # fmt: skip
        assert await old.delete_messages(tenant, sessions[2].id, after_seq=40) == 10
        theirs = await old.create_session(Session(tenant_id=tenant, user_id=new_id()))
        visit = await old.save_message(
            Message(session_id=theirs.id, tenant_id=tenant, role="user", user_id=user,
                    content="my secret in their session")
        )  # fmt: skip
        before = {x.id: await old.load_window(tenant, x.id, None) for x in sessions}
    finally:
        await old.close()
    connection = sqlite3.connect(db_path)
    connection.execute("DROP TABLE entity_message_user")
    connection.commit()
    connection.close()
    assert "idx_message_session_seq" in _indexes(db_path)  # really the old layout

    store = await threadline.connect(f"sqlite:///{db_path}")  # migrates: 0006
    try:
        after = {x.id: await store.load_window(tenant, x.id, None) for x in sessions}
        assert after == before
        assert after[s.id] == written
        assert await store.count_messages(tenant, sessions[1].id) == 50
        assert await store.count_messages(tenant, sessions[2].id) == 40
        assert await store.load_window(tenant, s.id, 1) == written[:1] + written[1:]
        assert await store.interrupt_streaming(tenant, s.id) == 1
        more = await store.save_message(
            Message(session_id=sessions[2].id, tenant_id=tenant, role="user", content="next")
        )
        assert more.seq == 51  # seqs deleted before the upgrade are still never reused
        again = await store.save_message(written[1])  # an idempotent retry still finds it
        assert again == written[1]
        with pytest.raises(threadline.ConflictError):
            await store.save_message(attrs.evolve(written[1], session_id=sessions[1].id))
        erased = await store.erase_user(tenant, user)
        assert erased["sessions"] == 3 and erased["messages_redacted"] == 1
        left = await store.load_window(tenant, theirs.id, None)
        assert [m.id for m in left] == [visit.id] and "secret" not in left[0].content
    finally:
        await store.close()
    indexes = _indexes(db_path)
    assert "idx_message_session_seq" not in indexes and "idx_message_id" in indexes
    table = query(db_path, "SELECT sql FROM sqlite_master WHERE name = 'entity_message'")[0][0]
    assert "WITHOUT ROWID" in table and "PRIMARY KEY (session_id, seq)" in table
    integrity_ok(db_path)
