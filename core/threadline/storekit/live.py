"""The parts a store needs for the live-replies hooks: pieces on the wire, bounded
subscriptions, a fan-out of received pieces, and a publisher that never makes the writer wait.

A backend (PostgreSQL ``LISTEN/NOTIFY``, Redis pub/sub) supplies only how a batch of pieces is
sent and how received payloads arrive; :class:`Publisher` and :class:`Fanout` do the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from threadline.errors import ValidationError
from threadline.hookspecs import hookimpl
from threadline.models import MESSAGE_STATUSES, MessageStatus

__all__ = [
    "PUBLISH_BUFFER",
    "SUBSCRIPTION_QUEUE",
    "Fanout",
    "Publisher",
    "ReplyPiece",
    "ReplySubscription",
]

logger = logging.getLogger(__name__)

PUBLISH_BUFFER = 4096
"""Pieces a writer's publisher holds before it drops (followers then re-read the row)."""

SUBSCRIPTION_QUEUE = 1024
"""Pieces a follower's subscription holds before it overflows (it then re-reads the row)."""


@attrs.frozen
class ReplyPiece:
    """``text`` of a streaming reply at character ``offset``; the last piece has a ``status``."""

    tenant_id: str
    session_id: str
    message_id: str
    offset: int
    text: str
    status: MessageStatus | None = None

    @property
    def end(self) -> int:
        """The offset just past this piece's text."""
        return self.offset + len(self.text)

    def to_json(self) -> str:
        fields = [self.tenant_id, self.session_id, self.message_id, self.offset, self.text]
        return json.dumps([*fields, self.status], ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ReplyPiece:
        """The piece ``to_json`` wrote; :class:`ValidationError` for anything else."""
        try:
            tenant, session, message, offset, text, status = json.loads(raw)
            ok = all(isinstance(v, str) for v in (tenant, session, message, text))
            if not ok or type(offset) is not int or offset < 0:
                raise ValueError("bad field")
            if status is not None and status not in MESSAGE_STATUSES:
                raise ValueError("bad status")
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"not a reply piece: {exc}") from None
        return cls(tenant, session, message, offset, text, status)

    def split(self, max_bytes: int) -> list[ReplyPiece]:
        """This piece as consecutive pieces whose JSON fits in ``max_bytes`` (UTF-8)."""
        if len(self.to_json().encode()) <= max_bytes:
            return [self]
        room = max(1, (max_bytes - len(attrs.evolve(self, text="").to_json().encode())) // 6)
        parts = [self.text[i : i + room] for i in range(0, len(self.text), room)]
        last = len(parts) - 1
        return [
            attrs.evolve(
                self,
                offset=self.offset + i * room,
                text=part,
                status=self.status if i == last else None,
            )
            for i, part in enumerate(parts)
        ]


class ReplySubscription:
    """A follower's bounded queue of pieces for one session.

    When the queue is full a piece is dropped and :attr:`overflowed` set: the follower then
    re-reads the stored row, so a slow follower costs neither the writer nor memory.
    """

    def __init__(self, maxsize: int, on_close: Callable[[], Awaitable[None]] | None = None):
        self._queue: asyncio.Queue[ReplyPiece | None] = asyncio.Queue(maxsize)
        self._on_close = on_close
        self.overflowed = False
        """A piece was dropped (or the connection lost) since the follower last re-read."""
        self.closed = False

    def offer(self, piece: ReplyPiece) -> None:
        """Queue a piece without waiting; drop it (and say so) when the queue is full."""
        try:
            self._queue.put_nowait(piece)
        except asyncio.QueueFull:
            self.overflowed = True

    def lost(self) -> None:
        """Pieces may have been missed (a connection dropped): wake the follower to re-read."""
        self.overflowed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def get(self, timeout: float) -> ReplyPiece | None:
        """The next piece, or ``None`` after ``timeout`` seconds or a loss."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._on_close is not None:
                await self._on_close()

    async def __aenter__(self) -> ReplySubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Fanout:
    """The live subscriptions of one store, by channel; a backend hands it what arrives."""

    def __init__(self) -> None:
        self.channels: dict[str, set[ReplySubscription]] = {}

    def add(self, channel: str, sub: ReplySubscription) -> bool:
        """Add ``sub``; True when it is the channel's first (the backend starts listening)."""
        subs = self.channels.setdefault(channel, set())
        subs.add(sub)
        return len(subs) == 1

    def remove(self, channel: str, sub: ReplySubscription) -> bool:
        """Remove ``sub``; True when the channel has none left (the backend stops listening)."""
        subs = self.channels.get(channel)
        if subs is None:
            return False
        subs.discard(sub)
        if subs:
            return False
        del self.channels[channel]
        return True

    def deliver(self, channel: str, payload: str | bytes) -> None:
        """Offer a received payload to the channel's subscriptions (garbage is logged)."""
        subs = self.channels.get(channel)
        if not subs:
            return
        try:
            piece = ReplyPiece.from_json(payload)
        except ValidationError as exc:
            logger.warning("live replies: %s on %s", exc, channel)
            return
        for sub in list(subs):
            sub.offer(piece)

    def lose_all(self) -> None:
        """The connection dropped: every follower re-reads the stored rows."""
        for subs in self.channels.values():
            for sub in subs:
                sub.lost()


class Publisher:
    """Sends pieces in the background, in order, batched; :meth:`publish` never waits.

    At most ``maxsize`` pieces wait; more are dropped (the first drop is logged) and the
    followers fill the gap from the stored row. A failed send is logged and its batch dropped.
    """

    def __init__(
        self, send: Callable[[Sequence[ReplyPiece]], Awaitable[Any]], maxsize: int = PUBLISH_BUFFER
    ) -> None:
        self._send = send
        self._queue: asyncio.Queue[ReplyPiece] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Pieces dropped because the buffer was full or a send failed."""

    def publish(self, piece: ReplyPiece) -> None:
        try:
            self._queue.put_nowait(piece)
        except asyncio.QueueFull:
            if not self.dropped:
                logger.warning("live replies: buffer full, pieces dropped (followers re-read)")
            self.dropped += 1
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 256:
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                logger.warning("live replies: %d piece(s) not sent: %s", len(batch), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def flush(self, timeout: float = 1.0) -> None:
        """Wait (up to ``timeout``) until the buffered pieces are sent."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self, timeout: float = 1.0) -> None:
        """Send what is buffered (up to ``timeout``), then stop."""
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class PublishingStore:
    """The writer's live-replies hook for a store: pieces go to :meth:`send_pieces` in the
    background through one :class:`Publisher`, so a streaming reply never waits for it."""

    _publisher: Publisher | None = None

    def live_closed(self) -> bool:
        """``True`` once the store is closing: pieces are then dropped."""
        return False

    async def send_pieces(self, pieces: Sequence[ReplyPiece]) -> None:
        """Deliver a batch of pieces to the followers (the store's transport)."""
        raise NotImplementedError

    @hookimpl
    def threadline_publish_reply(self, piece: ReplyPiece) -> None:
        if self.live_closed():
            return
        if self._publisher is None:
            self._publisher = Publisher(self.send_pieces)
        self._publisher.publish(piece)
