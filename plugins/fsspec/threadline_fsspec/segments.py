"""Message segments: the files a session's messages live in, and reading them backwards.

A segment is one file of consecutive messages (one ``save_messages`` batch), named by
the seq of its first message; it names the previous segment and carries the seqs of
every system message so far, so the window of a long session reads only its own
segments (see :mod:`threadline_fsspec.layout`).

``delete_messages`` leaves gaps: a segment may claim seqs past its last message
(``end``, so seqs are never reused), counts the seqs deleted up to it (``deleted``) and
may carry a ``cut``: messages of older segments with a larger seq are deleted (the
deletion's commit, until its clean-up truncates them; see
:mod:`threadline_fsspec.messages`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from threadline.errors import StoreError
from threadline.models import Message
from threadline_fsspec.records import encode, message_from_dict

__all__ = ["Found", "Segment", "Suffix", "Tail"]


class Segment:
    """One messages file: consecutive messages from seq ``start``."""

    __slots__ = ("claimed", "cut", "deleted", "messages", "prev", "start", "systems")

    def __init__(
        self,
        start: int,
        prev: int,
        systems: list[list[int]],
        messages: list[dict[str, Any]],
        *,
        claimed: int = 0,
        deleted: int = 0,
        cut: int | None = None,
    ) -> None:
        self.start = start
        self.prev = prev  # start of the previous segment (0: this is the first)
        self.systems = systems  # [seq, segment start] of every system message up to here
        self.messages = messages
        self.claimed = claimed  # last seq this segment took (kept when its messages go)
        self.deleted = deleted  # seqs deleted up to this segment's end
        self.cut = cut  # older segments' messages with a larger seq are deleted

    @property
    def end(self) -> int:
        """The last seq this segment took (its last message's, or more after a deletion)."""
        return max(self.start + len(self.messages) - 1, self.claimed)

    def upto(self, seq: int | None) -> list[dict[str, Any]]:
        """The messages with a seq up to ``seq`` (all for ``None``)."""
        return self.messages if seq is None else self.messages[: max(0, seq - self.start + 1)]

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"start": self.start, "prev": self.prev,
                               "systems": self.systems, "messages": self.messages}  # fmt: skip
        if self.claimed > self.start + len(self.messages) - 1:
            doc["end"] = self.claimed
        if self.deleted:
            doc["deleted"] = self.deleted
        if self.cut is not None:
            doc["cut"] = self.cut
        return encode(doc, "message")

    @classmethod
    def from_doc(cls, doc: Any, where: str) -> Segment:
        try:
            return cls(
                doc["start"],
                doc["prev"],
                doc["systems"],
                doc["messages"],
                claimed=int(doc.get("end", 0)),
                deleted=int(doc.get("deleted", 0)),
                cut=None if doc.get("cut") is None else int(doc["cut"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise StoreError(f"{where} is not a message segment; the store is damaged") from None


@attrs.frozen
class Tail:
    """The extent of a session's last segment."""

    start: int  # first seq of the last segment (0: no messages)
    end: int  # last seq ever taken
    systems: list[list[int]]
    deleted: int = 0  # seqs deleted so far: the session holds end - deleted messages
    pending: int | None = None  # a deletion after this seq is not finished (see messages)

    @classmethod
    def of(cls, segment: Segment, pending: int | None = None) -> Tail:
        return cls(segment.start, segment.end, segment.systems, segment.deleted, pending)


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
    """The last messages of a session, read segment by segment from the end (seqs may
    have gaps; a segment's ``cut`` hides the larger seqs of older segments)."""

    def __init__(self, need: Callable[[int], Segment], tail: Tail, last: Segment | None) -> None:
        self.need, self.last = need, last  # need(start): the segment from seq start
        self.messages: list[Message] = []
        self.seqs: list[int] = []  # the messages' seqs, ascending
        self.prev = tail.start  # start of the next segment to read (0: none left)
        self.cut: int | None = None

    def extend(self) -> list[Message] | None:
        """Read one more segment backwards; ``None`` at the start of the session."""
        if not self.prev:
            return None
        if self.last is not None and self.last.start == self.prev:
            segment = self.last
        else:
            segment = self.need(self.prev)
        chunk = [message_from_dict(d) for d in segment.upto(self.cut)]
        self.messages[:0] = chunk
        self.seqs[:0] = [segment.start + i for i in range(len(chunk))]
        self.prev = segment.prev
        if segment.cut is not None:
            self.cut = segment.cut if self.cut is None else min(self.cut, segment.cut)
        return chunk

    def since(self, seq: int) -> list[Message]:
        """The loaded messages with a seq from ``seq`` on."""
        return self.messages[bisect.bisect_left(self.seqs, seq) :]

    def at(self, seq: int) -> Message:
        """The loaded message with ``seq``."""
        return self.messages[bisect.bisect_left(self.seqs, seq)]

    def backwards(self, seq: int) -> Iterator[Message]:
        """The messages before ``seq``, newest first, read back as far as the caller goes."""
        while True:
            index = bisect.bisect_left(self.seqs, seq)
            if index:
                seq = self.seqs[index - 1]
                yield self.messages[index - 1]
            elif self.extend() is None:
                return

    def system(self, seq: int, segment_start: int) -> Message:
        """A system message, from the suffix or from its own segment."""
        if self.seqs and seq >= self.seqs[0]:
            return self.at(seq)
        segment = self.need(segment_start)
        return message_from_dict(segment.messages[seq - segment.start])
