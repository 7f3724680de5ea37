"""Live replies on PostgreSQL: ``NOTIFY`` from the writer, ``LISTEN`` on one dedicated
connection per store (outside the pool) for its followers.

One channel per tenant and session (``tl_`` + a hash of schema, tenant and session, within
the 63-byte limit); the payload carries tenant and session too, and a piece that does not
match is ignored. A piece whose payload would pass 8000 bytes is split. The listener
connection opens at the first subscription; when it is lost every follower re-reads the
stored row and the store reconnects in the background, listening again on every channel.
``LISTEN`` needs a session: with a transaction-mode pooler point the store at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from threadline.hookspecs import hookimpl
from threadline.storekit.live import Fanout, PublishingStore, ReplyPiece, ReplySubscription
from threadline_postgres.pool import PooledStore

__all__ = ["MAX_PAYLOAD", "LiveReplies", "channel_name"]

logger = logging.getLogger(__name__)

MAX_PAYLOAD = 7900
"""Bytes of one notification's payload (the server's limit is 8000)."""

_NOTIFY = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"


def channel_name(schema: str | None, tenant_id: str, session_id: str) -> str:
    """The ``LISTEN`` channel of one session's replies."""
    key = f"{schema or ''}\0{tenant_id}\0{session_id}".encode()
    return "tl_" + hashlib.sha256(key).hexdigest()[:40]


class LiveReplies(PublishingStore, PooledStore):
    """The live-replies hooks of :class:`~threadline_postgres.store.PostgresStore`."""

    _fanout: Fanout | None = None
    _listener: asyncpg.Connection | None = None
    _listen_lock: asyncio.Lock | None = None
    _reconnect: asyncio.Task[None] | None = None

    def _channel(self, tenant_id: str, session_id: str) -> str:
        return channel_name(self.config.schema, tenant_id, session_id)

    # -- writer -------------------------------------------------------------------------

    def live_closed(self) -> bool:
        return self.closed

    async def send_pieces(self, pieces: Sequence[ReplyPiece]) -> None:
        channels: list[str] = []
        payloads: list[str] = []
        for piece in pieces:
            channel = self._channel(piece.tenant_id, piece.session_id)
            for part in piece.split(MAX_PAYLOAD):
                channels.append(channel)
                payloads.append(part.to_json())
        conn = await self._acquire(self._primary, "publish_reply")
        try:
            await conn.execute(_NOTIFY, channels, payloads)
        finally:
            self._primary.in_use -= 1
            await self._primary.pool.release(conn)

    # -- followers ----------------------------------------------------------------------

    @hookimpl
    async def threadline_subscribe_replies(
        self, tenant_id: str, session_id: str, maxsize: int
    ) -> ReplySubscription:
        if self._fanout is None:
            self._fanout = Fanout()
            self._listen_lock = asyncio.Lock()
        fanout, lock = self._fanout, self._listen_lock
        assert lock is not None
        channel = self._channel(tenant_id, session_id)

        async def unsubscribe() -> None:
            async with lock:
                if fanout.remove(channel, sub) and self._listener is not None:
                    with contextlib.suppress(Exception):
                        await self._listener.remove_listener(channel, self._on_notify)

        sub = ReplySubscription(maxsize, on_close=unsubscribe)
        async with lock:
            if fanout.add(channel, sub):
                try:
                    listener = await self._listening()
                    await listener.add_listener(channel, self._on_notify)
                except BaseException as exc:
                    fanout.remove(channel, sub)
                    if isinstance(exc, Exception):
                        raise self._error(exc, "subscribe_replies") from None
                    raise
        return sub

    async def _listening(self) -> asyncpg.Connection:
        if self._listener is None or self._listener.is_closed():
            conn: asyncpg.Connection = await asyncpg.connect(
                **{**self.config.connect_kwargs(), "statement_cache_size": 0}
            )
            conn.add_termination_listener(self._on_lost)
            self._listener = conn
        return self._listener

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if self._fanout is not None:
            self._fanout.deliver(channel, payload)

    def _on_lost(self, conn: Any) -> None:
        if self.closed or conn is not self._listener:
            return
        self._listener = None
        if self._fanout is not None:
            self._fanout.lose_all()
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        """Reconnect the listener and listen on every channel again (backing off to 2 s)."""
        delay = 0.05
        while not self.closed and self._fanout is not None and self._fanout.channels:
            assert self._listen_lock is not None
            try:
                async with self._listen_lock:
                    listener = await self._listening()
                    for channel in list(self._fanout.channels):
                        await listener.add_listener(channel, self._on_notify)
                self._fanout.lose_all()  # pieces sent while away: re-read the rows
                return
            except Exception as exc:
                logger.info("live replies: listener reconnect failed (%s); retrying", exc)
                self._listener = None
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    @hookimpl
    async def threadline_close(self) -> None:
        """Send buffered pieces, close the listener, then the pools."""
        if self._publisher is not None and not self.closed:
            await self._publisher.close()
        if self._reconnect is not None:
            self._reconnect.cancel()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), self.config.command_timeout)
        await super().threadline_close()
