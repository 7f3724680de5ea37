"""Live replies on Redis (pub/sub), and the session expiry ``threadline sessions list`` shows.

The writer ``PUBLISH``es each piece on ``<prefix>:live:<tenant>:<session>`` (pipelined, in
the background); followers of a store share one ``SUBSCRIBE`` connection, read by one task.
A subscription is live once the server has confirmed it. When the connection drops every
follower re-reads the stored row (also when redis-py reconnects and subscribes again by
itself, which it does without raising).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import redis.exceptions as rx
from redis.asyncio.client import PubSub

from threadline.hookspecs import hookimpl
from threadline.storekit.live import Fanout, PublishingStore, ReplyPiece, ReplySubscription
from threadline_redis.client import Client

__all__ = ["LiveReplies"]

logger = logging.getLogger(__name__)


class _PubSub(PubSub):
    """redis-py's pub/sub, which re-subscribes on reconnect: followers then re-read rows."""

    fanout: Fanout | None = None

    async def on_connect(self, connection: Any) -> None:
        await super().on_connect(connection)
        if self.fanout is not None:
            self.fanout.lose_all()  # pieces published while away were missed


class LiveReplies(PublishingStore):
    """The live-replies and session-expiry hooks of :class:`~threadline_redis.store.RedisStore`."""

    client: Client
    _fanout: Fanout | None = None
    _pubsub: Any = None
    _reader: asyncio.Task[None] | None = None
    _confirmed: dict[str, asyncio.Event]
    _live_closed = False

    async def expires_at(self, tenant_id: str, session_id: str) -> datetime | None:
        raise NotImplementedError  # RedisStore's

    @hookimpl
    async def threadline_session_expiry(
        self, tenant_id: str, session_ids: Sequence[str]
    ) -> Mapping[str, datetime | None]:
        return {sid: await self.expires_at(tenant_id, sid) for sid in session_ids}

    def _channel(self, tenant_id: str, session_id: str) -> str:
        return self.client.key("live", tenant_id, session_id)

    def live_closed(self) -> bool:
        return self._live_closed

    async def send_pieces(self, pieces: Sequence[ReplyPiece]) -> None:
        pipe = self.client.redis.pipeline(transaction=False)
        for piece in pieces:
            pipe.publish(self._channel(piece.tenant_id, piece.session_id), piece.to_json())
        await self.client.command("publish_reply", pipe.execute())

    @hookimpl
    async def threadline_subscribe_replies(
        self, tenant_id: str, session_id: str, maxsize: int
    ) -> ReplySubscription:
        if self._fanout is None:
            self._fanout = Fanout()
            self._confirmed = {}
            redis = self.client.redis
            # redis-py >= 5.2 hands its event dispatcher to every PubSub; older ones have none
            dispatcher = getattr(redis, "_event_dispatcher", None)
            extra = {} if dispatcher is None else {"event_dispatcher": dispatcher}
            self._pubsub = _PubSub(redis.connection_pool, **extra)
            self._pubsub.fanout = self._fanout
        fanout, channel = self._fanout, self._channel(tenant_id, session_id)

        async def unsubscribe() -> None:
            if fanout.remove(channel, sub) and not self._live_closed:
                self._confirmed.pop(channel, None)
                with contextlib.suppress(rx.RedisError, OSError):
                    await self._pubsub.unsubscribe(channel)

        sub = ReplySubscription(maxsize, on_close=unsubscribe)
        if fanout.add(channel, sub):
            self._confirmed[channel] = asyncio.Event()
            try:
                await self.client.command("subscribe_replies", self._pubsub.subscribe(channel))
            except BaseException:
                fanout.remove(channel, sub)
                raise
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())
        event = self._confirmed.get(channel)
        if event is not None:
            timeout = self.client.config.timeout or 10.0
            await self.client.command("subscribe_replies", asyncio.wait_for(event.wait(), timeout))
        return sub

    async def _read(self) -> None:
        assert self._fanout is not None
        while not self._live_closed and self._fanout.channels:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except (rx.RedisError, OSError) as exc:
                logger.info("live replies: subscriber connection lost (%s)", exc)
                self._fanout.lose_all()
                await asyncio.sleep(0.1)
                continue
            if msg is None:
                continue
            channel = msg["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if msg["type"] == "message":
                self._fanout.deliver(channel, msg["data"])
            elif msg["type"] == "subscribe" and channel in self._confirmed:
                self._confirmed[channel].set()

    async def close_live(self) -> None:
        """Send buffered pieces, stop reading, close the subscriber connection."""
        if self._publisher is not None and not self._live_closed:
            await self._publisher.close()
        self._live_closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(rx.RedisError, OSError):
                await self._pubsub.aclose()
