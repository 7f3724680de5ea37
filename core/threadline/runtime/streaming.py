"""Persisting a reply while it streams, and timing the request that produced it.

:class:`ReplyRecorder` writes the assistant row at the first token (status
``streaming``), rewrites it with the text so far at most once per flush interval in
the background, and writes the final content and status however the stream ends. A
process killed mid-reply so loses at most one interval of text; the row it left
``streaming`` becomes ``interrupted`` when the session is next opened. On a store with
live replies each piece is also published as it arrives, and the end after the final
write (:meth:`threadline.Store.publish_reply`: queued, never awaited), for followers
(:mod:`threadline.store.follow`). A
:class:`BufferedReply` only collects the text (a graph run's history is persisted by its
checkpoints instead); both are a :class:`ReplyWriter` for :mod:`threadline.runtime.turn`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs

from threadline.models import ApiCall, ApiCallStatus, Message, MessageStatus, ToolCall
from threadline.runtime.providers import Usage
from threadline.store import Store
from threadline.storekit.live import ReplyPiece

__all__ = ["BufferedReply", "ReplyRecorder", "ReplyWriter", "RequestTimer"]


class ReplyWriter(Protocol):
    """Where the text of one assistant reply goes while it streams, and how it ends."""

    @property
    def message_id(self) -> str:
        """The id of the reply's message."""
        ...

    def add(self, text: str) -> None:
        """Record the next piece of the reply's text."""
        ...

    async def finish(
        self,
        status: MessageStatus,
        *,
        tool_calls: Sequence[ToolCall] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """Give the reply its final text, status, tool calls and metadata; return it."""
        ...


class BufferedReply:
    """A :class:`ReplyWriter` that keeps the reply in memory and writes nothing."""

    def __init__(self, template: Message) -> None:
        self.template = template
        self.parts: list[str] = []

    @property
    def message_id(self) -> str:
        return self.template.id

    def add(self, text: str) -> None:
        self.parts.append(text)

    async def finish(
        self,
        status: MessageStatus,
        *,
        tool_calls: Sequence[ToolCall] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """The reply as a message with its final text and status."""
        return attrs.evolve(
            self.template,
            content="".join(self.parts),
            status=status,
            tool_calls=tuple(tool_calls),
            metadata={**self.template.metadata, **(metadata or {})},
        )


class ReplyRecorder:
    """Saves one assistant message as its text streams in."""

    def __init__(self, store: Store, template: Message, flush_interval: float) -> None:
        self.store = store
        self.template = template
        self.flush_interval = flush_interval
        self.parts: list[str] = []
        self._inserted = False
        self._pending: asyncio.Future[None] | None = None
        self._last_flush = 0.0
        self._written_parts = 0  # how many parts the latest write started with held
        self._timer: asyncio.TimerHandle | None = None
        self._finishing = False
        self._live = store.live_replies
        self._length = 0  # characters so far: the next piece's offset

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def message_id(self) -> str:
        return self.template.id

    def _snapshot(self, status: MessageStatus, **changes: Any) -> Message:
        return attrs.evolve(self.template, content=self.text, status=status, **changes)

    async def _insert(self, message: Message) -> None:
        stored = await self.store.save_message(message)
        # Later writes carry the seq, so a store on the core defaults finds the row by it.
        self.template = attrs.evolve(self.template, seq=stored.seq)
        self._inserted = True

    async def _flush(self, message: Message) -> None:
        await self.store.update_message(message)

    def add(self, text: str) -> None:
        """Record a piece of text; publish it to followers; start a write when one is due."""
        self.parts.append(text)
        if self._live:
            self._publish(text, None)
        self._length += len(text)
        self._write_if_due()

    def _publish(self, text: str, status: MessageStatus | None) -> None:
        t = self.template
        self.store.publish_reply(
            ReplyPiece(t.tenant_id, t.session_id, t.id, self._length, text, status)
        )

    def _write_if_due(self) -> None:
        # Text not written yet is written within one flush interval of its arrival even
        # when no token follows it (a model that pauses, a stalled connection): when the
        # write is not due yet a timer comes back then, and so does the end of a write.
        if self._finishing or self._written_parts == len(self.parts):
            return
        if self._pending is not None and not self._pending.done():
            return  # one write at a time, in order; its end calls back here
        now = time.monotonic()
        if self._pending is None:
            self._start(self._insert, now)
        elif self._inserted:
            wait = self._last_flush + self.flush_interval - now
            if wait <= 0:
                self._start(self._flush, now)
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)

    def _start(self, write: Callable[[Message], Awaitable[None]], now: float) -> None:
        self._last_flush = now
        self._written_parts = len(self.parts)
        self._pending = asyncio.ensure_future(write(self._snapshot("streaming")))
        self._pending.add_done_callback(self._on_written)

    def _on_timer(self) -> None:
        self._timer = None
        self._write_if_due()

    def _on_written(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved here; finish() rewrites after a failed write
        self._write_if_due()

    async def finish(
        self,
        status: MessageStatus,
        *,
        tool_calls: Sequence[ToolCall] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """Write the final text and status, after any background write; return the row."""
        self._finishing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is not None:
            try:
                await asyncio.shield(self._pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # a failed background write is retried by the final write below
        final = self._snapshot(
            status,
            tool_calls=tuple(tool_calls),
            metadata={**self.template.metadata, **(metadata or {})},
        )
        if self._inserted:
            stored = await self.store.update_message(final)
        else:
            stored = await self.store.save_message(final)
            if stored.content != final.content or stored.status != final.status:
                # the insert had landed after all
                stored = await self.store.update_message(attrs.evolve(final, seq=stored.seq))
        if self._live:  # after the final row: a follower re-reading finds the end stored
            self._publish("", status)
        return stored


@attrs.define
class RequestTimer:
    """Wall-clock facts about one model request, for its :class:`ApiCall`."""

    started: float = attrs.field(factory=time.perf_counter)
    first_token: float | None = None
    ended: float | None = None

    def token(self) -> None:
        """Note a token's arrival; the first one sets the time to first token."""
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def stop(self) -> None:
        """Note the end of the request (the first call counts)."""
        if self.ended is None:
            self.ended = time.perf_counter()

    def api_call(
        self,
        template: dict[str, Any],
        *,
        status: ApiCallStatus,
        usage: Usage | None,
        error: BaseException | None = None,
    ) -> ApiCall:
        """The request's record: ``template`` fields plus latency, TTFT, tokens/s and error."""
        self.stop()
        assert self.ended is not None
        latency = (self.ended - self.started) * 1000
        ttft = None if self.first_token is None else (self.first_token - self.started) * 1000
        tps = None
        if usage is not None and usage.completion_tokens and self.first_token is not None:
            span = self.ended - self.first_token
            tps = usage.completion_tokens / span if span > 0 else None
        error_fields: dict[str, Any] = {}
        if error is not None:
            error_fields = {
                "error_message": str(error)[:2000] or type(error).__name__,
                "error_code": str(getattr(error, "code", None) or type(error).__name__),
            }
        return ApiCall(
            **template,
            status=status,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            latency_ms=round(latency, 3),
            time_to_first_token_ms=None if ttft is None else round(ttft, 3),
            tokens_per_second=None if tps is None else round(tps, 3),
            **error_fields,
        )
