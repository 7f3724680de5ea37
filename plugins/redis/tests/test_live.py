"""Live replies over pub/sub, and the session expiry ``threadline sessions list`` shows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import redis

import threadline
from threadline.storekit.live import ReplyPiece

TENANT = "019bda9f-0000-7000-8000-0000000000e1"
OTHER = "019bda9f-0000-7000-8000-0000000000e2"


async def test_pieces_arrive_in_order_for_the_tenant_only(store: threadline.Store) -> None:
    session = threadline.new_id()
    sub = await store.subscribe_replies(TENANT, session)
    assert sub is not None
    async with sub:
        store.publish_reply(ReplyPiece(OTHER, session, session, 0, "not yours"))
        for i in range(50):
            store.publish_reply(ReplyPiece(TENANT, session, session, i, "x"))
        store.publish_reply(ReplyPiece(TENANT, session, session, 50, "", "complete"))
        got = [await sub.get(5) for _ in range(51)]
    assert [p.offset for p in got if p] == list(range(51))
    assert got[-1] is not None and got[-1].status == "complete"


async def test_a_killed_subscriber_connection_tells_followers_to_re_read(
    store: threadline.Store, server_url: str
) -> None:
    session = threadline.new_id()
    sub = await store.subscribe_replies(TENANT, session)
    assert sub is not None
    async with sub:
        admin = redis.Redis.from_url(server_url)
        try:
            admin.client_kill_filter(_type="pubsub")
        finally:
            admin.close()
        assert await sub.get(5) is None and sub.overflowed
        for _ in range(150):  # redis-py subscribes again when it reconnects (30 s at most)
            store.publish_reply(ReplyPiece(TENANT, session, session, 0, "again"))
            piece = await sub.get(0.2)
            if piece is not None and piece.text == "again":
                break
        else:
            raise AssertionError("no piece after the reconnect")


async def test_session_expiry_reports_the_ttl(make_url: Callable[..., str]) -> None:
    async with await threadline.connect(make_url(ttl="7d")) as store:
        await store.migrate()
        session = await store.create_session(
            threadline.Session(id=threadline.new_id(), tenant_id=TENANT)
        )
        missing = threadline.new_id()
        found = await store.session_expiry(TENANT, [session.id, missing])
        expires = found[session.id]
        assert expires is not None and found[missing] is None
        soon = datetime.now(timezone.utc) + timedelta(days=7)
        assert abs((expires - soon).total_seconds()) < 60
        assert (await store.session_expiry(OTHER, [session.id])) == {session.id: None}
    async with await threadline.connect(make_url()) as store:  # no TTL: sessions stay
        kept = await store.create_session(
            threadline.Session(id=threadline.new_id(), tenant_id=TENANT)
        )
        assert (await store.session_expiry(TENANT, [kept.id])) == {kept.id: None}


def test_sessions_list_shows_when_sessions_expire(make_url: Callable[..., str]) -> None:
    import asyncio

    from click.testing import CliRunner

    from threadline.cli import cli

    url = make_url(ttl="7d")

    async def create() -> str:
        async with await threadline.connect(url) as store:
            await store.migrate()
            session = threadline.Session(id=threadline.new_id(), tenant_id=TENANT)
            return (await store.create_session(session)).id

    session_id = asyncio.run(create())
    listed = CliRunner().invoke(
        cli, ["sessions", "list", "--store", url, "--tenant", TENANT, "--all-users"]
    )
    assert listed.exit_code == 0, listed.output
    header, row = (line for line in listed.output.splitlines() if not line.startswith("-"))
    assert "expires (UTC)" in header
    expected = (datetime.now(timezone.utc) + timedelta(days=7)).strftime("%Y-%m-%d")
    assert row.startswith(session_id) and row.split()[-2] == expected  # date, time
    as_json = CliRunner().invoke(
        cli, ["sessions", "list", "--store", url, "--tenant", TENANT, "--all-users", "--json"]
    )
    assert as_json.output.count('"expires_at": "' + expected) == 1
