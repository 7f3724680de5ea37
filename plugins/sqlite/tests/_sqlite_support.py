"""Helpers of the sqlite store tests (a uniquely named module: plugins' tests share sys.path)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from threadline import Checkpoint, Message, Session
from threadline.testing import processes
from threadline_sqlite import migrations, rows

CHILD = Path(__file__).with_name("_child.py")


def integrity_ok(path: Path) -> None:
    """Assert ``PRAGMA integrity_check`` and ``foreign_key_check`` pass on ``path``."""
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        connection.close()


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every row ``sql`` selects from the database at ``path``, on a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def at_migration(path: Path, count: int = 1) -> sqlite3.Connection:
    """Open ``path`` with only its first ``count`` migrations applied (0001 alone by default).

    The caller commits and closes the connection.
    """
    from sqlite_utils import Database, Migrations

    connection = sqlite3.connect(path)
    old = Migrations(migrations.MIGRATION_SET)
    for name in migrations.MIGRATION_NAMES[:count]:
        old(name=name)(migrations._FUNCTIONS[name])
    old.apply(Database(connection))
    return connection


def legacy_item(m: Message) -> list[Any]:
    """A message as migration 0001's rows held it (a 14-item array)."""
    created = rows.to_us(m.created_at)
    calls = [[c.id, c.name, c.arguments] for c in m.tool_calls] or None
    return [m.id, m.session_id, m.tenant_id, m.user_id, m.agent_id, m.seq, m.role, m.content,
            calls, m.tool_call_id, m.name, m.status, m.metadata, created]  # fmt: skip


def write_legacy_checkpoint(path: Path, session: Session, checkpoint: Checkpoint) -> None:
    """A new database at migration 0001 holding ``session`` and ``checkpoint`` as 0001 wrote them.

    The checkpoint (version 1, no parent, agent or input) keeps its full history in its row.
    """
    connection = at_migration(path)
    try:
        connection.execute(
            "INSERT INTO entity_session (id, tenant_id, user_id, metadata, created_at, updated_at, "
            "last_version) VALUES (?, ?, ?, '{}', 0, 0, 1)",
            (session.id, session.tenant_id, session.user_id),
        )
        connection.execute(
            "INSERT INTO entity_checkpoint (id, tenant_id, session_id, agent_id, version,"
            " parent_id, node_id, input, input_type, history, state, properties, tombstone,"
            " created_at) VALUES (?, ?, ?, NULL, 1, NULL, ?, 'null', NULL, ?, ?, '{}', 0, ?)",
            (checkpoint.id, checkpoint.tenant_id, checkpoint.session_id, checkpoint.node_id,
             json.dumps([legacy_item(m) for m in checkpoint.history]),
             json.dumps(checkpoint.state, separators=(",", ":")),
             rows.to_us(checkpoint.created_at)),
        )  # fmt: skip
        connection.commit()
    finally:
        connection.close()


def child_env() -> dict[str, str]:
    """The environment of a child process: this plugin only."""
    return {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-sqlite"}


def run_together(go_dir: Path, commands: list[list[str]], timeout: float = 60) -> list[Any]:
    """Start one child per command, release them at once, return their JSON outputs."""
    return processes.run_together(CHILD, go_dir, commands, env=child_env(), timeout=timeout)
