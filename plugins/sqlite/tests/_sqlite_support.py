"""Helpers of the sqlite store tests (a uniquely named module: plugins' tests share sys.path)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import threadline
from threadline import Store
from threadline.testing import processes
from threadline_sqlite import SQLiteStore, migrations

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


def child_env() -> dict[str, str]:
    """The environment of a child process: this plugin only."""
    return {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-sqlite"}


def run_together(go_dir: Path, commands: list[list[str]], timeout: float = 60) -> list[Any]:
    """Start one child per command, release them at once, return their JSON outputs."""
    return processes.run_together(CHILD, go_dir, commands, env=child_env(), timeout=timeout)


def hand_offs(worker: Any) -> list[str]:
    """The names of the calls handed to ``worker`` (a store's reader or writer
    :class:`~threadline_sqlite.worker.Worker`) from now on."""
    submitted: list[str] = []
    submit = worker.submit

    def counting(fn: Any, *args: Any) -> Any:
        submitted.append(getattr(fn, "__name__", "?"))
        return submit(fn, *args)

    worker.submit = counting
    return submitted


async def open_sqlite(path: Path, synchronous: str = "normal") -> tuple[Store, SQLiteStore]:
    """A store on ``path`` at ``synchronous``, with its :class:`SQLiteStore`."""
    store = await threadline.connect(f"sqlite:///{path}?synchronous={synchronous}")
    plugin = store.primary
    assert isinstance(plugin, SQLiteStore)
    return store, plugin
