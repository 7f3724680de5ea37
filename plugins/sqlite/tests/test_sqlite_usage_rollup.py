"""The usage rollup (migration 0010): filled from the calls on upgrade, kept by every write."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _sqlite_support import at_migration

import threadline
from threadline import ApiCall, Session, Store
from threadline.ids import new_id
from threadline.testing.usage import assert_same_rows, default_rows
from threadline.usage import GROUP_BYS, UsageQuery
from threadline_sqlite.migrations import MIGRATION_NAMES

_DAY = datetime(2026, 3, 14, tzinfo=timezone.utc)
_PRICES = {"big": {"input_per_million": 2.5, "output_per_million": 10.0}}
_PERIODS = [
    (None, None),
    (_DAY + timedelta(hours=7), None),
    (None, _DAY + timedelta(days=2, hours=3)),
    (_DAY + timedelta(hours=30), _DAY + timedelta(hours=31)),
]


async def _fill(store: Store, tenant: str, users: list[str]) -> list[ApiCall]:
    sessions = [
        await store.create_session(Session(tenant_id=tenant, user_id=users[i % 2]))
        for i in range(3)
    ]
    saved = []
    for i in range(60):
        s = sessions[i % 3]
        saved.append(
            await store.save_api_call(
                ApiCall(
                    tenant_id=tenant, session_id=s.id, user_id=s.user_id,
                    agent_id=None if i % 4 == 0 else users[i % 2],
                    model=("big", "small")[i % 2], status=("success", "failed")[i % 5 == 0],
                    prompt_tokens=100 + i, completion_tokens=None if i % 6 == 0 else i,
                    latency_ms=None if i % 7 == 0 else 10.0 * (i + 1),
                    time_to_first_token_ms=float(i % 9), created_at=_DAY + timedelta(hours=i),
                )
            )
        )  # fmt: skip
    return saved


async def _assert_matches(store: Store, tenant: str) -> None:
    for group_by in GROUP_BYS:
        for since, until in _PERIODS:
            query = UsageQuery(group_by, since, until, _PRICES)  # type: ignore[arg-type]
            report = await store.usage(tenant, since=since, until=until, group_by=group_by,
                                       prices=_PRICES)  # fmt: skip
            assert_same_rows(list(report.rows), await default_rows(store, tenant, query))


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
        saved = await _fill(old, tenant, users)
    finally:
        await old.close()
    _delete(db_path, saved[:5])
    store = await threadline.connect(f"sqlite:///{db_path}")  # migrates: 0010
    try:
        assert _rollup_rows(db_path) > 0
        await _assert_matches(store, tenant)
        assert (await store.usage(tenant)).calls == 55
        more = await _fill(store, tenant, users)
        await _assert_matches(store, tenant)
        _delete(db_path, more[10:20])
        _update(db_path, more[20:30])
        await _assert_matches(store, tenant)
        await store.erase_user(tenant, users[0])
        await _assert_matches(store, tenant)
        for session in await store.list_sessions(tenant):
            assert await store.delete_session(tenant, session.id)
        assert (await store.usage(tenant, group_by="session")).rows == ()
    finally:
        await store.close()
