"""Live replies over LISTEN/NOTIFY: big pieces split under the 8000-byte payload limit, one
tenant's pieces never reach another's follower, and a listener connection that is killed
reconnects (its followers told to re-read the row meanwhile)."""

from __future__ import annotations

import asyncpg

import threadline
from threadline.storekit.live import ReplyPiece, ReplySubscription
from threadline_postgres.live import MAX_PAYLOAD

TENANT = "019bda9f-0000-7000-8000-0000000000d1"
OTHER = "019bda9f-0000-7000-8000-0000000000d2"


async def _pieces(sub: ReplySubscription, until: int) -> list[ReplyPiece]:
    got: list[ReplyPiece] = []
    while not got or got[-1].end < until:
        piece = await sub.get(5)
        assert piece is not None, f"no piece after {got[-1].end if got else 0} chars"
        got.append(piece)
    return got


async def test_a_big_piece_arrives_whole_in_payloads_under_the_limit(
    store: threadline.Store,
) -> None:
    session = threadline.new_id()
    text = "ünïcode ∑ " * 3000  # ~30 KB of UTF-8
    async with await store.subscribe_replies(TENANT, session) as sub:  # type: ignore[union-attr]
        store.publish_reply(ReplyPiece(TENANT, session, session, 0, text))
        got = await _pieces(sub, len(text))
    assert len(got) > 3
    assert "".join(p.text for p in got) == text
    assert all(len(p.to_json().encode()) <= MAX_PAYLOAD for p in got)


async def test_another_tenants_pieces_never_arrive(store: threadline.Store) -> None:
    session = threadline.new_id()
    async with await store.subscribe_replies(TENANT, session) as sub:  # type: ignore[union-attr]
        store.publish_reply(ReplyPiece(OTHER, session, session, 0, "not yours"))
        store.publish_reply(ReplyPiece(TENANT, session, session, 0, "yours"))
        got = await _pieces(sub, 5)
    assert [p.text for p in got] == ["yours"]


async def test_a_killed_listener_reconnects_and_followers_re_read(
    store: threadline.Store, database_url: str
) -> None:
    session = threadline.new_id()
    async with await store.subscribe_replies(TENANT, session) as sub:  # type: ignore[union-attr]
        listener = store.primary._listener  # type: ignore[attr-defined]
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        finally:
            await admin.close()
        assert await sub.get(5) is None and sub.overflowed  # told to re-read the row
        for _ in range(50):  # reconnected and listening again
            store.publish_reply(ReplyPiece(TENANT, session, session, 0, "after"))
            piece = await sub.get(0.2)
            if piece is not None and piece.text == "after":
                break
        else:
            raise AssertionError("no piece after the reconnect")
    assert store.primary._listener is not listener  # type: ignore[attr-defined]
