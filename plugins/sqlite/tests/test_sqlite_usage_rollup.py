"""The usage rollup (migration 0010): filled from the calls on upgrade, kept by every write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from _sqlite_support import at_migration

import threadline
from threadline import ApiCall
from threadline.ids import new_id
from threadline.testing.usage import assert_usage_matches_default, fill_usage_calls
from threadline_sqlite.migrations import MIGRATION_NAMES


def _delete(path: Path, calls: list[ApiCall]) -> None:
    """Delete calls by hand (as an operator would): the triggers see it too."""
    db = sqlite3.connect(path)
    try:
        db.executemany("DELETE FROM entity_api_call WHERE id = ?", [(c.id,) for c in calls])
        db.commit()
    finally:
        db.close()


def _update(path: Path, calls: list[ApiCall]) -> None:
    """Change calls by hand (model, latency, a day later): the triggers move them."""
    db = sqlite3.connect(path)
    try:
        db.executemany(
            "UPDATE entity_api_call SET model = 'small', latency_ms = 7.5, "
            "created_at = created_at + 86400000000 WHERE id = ?",
            [(c.id,) for c in calls],
        )
        db.commit()
    finally:
        db.close()


def _rollup_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM usage_rollup").fetchone()[0])
    finally:
        db.close()


async def test_0010_fills_the_rollup_from_a_filled_database(db_path: Path) -> None:
    """A file of the previous release with calls (some deleted) upgrades in place: reports
    from the rollup equal the calls' own; later writes, updates and deletions keep them equal."""
    at = MIGRATION_NAMES.index("0010_usage_rollup")
    at_migration(db_path, at).close()
    old = await threadline.connect(f"sqlite:///{db_path}", migrate=False)
    tenant, users = new_id(), [new_id(), new_id()]
    try:
        saved = await fill_usage_calls(old, tenant, users)
    finally:
        await old.close()
    _delete(db_path, saved[:5])
    store = await threadline.connect(f"sqlite:///{db_path}")  # migrates: 0010
    try:
        assert _rollup_rows(db_path) > 0
        await assert_usage_matches_default(store, tenant)
        assert (await store.usage(tenant)).calls == 55
        more = await fill_usage_calls(store, tenant, users)
        await assert_usage_matches_default(store, tenant)
        _delete(db_path, more[10:20])
        _update(db_path, more[20:30])
        await assert_usage_matches_default(store, tenant)
        await store.erase_user(tenant, users[0])
        await assert_usage_matches_default(store, tenant)
        for session in await store.list_sessions(tenant):
            assert await store.delete_session(tenant, session.id)
        assert (await store.usage(tenant, group_by="session")).rows == ()
    finally:
        await store.close()
