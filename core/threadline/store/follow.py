"""Following a reply while it streams (:meth:`threadline.Store.follow_reply`).

Gap-free join: the follower subscribes to the session's live pieces first (stores with the
live-replies hooks), then reads the stored row (``L`` characters so far) and yields that
text, then each live piece from offset ``L`` on, overlaps trimmed and duplicates dropped.
A gap (a dropped piece, a full queue, a lost connection) is filled from the stored row.
Stores without live replies are polled: the row's flushed text every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import attrs
import pluggy

from threadline.errors import NotFoundError, ValidationError
from threadline.models import Message, MessageStatus
from threadline.storekit.live import SUBSCRIPTION_QUEUE, ReplyPiece, ReplySubscription

if TYPE_CHECKING:
    from threadline.store.facade import Store

__all__ = [
    "POLL_INTERVAL",
    "RESYNC_INTERVAL",
    "STALL_TIMEOUT",
    "ReplyUpdate",
    "follow_reply",
    "publish",
]

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.1
"""Seconds between reads of the stored row on a store without live replies (and while a
gap in the live pieces waits for the row to catch up)."""

RESYNC_INTERVAL = 1.0
"""With live replies: seconds without a piece after which the row is read again."""

STALL_TIMEOUT = 120.0
"""Seconds a reply may stay ``streaming`` with no new text before a follower ends with
``interrupted`` (its writer presumably died and nobody reopened the session)."""


@attrs.frozen
class ReplyUpdate:
    """New text of a followed reply; ``status`` is set on the last update only.

    The first update carries the text so far; joined in order, the updates' text is the reply.
    """

    message_id: str
    text: str
    status: MessageStatus | None = None


class _Follower:
    def __init__(
        self,
        store: Store,
        tenant_id: str,
        session_id: str,
        sub: ReplySubscription | None,
        poll_interval: float,
        stall_timeout: float,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.sub = sub
        self.poll_interval = poll_interval
        self.stall_timeout = stall_timeout
        self.message_id: str | None = None
        self.seq: int | None = None
        self.offset = 0
        self.done = False
        self.pending: list[ReplyPiece] = []
        self.loop = asyncio.get_running_loop()
        self.progress = self.loop.time()
        self.last_read = self.loop.time()

    async def latest(self) -> Message | None:
        window = await self.store.load_window(self.tenant_id, self.session_id, 1)
        return next((m for m in reversed(window) if m.role == "assistant"), None)

    async def by_id(self, message_id: str) -> Message | None:
        last = await self.latest()
        if last is not None and last.id == message_id:
            return last
        messages = await self.store.get_messages(self.tenant_id, self.session_id)
        return next((m for m in messages if m.id == message_id), None)

    async def row(self) -> Message | None:
        """The followed reply as stored now (``None`` before its first write)."""
        self.last_read = self.loop.time()
        if self.seq is None:
            assert self.message_id is not None
            found = await self.latest()
            if found is None or found.id != self.message_id:
                return None
            self.seq = found.seq
            return found
        rows = await self.store.read_messages(
            self.tenant_id, self.session_id, after_seq=self.seq - 1, before_seq=self.seq + 1
        )
        return rows[0] if rows and rows[0].id == self.message_id else None

    def take(self, message: Message) -> list[ReplyUpdate]:
        """Updates for a stored row: its text past our offset, and its end."""
        assert self.message_id is not None
        out: list[ReplyUpdate] = []
        text = message.content[self.offset :]
        if message.status != "streaming":
            self.done = True
            out.append(ReplyUpdate(self.message_id, text, message.status))
        elif text:
            out.append(ReplyUpdate(self.message_id, text))
        if text:
            self.offset += len(text)
            self.progress = self.loop.time()
        return out + self.drain() if not self.done else out

    def drain(self) -> list[ReplyUpdate]:
        """Apply pending live pieces that now join on at the offset."""
        assert self.message_id is not None
        out: list[ReplyUpdate] = []
        self.pending.sort(key=lambda p: p.offset)
        while self.pending and self.pending[0].offset <= self.offset and not self.done:
            piece = self.pending.pop(0)
            text = piece.text[self.offset - piece.offset :] if piece.end > self.offset else ""
            if text:
                self.offset += len(text)
                self.progress = self.loop.time()
            if piece.status is not None:
                self.done = True
                out.append(ReplyUpdate(self.message_id, text, piece.status))
            elif text:
                out.append(ReplyUpdate(self.message_id, text))
        return out

    async def resync(self) -> list[ReplyUpdate]:
        found = await self.row()
        out = self.take(found) if found is not None else []
        if not self.done and self.loop.time() - self.progress > self.stall_timeout:
            self.done = True
            out.append(ReplyUpdate(self.message_id or "", "", "interrupted"))
        return out

    async def next_piece(self) -> ReplyPiece | None:
        """The next live piece; ``None`` when it is time to read the row instead."""
        if self.sub is None:
            await asyncio.sleep(self.poll_interval)
            return None
        if self.sub.overflowed:
            self.sub.overflowed = False
            return None
        wait = self.poll_interval if self.pending else RESYNC_INTERVAL
        return await self.sub.get(wait)

    async def start(self, message_id: str | None, wait_next: bool) -> list[ReplyUpdate]:
        """Find the reply to follow (waiting for the next one to start if asked)."""
        if message_id is not None:
            found = await self.by_id(message_id)
            if found is None or found.role != "assistant":
                raise NotFoundError(f"no reply {message_id} in session {self.session_id}")
        else:
            found = await self.latest()
            if found is None or (wait_next and found.status != "streaming"):
                previous = None if found is None else found.id
                return await self.wait_for_next(previous)
        self.message_id, self.seq = found.id, found.seq
        first = self.take(found)
        if not first:  # streaming, nothing flushed yet: the first update is empty text
            first = [ReplyUpdate(found.id, "")]
        return first

    async def wait_for_next(self, previous: str | None) -> list[ReplyUpdate]:
        while True:
            piece = await self.next_piece()
            if piece is not None and piece.message_id != previous:
                self.message_id = piece.message_id
                self.pending.append(piece)
                return [ReplyUpdate(piece.message_id, ""), *self.drain()]
            if piece is None:
                found = await self.latest()
                if found is not None and found.id != previous:
                    self.message_id, self.seq = found.id, found.seq
                    return [ReplyUpdate(found.id, ""), *self.take(found)]

    async def step(self) -> list[ReplyUpdate]:
        piece = await self.next_piece()
        if piece is None:
            return await self.resync()
        if piece.message_id != self.message_id or (piece.end <= self.offset and not piece.status):
            return []  # another reply's piece, or text we have
        self.pending.append(piece)
        out = self.drain()
        if len(self.pending) > SUBSCRIPTION_QUEUE:  # a gap the row has not filled yet:
            self.pending.clear()  # bounded; the row holds this text and more, read below
            self.last_read = 0.0
        if self.pending and self.loop.time() - self.last_read >= self.poll_interval:
            out += await self.resync()  # a gap: the row may hold the missing text
        return out


async def follow_reply(
    store: Store,
    tenant_id: str,
    session_id: str,
    message_id: str | None = None,
    *,
    wait_next: bool = False,
    poll_interval: float = POLL_INTERVAL,
    stall_timeout: float = STALL_TIMEOUT,
) -> AsyncIterator[ReplyUpdate]:
    """Yield a reply's text so far, then each new piece, the last update with its status.

    See :meth:`threadline.Store.follow_reply`.
    """
    if not poll_interval > 0 or not stall_timeout > 0:
        raise ValidationError("poll_interval and stall_timeout must be positive seconds")
    if await store.get_session(tenant_id, session_id) is None:
        raise NotFoundError(f"no session {session_id} for this tenant")
    sub = await store.subscribe_replies(tenant_id, session_id)
    try:
        follower = _Follower(store, tenant_id, session_id, sub, poll_interval, stall_timeout)
        for update in await follower.start(message_id, wait_next):
            yield update
        while not follower.done:
            for update in await follower.step():
                yield update
    finally:
        if sub is not None:
            await sub.close()


def publish(impls: Sequence[pluggy.HookImpl], piece: ReplyPiece) -> None:
    """Call each ``threadline_publish_reply`` (plain functions that only queue); a failure
    is logged, never raised to the writer (its followers read the stored row instead)."""
    for impl in impls:
        try:
            impl.function(*[piece for _ in impl.argnames])
        except Exception as exc:
            logger.warning("%r: publish_reply failed: %s", impl.plugin, exc)
