"""Server-Sent Events of one response body: httpx-sse parses them, this module bounds them.

``httpx_sse.EventSource`` follows the WHATWG ``text/event-stream`` rules (CRLF, LF and CR
line ends, one split across two reads included; ``:`` comments; ``data:`` lines joined
with ``\\n``; ``event:``, ``id:``, ``retry:``). It keeps an unterminated line without
limit: measured, a 64 MiB body with no line end held 192 MiB at its peak and raised
nothing. So it reads the body through :class:`EventStream`, which counts the bytes it
hands over and raises :class:`~threadline.errors.StreamError` once a line, or the bytes
since the last event, pass ``max_event_size``: the parser then holds at most that much
plus one network read. The wrapper also decodes UTF-8 itself (an event stream is UTF-8
whatever the header says; a leading byte order mark dropped), and ends the body with a
blank line, so a last event with none after it (``data: [DONE]``, common) is dispatched.
Measured on 20,000 completion chunks, this costs about what the hand-written parser it
replaced did: 6.9 against 6.3 µs an event when each read holds one event, 1.5 against
3.3 µs when reads are 64 KiB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import httpx
from httpx_sse import EventSource, ServerSentEvent

from threadline.errors import StreamError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "EventStream", "ServerSentEvent"]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
"""Largest line, and most bytes between two events, before the stream is called malformed."""

_HEADERS = {"content-type": "text/event-stream"}


class EventStream:
    """The events of one ``text/event-stream`` body, read as they arrive.

    Iterate :meth:`events`; :attr:`ended` is true once the body has ended, so an event seen
    then was completed by the end of the body rather than by a blank line.
    """

    def __init__(
        self, body: AsyncIterator[bytes], *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    ) -> None:
        self._body = body
        self._max = max_event_size
        self._line = 0  # bytes since the last line end
        self._unread = 0  # bytes handed to the parser since it gave the last event
        self.ended = False

    async def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        """The events in order; an event with neither data nor a type carries nothing: skipped."""
        source = EventSource(
            httpx.Response(
                200, headers=_HEADERS, content=self._bounded(), default_encoding="utf-8-sig"
            )
        )
        async with aclosing(source.aiter_sse()) as events:
            async for event in events:
                self._unread = 0
                if event.data or event.event != "message":
                    yield event

    async def drain(self, seconds: float, limit: int) -> None:
        """Read and drop what is left of the body, at most ``limit`` bytes for ``seconds``.

        Done after ``[DONE]`` so the connection can go back to the pool; a server that keeps
        the body open only costs its connection.
        """

        async def read_rest() -> None:
            size = 0
            async for data in self._body:
                size += len(data)
                if size > limit:
                    return

        try:
            await asyncio.wait_for(read_rest(), seconds)
        except (asyncio.TimeoutError, httpx.HTTPError):
            pass  # the reply is complete; the connection is closed instead of reused

    async def _bounded(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            self._line = self._line + len(chunk) if end < 0 else len(chunk) - end - 1
            self._unread += len(chunk)
            if self._line > self._max:
                raise StreamError(
                    f"malformed event stream: a line longer than {self._max} bytes",
                    code="malformed_stream",
                )
            if self._unread > self._max:
                raise StreamError(
                    f"malformed event stream: an event larger than {self._max} bytes",
                    code="malformed_stream",
                )
            yield chunk
        self.ended = True
        yield b"\n\n"
