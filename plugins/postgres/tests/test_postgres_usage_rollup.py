"""The usage rollup (migration 0010): filled from the calls on upgrade, kept by every write."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import asyncpg

import threadline
from threadline import ApiCall, Session, Store
from threadline.ids import new_id
from threadline.testing.usage import assert_same_rows, default_rows
from threadline.usage import GROUP_BYS, UsageQuery
from threadline_postgres import parse_config
from threadline_postgres.schema import MIGRATIONS, migrate

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


async def test_0010_fills_the_rollup_from_a_filled_schema(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    """A schema of the previous release with calls (some deleted) upgrades in place: reports
    from the rollup equal the calls' own; later writes, updates and deletions keep them so."""
    url = make_url(schema=fresh_schema)
    config = parse_config(url)
    before = tuple(m for m in MIGRATIONS if m.name != "0010_usage_rollup")
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, config, before)
        old = await threadline.connect(url, migrate=False)
        tenant, users = new_id(), [new_id(), new_id()]
        try:
            saved = await _fill(old, tenant, users)
        finally:
            await old.close()
        calls = config.table("entity_api_call")
        await conn.execute(f"DELETE FROM {calls} WHERE id = ANY($1::uuid[])",
                           [c.id for c in saved[:5]])  # fmt: skip
        store = await threadline.connect(url)  # migrates: 0010
        try:
            rollup = config.table("usage_rollup")
            assert await conn.fetchval(f"SELECT count(*) FROM {rollup}") > 0
            await _assert_matches(store, tenant)
            assert (await store.usage(tenant)).calls == 55
            more = await _fill(store, tenant, users)
            await conn.execute(f"DELETE FROM {calls} WHERE id = ANY($1::uuid[])",
                               [c.id for c in more[10:20]])  # fmt: skip
            await conn.execute(
                f"UPDATE {calls} SET model = 'small', latency_ms = 7.5, "
                "created_at = created_at + interval '1 day' WHERE id = ANY($1::uuid[])",
                [c.id for c in more[20:30]],
            )
            await _assert_matches(store, tenant)
            await store.erase_user(tenant, users[0])
            await _assert_matches(store, tenant)
            for session in await store.list_sessions(tenant):
                assert await store.delete_session(tenant, session.id)
            assert (await store.usage(tenant, group_by="session")).rows == ()
        finally:
            await store.close()
    finally:
        await conn.close()
