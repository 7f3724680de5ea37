"""An incremental Server-Sent Events parser, fed raw bytes as they arrive from the network.

It follows the WHATWG ``text/event-stream`` rules: UTF-8 decoded incrementally (a
character split across two reads is kept whole), lines ended by CRLF, LF or CR (a CR
at the end of one chunk and the LF that starts the next count as one line end),
comment lines starting with ``:`` ignored, ``data:`` lines of one event joined with
``\\n``, ``event:``, ``id:`` and ``retry:`` fields, and a blank line dispatching the
event. It knows nothing of OpenAI: :mod:`threadline_openai.chunks` reads the events.
"""

from __future__ import annotations

import codecs
import re

import attrs

from threadline.errors import StreamError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "SSEEvent"]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
"""Largest event or line, in characters, accepted before the stream is called malformed."""

_LINE_END = re.compile(r"\r\n|\r|\n")


@attrs.frozen
class SSEEvent:
    """One dispatched event: its type, its data (lines joined with ``\\n``), last id, retry."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns byte chunks into :class:`SSEEvent` objects; one decoder per response stream.

    Call :meth:`feed` with each chunk read and :meth:`close` when the body ends; both
    return the events completed so far, in order. The result does not depend on how the
    bytes were split into chunks.
    """

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_event_size
        self._started = False  # a leading byte order mark is dropped once
        self._skip_lf = False  # the previous text ended with CR: a leading LF belongs to it
        self._partial: list[str] = []  # text of the current, unterminated line
        self._partial_len = 0
        self._data: list[str] = []
        self._data_len = 0
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` seen, as a client would send back in ``Last-Event-ID``."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume one chunk of the body; return the events it completed."""
        return self._feed_text(self._utf8.decode(chunk))

    def close(self) -> list[SSEEvent]:
        """End of body: finish a last unterminated line and dispatch a pending event.

        The specification discards an event not followed by a blank line; servers that
        end with ``data: [DONE]`` and no blank line are common, so it is dispatched.
        """
        events = self._feed_text(self._utf8.decode(b"", final=True))
        if self._partial:
            line = "".join(self._partial)
            self._partial.clear()
            self._partial_len = 0
            self._line(line, events)
        self._dispatch(events)
        return events

    # -- internals ------------------------------------------------------------------------

    def _feed_text(self, text: str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if not text:
            return events
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        pos = 0
        for match in _LINE_END.finditer(text):
            piece = text[pos : match.start()]
            if self._partial:
                self._partial.append(piece)
                line = "".join(self._partial)
                self._partial.clear()
                self._partial_len = 0
            else:
                line = piece
            pos = match.end()
            if match.group() == "\r" and pos == len(text):
                self._skip_lf = True
            self._line(line, events)
        rest = text[pos:]
        if rest:
            self._partial.append(rest)
            self._partial_len += len(rest)
            if self._partial_len > self._max:
                raise StreamError(
                    f"malformed event stream: a line longer than {self._max} characters"
                )
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return  # a comment, e.g. a keep-alive
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_len += len(value) + 1
            if self._data_len > self._max:
                raise StreamError(
                    f"malformed event stream: an event larger than {self._max} characters"
                )
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # any other field name is ignored, as the specification says

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(
                SSEEvent(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._data.clear()
        self._data_len = 0
        self._event = ""
