"""Following a streaming reply in-process: polling a store without live replies, and a
store whose live pieces get lost or overflow a follower's queue (the gaps are filled from
the stored row, so the followed text is still exactly the persisted reply)."""

from __future__ import annotations

import asyncio

import pytest

import threadline
from threadline.errors import NotFoundError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.runtime.providers import EchoProvider
from threadline.storekit.live import Fanout, Publisher, ReplyPiece, ReplySubscription

TENANT = "019bda9f-0000-7000-8000-0000000000c1"
PROMPT = " ".join(f"word{i}" for i in range(120))


class LossyLive:
    """Live replies in one process that lose every ``drop_every``-th piece."""

    def __init__(self, drop_every: int = 0, maxsize: int | None = None) -> None:
        self.fanout = Fanout()
        self.sent = 0
        self.drop_every = drop_every
        self.maxsize = maxsize

    @hookimpl
    def threadline_publish_reply(self, piece: ReplyPiece) -> None:
        self.sent += 1
        if self.drop_every and self.sent % self.drop_every == 0 and piece.status is None:
            return
        self.fanout.deliver(piece.session_id, piece.to_json())

    @hookimpl
    async def threadline_subscribe_replies(
        self, tenant_id: str, session_id: str, maxsize: int
    ) -> ReplySubscription:
        async def close() -> None:
            self.fanout.remove(session_id, sub)

        sub = ReplySubscription(self.maxsize or maxsize, on_close=close)
        self.fanout.add(session_id, sub)
        return sub


async def _stream_and_follow(store: threadline.Store, slow: float = 0.0) -> tuple[str, list]:
    agent = await (
        threadline.AgentBuilder()
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_provider(EchoProvider(delay=0.002))
        .build()
    )
    await agent.open_session()
    seen: list[threadline.ReplyUpdate] = []

    async def follow() -> None:
        async for update in agent.follow(wait_next=True):
            seen.append(update)
            await asyncio.sleep(slow)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    reply = await agent.chat(PROMPT)
    await asyncio.wait_for(task, 10)
    window = await store.load_window(TENANT, agent.session_id, 1)
    stored = next(m for m in window if m.role == "assistant")
    assert stored.content == reply
    return reply, seen


def _check(reply: str, seen: list) -> None:
    assert "".join(u.text for u in seen) == reply
    assert [u.status for u in seen] == [None] * (len(seen) - 1) + ["complete"]


async def test_polling_follower_gets_the_reply_without_live_replies() -> None:
    async with await threadline.connect("memory://") as store:
        assert not store.live_replies
        reply, seen = await _stream_and_follow(store)
        _check(reply, seen)


@pytest.mark.parametrize(
    ("live", "slow"),
    [(LossyLive(), 0.0), (LossyLive(drop_every=3), 0.0), (LossyLive(maxsize=2), 0.01)],
    ids=["every-piece", "lost-pieces", "slow-follower-overflows"],
)
async def test_live_follower_gets_exactly_the_persisted_reply(live: LossyLive, slow: float) -> None:
    async with await threadline.connect("memory://") as store:
        store.add(live)
        assert store.live_replies
        reply, seen = await _stream_and_follow(store, slow)
        _check(reply, seen)
        if not live.drop_every and live.maxsize is None:
            assert len(seen) > 100  # live: one update per token, not per flush


async def test_a_follower_after_the_end_gets_the_reply_at_once() -> None:
    async with await threadline.connect("memory://") as store:
        reply, _ = await _stream_and_follow(store)
        session = (await store.list_sessions(TENANT))[0]
        late = [u async for u in store.follow_reply(TENANT, session.id)]
        assert [(u.text, u.status) for u in late] == [(reply, "complete")]
        by_id = [u async for u in store.follow_reply(TENANT, session.id, late[0].message_id)]
        assert by_id == late


async def test_a_stalled_reply_ends_interrupted_after_the_timeout() -> None:
    async with await threadline.connect("memory://") as store:
        session = await store.create_session(
            threadline.Session(id=threadline.new_id(), tenant_id=TENANT)
        )
        await store.save_message(
            threadline.Message(
                session_id=session.id, tenant_id=TENANT, role="assistant",
                content="half a rep", status="streaming",
            )
        )  # fmt: skip
        updates = [
            (u.text, u.status)
            async for u in store.follow_reply(
                TENANT, session.id, poll_interval=0.01, stall_timeout=0.1
            )
        ]
        assert updates == [("half a rep", None), ("", "interrupted")]


async def test_bad_follow_arguments_are_typed_errors() -> None:
    async with await threadline.connect("memory://") as store:
        with pytest.raises(NotFoundError):
            _ = [u async for u in store.follow_reply(TENANT, threadline.new_id())]
        with pytest.raises(ValidationError):
            _ = [u async for u in store.follow_reply(TENANT, "not-an-id")]
        session = await store.create_session(
            threadline.Session(id=threadline.new_id(), tenant_id=TENANT)
        )
        with pytest.raises(ValidationError):
            _ = [u async for u in store.follow_reply(TENANT, session.id, poll_interval=0)]


def test_reply_pieces_round_trip_and_split_under_a_byte_limit() -> None:
    piece = ReplyPiece(TENANT, TENANT, TENANT, 7, "héllo wörld " * 400, "complete")
    assert ReplyPiece.from_json(piece.to_json()) == piece
    parts = piece.split(1000)
    assert len(parts) > 1
    assert all(len(p.to_json().encode()) <= 1000 for p in parts)
    assert "".join(p.text for p in parts) == piece.text
    assert [p.offset for p in parts] == [
        7 + sum(len(q.text) for q in parts[:i]) for i in range(len(parts))
    ]
    assert [p.status for p in parts] == [None] * (len(parts) - 1) + ["complete"]
    for garbage in ("", "[]", '["a","b","c",-1,"x",null]', '["a","b","c",0,"x","done"]'):
        with pytest.raises(ValidationError):
            ReplyPiece.from_json(garbage)


async def test_publisher_never_waits_and_drops_past_its_buffer() -> None:
    release = asyncio.Event()
    sent: list[ReplyPiece] = []

    async def send(batch: object) -> None:
        await release.wait()  # a stuck connection
        sent.extend(batch)  # type: ignore[arg-type]

    publisher = Publisher(send, maxsize=10)
    piece = ReplyPiece(TENANT, TENANT, TENANT, 0, "x")
    for _ in range(50):
        publisher.publish(piece)  # returns at once however stuck the send is
    await asyncio.sleep(0)
    assert publisher.dropped >= 39
    release.set()
    await publisher.close()
    assert 1 <= len(sent) <= 11
