"""Versioned migrations recorded in the database, safe to run again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest
from _sqlite_support import at_migration, integrity_ok, query

import threadline
from threadline import Message, Session, ToolCall
from threadline.codec import dump_json, dump_tool_calls
from threadline.ids import new_id
from threadline_sqlite.migrations import _FUNCTIONS, MIGRATION_NAMES, MIGRATION_SET
from threadline_sqlite.rows import SESSION_COLUMNS, session_row, to_us

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


_OLD_MESSAGE_COLUMNS = (
    "id, session_id, tenant_id, user_id, agent_id, seq, role, content, tool_calls, "
    "tool_call_id, name, status, metadata, created_at"
)


def _write_old_layout(
    connection: sqlite3.Connection, session: Session, messages: list[Message], last_seq: int
) -> list[Message]:
    """Store ``session`` and ``messages`` (seqs 1, 2, ...) as the store wrote them before
    0009 (text session and tenant ids in every message row), with ``last_seq``; what a
    read gives back."""
    connection.execute(
        f"INSERT INTO entity_session ({SESSION_COLUMNS}, last_seq, deleted_seqs) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*session_row(session), last_seq, last_seq - len(messages)),
    )
    pairs = "entity_message_user" in {r[0] for r in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
    stored = []
    for seq, m in enumerate(messages, 1):
        m = attrs.evolve(m, seq=seq)
        stored.append(m)
        connection.execute(
            f"INSERT INTO entity_message ({_OLD_MESSAGE_COLUMNS}) VALUES ({','.join('?' * 14)})",
            (m.id, m.session_id, m.tenant_id, m.user_id, m.agent_id, seq, m.role, m.content,
             dump_tool_calls(m.tool_calls), m.tool_call_id, m.name, m.status,
             dump_json(m.metadata, "metadata") if m.metadata else "{}", to_us(m.created_at)),
        )  # fmt: skip
        for call in m.tool_calls:
            connection.execute(
                "INSERT INTO entity_message_tool_call (session_id, call_id, seq) VALUES (?, ?, ?)",
                (m.session_id, call.id, seq),
            )
        if pairs and m.user_id is not None:
            connection.execute(
                "INSERT OR IGNORE INTO entity_message_user (session_id, user_id) VALUES (?, ?)",
                (m.session_id, m.user_id),
            )
    return stored


def _previous_release(path: Path) -> sqlite3.Connection:
    """``path`` with every migration but 0009 applied: the release before it."""
    from sqlite_utils import Database, Migrations

    connection = sqlite3.connect(path)
    old = Migrations(MIGRATION_SET)
    for name in MIGRATION_NAMES:
        if name != "0009_lean_messages":
            old(name=name)(_FUNCTIONS[name])
    old.apply(Database(connection))
    return connection


@pytest.mark.parametrize("at", [5, None], ids=["0005", "previous-release"])
async def test_a_filled_database_upgrades_in_place(db_path: Path, at: int | None) -> None:
    """A file of an earlier release (at 0005, before 0006 clustered the messages; and the
    release before 0009's integer session keys), with messages of every kind, is upgraded
    with nothing lost; appends go on where they stopped; (session, user) pairs (0008) come
    from the stored messages: erasure finds them."""
    connection = _previous_release(db_path) if at is None else at_migration(db_path, at)
    tenant, user = new_id(), new_id()
    sessions = [Session(tenant_id=tenant, user_id=user) for _ in range(3)]
    s = sessions[0]
    call = ToolCall(id="call-1", name="lookup", arguments={"q": "x"})
    written = _write_old_layout(connection, s, [
        Message(session_id=s.id, tenant_id=tenant, role="system", content="be brief"),
        Message(session_id=s.id, tenant_id=tenant, role="user", user_id=user,
                content="nul \x00 and ünïcode", metadata={"k": [1, 2]}),
        Message(session_id=s.id, tenant_id=tenant, role="assistant", tool_calls=[call]),
        Message(session_id=s.id, tenant_id=tenant, role="tool", tool_call_id="call-1",
                name="lookup", content="found"),
        Message(session_id=s.id, tenant_id=tenant, role="assistant", status="streaming"),
    ], 5)  # fmt: skip
    before = {s.id: written}
    for other, kept in ((sessions[1], 50), (sessions[2], 40)):  # 10 deleted from the last
        before[other.id] = _write_old_layout(connection, other, [
            Message(session_id=other.id, tenant_id=tenant, role="user", content=f"m{i}")
            for i in range(kept)
        ], 50)  # fmt: skip
    theirs = Session(tenant_id=tenant, user_id=new_id())
    [visit] = _write_old_layout(connection, theirs, [
        Message(session_id=theirs.id, tenant_id=tenant, role="user", user_id=user,
                content="my secret in their session"),
    ], 1)  # fmt: skip
    connection.commit()
    connection.close()
    table = query(db_path, "SELECT sql FROM sqlite_master WHERE name = 'entity_message'")[0][0]
    assert "session_key" not in table  # really an old layout
    assert ("idx_message_session_seq" in _indexes(db_path)) == (at == 5)

    store = await threadline.connect(f"sqlite:///{db_path}")  # migrates
    try:
        after = {x.id: await store.load_window(tenant, x.id, None) for x in sessions}
        assert after == before
        assert await store.read_messages(tenant, s.id) == written
        assert await store.count_messages(tenant, sessions[1].id) == 50
        assert await store.count_messages(tenant, sessions[2].id) == 40
        assert await store.load_window(tenant, s.id, 1) == written
        assert await store.load_window(tenant, s.id, 0) == written[:1]
        assert await store.interrupt_streaming(tenant, s.id) == 1
        more = await store.save_message(
            Message(session_id=sessions[2].id, tenant_id=tenant, role="user", content="next")
        )
        assert more.seq == 51  # seqs deleted before the upgrade are still never reused
        again = await store.save_message(written[1])  # an idempotent retry still finds it
        assert again == written[1]
        with pytest.raises(threadline.ConflictError):
            await store.save_message(attrs.evolve(written[1], session_id=sessions[1].id))
        fresh = await store.create_session(Session(tenant_id=tenant))
        first = await store.save_message(
            Message(session_id=fresh.id, tenant_id=tenant, role="user", content="new session")
        )
        assert await store.load_window(tenant, fresh.id, 1) == [first]
        assert await store.load_window(tenant, sessions[1].id, 1) == before[sessions[1].id][-1:]
        erased = await store.erase_user(tenant, user)
        assert erased["sessions"] == 3 and erased["messages_redacted"] == 1
        assert erased["messages"] == 5 + 50 + 41
        left = await store.load_window(tenant, theirs.id, None)
        assert [m.id for m in left] == [visit.id] and "secret" not in left[0].content
        assert await store.load_window(tenant, fresh.id, None) == [first]
    finally:
        await store.close()
    indexes = _indexes(db_path)
    assert "idx_message_session_seq" not in indexes and "idx_message_id" in indexes
    table = query(db_path, "SELECT sql FROM sqlite_master WHERE name = 'entity_message'")[0][0]
    assert "WITHOUT ROWID" in table and "PRIMARY KEY (session_key, seq)" in table
    assert "tenant_id" not in table and "session_id" not in table
    assert query(db_path, "SELECT count(*) FROM entity_message")[0][0] == 2  # theirs, fresh
    integrity_ok(db_path)
