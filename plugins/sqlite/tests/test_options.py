"""``sqlite://`` URLs: paths, durability and lock options, and refusing what is unknown."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import threadline
from threadline import ConfigurationError, Session
from threadline.ids import new_id
from threadline_sqlite import SQLiteOptions, SQLiteStore


def _pragmas(connection: sqlite3.Connection) -> dict[str, Any]:
    return {
        name: connection.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("synchronous", "journal_mode", "busy_timeout", "foreign_keys", "query_only")
    }


@pytest.mark.parametrize(
    ("level", "value"), [("off", 0), ("normal", 1), ("full", 2), ("extra", 3), ("FULL", 2)]
)
async def test_synchronous_option_reaches_both_connections(
    db_path: Path, level: str, value: int
) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}?synchronous={level}&busy_timeout=1234")
    sqlite_store = store.primary
    assert isinstance(sqlite_store, SQLiteStore)
    try:
        writer = await sqlite_store.run_write(_pragmas)
        reader = await sqlite_store.run_read(_pragmas)
    finally:
        await store.close()
    assert writer == {"synchronous": value, "journal_mode": "wal", "busy_timeout": 1234,
                      "foreign_keys": 1, "query_only": 0}  # fmt: skip
    assert reader == {**writer, "query_only": 1}


async def test_default_is_wal_normal_with_a_busy_timeout(db_path: Path) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}")
    assert isinstance(store.primary, SQLiteStore)
    try:
        pragmas = await store.primary.run_write(_pragmas)
    finally:
        await store.close()
    assert (pragmas["synchronous"], pragmas["journal_mode"], pragmas["busy_timeout"]) == (
        1, "wal", 5000,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("sqlite:///x.db?journal=wal", "journal"),
        ("sqlite:///x.db?synchronous=full&cache=shared", "cache"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:///x.db?busy_timeout=-1", "busy_timeout"),
        ("sqlite://somehost/x.db", "host"),
        ("sqlite://", "file"),
        ("sqlite:///", "file"),
    ],
)
async def test_bad_urls_raise_configuration_error_naming_the_problem(
    url: str, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=named):
        await threadline.connect(url)
    assert os.listdir(tmp_path) == []  # nothing was created


async def test_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert SQLiteOptions.from_url("sqlite:///rel.db").path == str(tmp_path / "rel.db")
    assert SQLiteOptions.from_url("sqlite:////abs/dir/a.db").path == "/abs/dir/a.db"
    store = await threadline.connect("sqlite:///rel.db")
    await store.close()
    assert (tmp_path / "rel.db").is_file()


async def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "chat.db"
    store = await threadline.connect(f"sqlite:///{path}")
    session = await store.create_session(Session(tenant_id=new_id()))
    await store.close()
    assert path.is_file()
    store = await threadline.connect(f"sqlite:///{path}")
    try:
        assert await store.get_session(session.tenant_id, session.id) == session
    finally:
        await store.close()


async def test_in_memory_database_works_on_one_connection() -> None:
    store = await threadline.connect("sqlite:///:memory:")
    try:
        conv = await store.create_session(Session(tenant_id=new_id()))
        saved = await store.save_message(
            threadline.Message(session_id=conv.id, tenant_id=conv.tenant_id, role="user")
        )
        assert await store.load_window(conv.tenant_id, conv.id, 1) == [saved]
    finally:
        await store.close()
