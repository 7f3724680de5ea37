"""Message segments: the files a session's messages live in, and reading them backwards.

A segment is one file of consecutive messages (one ``save_messages`` batch), named by
the seq of its first message; it names the previous segment and carries the seqs of
every system message so far, so the window of a long session reads only its own
segments (see :mod:`threadline_fsspec.layout`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from threadline.errors import StoreError
from threadline.models import Message
from threadline_fsspec.records import encode, message_from_dict

__all__ = ["Found", "Segment", "Suffix", "Tail"]


class Segment:
    """One messages file: consecutive messages from seq ``start``."""

    __slots__ = ("messages", "prev", "start", "systems")

    def __init__(
        self, start: int, prev: int, systems: list[list[int]], messages: list[dict[str, Any]]
    ) -> None:
        self.start = start
        self.prev = prev  # start of the previous segment (0: this is the first)
        self.systems = systems  # [seq, segment start] of every system message up to here
        self.messages = messages

    @property
    def end(self) -> int:
        return self.start + len(self.messages) - 1

    def to_bytes(self) -> bytes:
        doc = {"start": self.start, "prev": self.prev, "systems": self.systems,
               "messages": self.messages}  # fmt: skip
        return encode(doc, "message")

    @classmethod
    def from_doc(cls, doc: Any, where: str) -> Segment:
        try:
            return cls(doc["start"], doc["prev"], doc["systems"], doc["messages"])
        except (KeyError, TypeError):
            raise StoreError(f"{where} is not a message segment; the store is damaged") from None


@attrs.frozen
class Tail:
    """The extent of a session's last segment."""

    start: int  # first seq of the last segment (0: no messages)
    end: int  # last seq
    systems: list[list[int]]


@attrs.frozen
class Found:
    """A message located through the id index and verified against its segment."""

    session_dir: str
    segment: Segment
    index: int

    @property
    def data(self) -> dict[str, Any]:
        return self.segment.messages[self.index]


class Suffix:
    """The last messages of a session, read segment by segment from the end."""

    def __init__(self, need: Callable[[int], Segment], tail: Tail, last: Segment | None) -> None:
        self.need, self.last = need, last  # need(start): the segment from seq start
        self.messages: list[Message] = []
        self.first = tail.end + 1  # seq of messages[0]
        self.prev = tail.start  # start of the next segment to read (0: none left)

    def extend(self) -> list[Message] | None:
        """Read one more segment backwards; ``None`` at the start of the session."""
        if not self.prev:
            return None
        if self.last is not None and self.last.start == self.prev:
            segment = self.last
        else:
            segment = self.need(self.prev)
        chunk = [message_from_dict(d) for d in segment.messages]
        self.messages[:0] = chunk
        self.first, self.prev = segment.start, segment.prev
        return chunk

    def reach(self, seq: int) -> None:
        """Read backwards until ``seq`` is loaded."""
        while self.first > seq and self.extend() is not None:
            pass

    def at(self, seq: int) -> Message:
        return self.messages[seq - self.first]

    def system(self, seq: int, segment_start: int) -> Message:
        """A system message, from the suffix or from its own segment."""
        if seq >= self.first:
            return self.at(seq)
        segment = self.need(segment_start)
        return message_from_dict(segment.messages[seq - segment.start])
