"""Messages on files: segments appended by exclusive create, read from the end.

The required ``save_messages``, ``read_messages`` and ``rewrite_messages``, and four
derived hooks kept because the files answer them with fewer reads than the core's
defaults (each says why). Write orders that keep a crash harmless:

* ``save_messages``: the id index entries, the streaming markers and the ``calls/``
  entries (pointers, checked when read), then the exclusive create of the segment
  (the record: all of the batch or nothing), then the ``head.json`` hint;
* ``rewrite_messages``: a streaming marker for a message that now streams and new
  ``calls/`` entries, then the activity in ``head.json``, then each segment replaced
  atomically, then the markers of messages no longer streaming deleted;
* ``delete_messages``: the intent in ``head.json`` (durably, with the activity), then
  the commit: the last segment rewritten keeping its seqs (truncated, or emptied with a
  ``cut`` hiding the older segments' messages after the kept seq), then the index
  entries, markers and ``calls/`` entries of the deleted messages, the kept segment
  truncated and the segments between deleted, then ``head.json`` without the intent.
  While an intent is there, readers take the last segment as the truth and writers
  (:meth:`MessageFiles._settle`) finish the deletion before using an index.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from threadline.errors import NotFoundError, StoreError, ValidationError
from threadline.ids import utcnow
from threadline.models import Message
from threadline.queries import MessageRange
from threadline.storekit.records import id_conflict
from threadline.storekit.window import orphaned_tool_results, round_start
from threadline_fsspec import layout
from threadline_fsspec.files import StoreFiles
from threadline_fsspec.records import decode, encode, message_from_dict
from threadline_fsspec.segments import Found, Segment, Suffix, Tail

__all__ = ["MessageFiles"]

_Segments = dict[tuple[str, int], Segment]


class MessageFiles(StoreFiles):
    """The message hooks of :class:`threadline_fsspec.store.FsspecStore`."""

    # -- reading segments ----------------------------------------------------------------

    def _segment(self, sd: str, start: int) -> Segment | None:
        path = layout.segment_file(sd, start)
        data = self.backend.read(path)
        if data is None:
            return None
        return Segment.from_doc(decode(data, path), path)

    def _need_segment(self, sd: str, start: int) -> Segment:
        segment = self._segment(sd, start)
        if segment is None:
            raise StoreError(f"message segment {start} of {sd} is missing; the store is damaged")
        return segment

    def _tail(self, sd: str) -> tuple[Tail, Segment | None]:
        """The last segment's extent, from the ``head.json`` hint plus probing for newer ones.

        Also returns the last segment when it had to be read anyway: while a deletion is
        not finished (``head.json``'s ``cutting``), the segment is the truth.
        """
        head = self._hint(f"{sd}/head.json")
        last: Segment | None = None
        if not _extent(head):  # no hint (or a damaged one): the listing is the truth
            tail, last = self._listed_tail(sd)
        elif isinstance(head.get("cutting"), int):
            last = self._segment(sd, head["start"]) if head["start"] else None
            if last is None:
                tail, last = self._listed_tail(sd)
            tail = Tail.of(last, head["cutting"]) if last is not None else tail
        else:
            deleted = head.get("deleted", 0)
            deleted = deleted if isinstance(deleted, int) else 0
            tail = Tail(head["start"], head["end"], head["systems"], deleted)
        while True:  # segments written after the hint (a crash, or a racing process)
            newer = self._segment(sd, tail.end + 1)
            if newer is None:
                return tail, last
            last = newer
            tail = Tail.of(newer, tail.pending)

    def _listed_tail(self, sd: str) -> tuple[Tail, Segment | None]:
        starts = self._numbers(f"{sd}/messages")
        if not starts:
            return Tail(0, 0, []), None
        last = self._need_segment(sd, starts[-1])
        return Tail.of(last, last.cut), last

    def _read_range(
        self,
        sd: str,
        tail: Tail,
        after: int,
        stop: int,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Message dicts with ``after < seq <= stop``, oldest first; with ``limit`` only the
        oldest (``newest_first``: the newest) ``limit`` of them, reading only their segments."""
        if stop <= after or limit == 0:
            return []
        if limit is not None and not tail.deleted and tail.pending is None:
            # seqs without gaps: the page's seqs are known
            after, stop = (max(after, stop - limit), stop) if newest_first else (
                after, min(stop, after + limit))  # fmt: skip
        span, low = stop - after, after
        if limit is not None and span > limit:  # gaps: the page lies about here
            span, low = limit, (stop - limit if newest_first else after)
        found: list[list[dict[str, Any]]] = []
        taken = 0

        def take(segment: Segment, cut: int | None) -> bool:
            """Keep the segment's messages in range; ``True`` once the page is full."""
            nonlocal taken
            kept = [d for i, d in enumerate(segment.upto(cut)) if after < segment.start + i <= stop]
            found.append(kept)
            taken += len(kept)
            return limit is not None and taken >= limit

        backwards = newest_first or limit is None
        if tail.pending is not None or tail.end - low <= 4 * span + 64:  # near the end: walk back
            start, cut = tail.start, None
            while start:
                segment = self._need_segment(sd, start)
                full = take(segment, cut) and newest_first
                if full or segment.start <= after + 1:
                    break
                start = segment.prev
                cut = segment.cut if cut is None or segment.cut is None else min(cut, segment.cut)
            backwards = True
        else:  # far from the end: find the first segment through the listing
            starts = [s for s in self._numbers(f"{sd}/messages") if s <= stop]
            first = max((i for i, s in enumerate(starts) if s <= after + 1), default=0)
            for s in reversed(starts[first:]) if backwards else starts[first:]:
                if take(self._need_segment(sd, s), None) and limit is not None:
                    break
        if backwards:
            found.reverse()
        messages = [d for kept in found for d in kept]
        if limit is not None:
            messages = messages[-limit:] if newest_first else messages[:limit]
        return messages

    def read_messages(self, tenant_id: str, session_id: str, query: MessageRange) -> list[Message]:
        after_seq, before_seq, limit = query.after_seq, query.before_seq, query.limit
        newest_first, role = query.newest_first, query.role
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return []
        tail, _ = self._tail(sd)
        stop = tail.end if before_seq is None else min(tail.end, before_seq - 1)
        if role == "system":  # the last segment carries the seq of every system message
            wanted = [(seq, start) for seq, start in tail.systems if after_seq < seq <= stop]
            wanted = wanted[::-1] if newest_first else wanted
            segments: dict[int, Segment] = {}
            found = []
            for seq, start in wanted[:limit]:
                segment = segments.get(start) or self._need_segment(sd, start)
                segments[start] = segment
                found.append(message_from_dict(segment.messages[seq - start]))
            return found
        page = limit if role is None else None  # only the page asked for is read
        found = [
            message_from_dict(d)
            for d in self._read_range(sd, tail, after_seq, stop, page, newest_first)
        ]
        if role is not None:
            found = [m for m in found if m.role == role]
        if newest_first:
            found.reverse()
        return found[:limit]

    # Override: the count is the last seq less the seqs deleted, known from head.json and a
    # probe (no segment read).
    def count_messages(self, tenant_id: str, session_id: str) -> int:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return 0
        tail = self._tail(sd)[0]
        return tail.end - tail.deleted

    # Override: reads only the window's segments (rounds counted while reading back, the
    # calls/ index says whether an orphaned result's call lies further back at all, system
    # messages found by the seqs the last segment carries); the default reads pages of 64.
    def load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        if last_rounds is None:
            return self.read_messages(tenant_id, session_id, MessageRange())
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return []
        tail, last = self._tail(sd)
        if tail.end == tail.deleted:
            return []
        # window.window_start, computed on a suffix read backwards from the end: enough
        # segments for the rounds, then (rarely) back to the nearest earlier call of
        # each tool result whose call lies before the window.
        suffix = Suffix(lambda start: self._need_segment(sd, start), tail, last)
        start = tail.end + 1  # the seq the window starts at
        if last_rounds > 0:
            users = 0
            while users < last_rounds and (chunk := suffix.extend()) is not None:
                users += sum(1 for m in chunk if m.role == "user")
            index = round_start(suffix.messages, last_rounds)
            start = suffix.seqs[index] if index < len(suffix.seqs) else start
        while True:
            wanted = set()
            for call_id in orphaned_tool_results(suffix.since(start)):
                first = self._first_call(sd, call_id)
                if first is not None and first < start:
                    wanted.add(call_id)
            earliest = None
            for message in suffix.backwards(start) if wanted else ():
                found = {c.id for c in message.tool_calls} & wanted
                if found:
                    earliest = message
                    wanted -= found
                    if not wanted:
                        break
            if earliest is None:
                break
            start = earliest.seq or 0
            for message in itertools.chain([earliest], suffix.backwards(start)):
                start = message.seq or 0  # back to its round's start
                if message.role == "user":
                    break
        window = suffix.since(start)
        # System messages before the window, wherever they are (their seqs ride along).
        head: list[Message] = []
        for seq, segment_start in tail.systems:
            if seq >= start:
                break
            head.append(suffix.system(seq, segment_start))
        return head + window

    # -- indexes -------------------------------------------------------------------------

    def _find_message(self, message_id: str, loaded: _Segments | None = None) -> Found | None:
        """Where the id index says a message is, if its segment agrees (``loaded``: the
        segments read before in this operation, changes included)."""
        located = self._entry("messages", message_id)
        if located is None:
            return None
        sd, entry = located
        try:
            seq, start = int(entry["seq"]), int(entry["segment"])
        except (KeyError, TypeError, ValueError):
            return None
        loaded = {} if loaded is None else loaded
        segment = loaded.get((sd, start)) or self._segment(sd, start)
        index = seq - start
        if segment is None or not 0 <= index < len(segment.messages):
            return None
        if segment.messages[index].get("id") != message_id:
            return None
        loaded[sd, start] = segment
        return Found(sd, segment, index)

    def _call_file(self, sd: str, call_id: str) -> str:
        return f"{sd}/calls/c-{layout.encode_name(call_id, 'tool call id', allow_empty=True)}.json"

    def _first_call(self, sd: str, call_id: str, *, exact: bool = False) -> int | None:
        """The seq of the first message that called ``call_id``; ``None``: never called.

        The entry is written before the message, so a missing one means no call. One the
        segment does not confirm (a crash, an update that changed the calls) could be
        anywhere: 1 then, unless ``exact``, which gives ``None`` for it.
        """
        entry = self._hint(self._call_file(sd, call_id))
        if entry is None:
            return None
        try:
            seq, start = int(entry["seq"]), int(entry["segment"])
        except (KeyError, TypeError, ValueError):
            return None if exact else 1
        segment = self._segment(sd, start)
        index = seq - start
        if segment is not None and 0 <= index < len(segment.messages):
            calls = segment.messages[index].get("tool_calls") or ()
            if any(c.get("id") == call_id for c in calls):
                return seq
        return None if exact else 1

    def _index_calls(self, sd: str, start: int, dicts: Sequence[dict[str, Any]]) -> None:
        """Record the first message that calls each tool-call id (kept: an earlier one)."""
        seen: set[str] = set()
        for d in dicts:
            for call in d["tool_calls"]:
                call_id = call["id"]
                if call_id in seen:
                    continue
                first = self._first_call(sd, call_id, exact=True)
                if first is not None and first < d["seq"]:
                    continue
                seen.add(call_id)
                entry = encode({"seq": d["seq"], "segment": start}, "call index")
                self.backend.write(self._call_file(sd, call_id), entry)

    def _marker(self, sd: str, seq: int, message_id: str) -> str:
        return f"{sd}/streaming/{layout.numbered(seq)[:-5]}-{message_id}.json"

    # -- writing -------------------------------------------------------------------------

    def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        if not messages:
            return []
        first = messages[0]
        tenant_id, session_id = first.tenant_id, first.session_id
        sd = self._require_session(tenant_id, session_id)
        if len({m.id for m in messages}) != len(messages):
            raise ValidationError("save_messages got the same message id twice")
        with self._locked(sd, f"session {session_id} not found for this tenant"):
            self._require_session(tenant_id, session_id)
            self._settle(sd)
            stored: dict[str, Message] = {}
            for m in messages:  # check everything before writing anything
                found = self._find_message(m.id)
                if found is None:
                    continue
                data = found.data
                if data["session_id"] != m.session_id or data["tenant_id"] != m.tenant_id:
                    raise id_conflict("message", m.id)
                stored[m.id] = message_from_dict(data)
            new = [m for m in messages if m.id not in stored]
            dicts = [m.to_dict() for m in new]
            while True:
                tail, _ = self._tail(sd)
                segment = Segment(tail.end + 1, tail.start, list(tail.systems), dicts,
                                  deleted=tail.deleted)  # fmt: skip
                for offset, (m, d) in enumerate(zip(new, dicts)):
                    d["seq"] = segment.start + offset
                    if m.role == "system":
                        segment.systems.append([d["seq"], segment.start])
                if not new:
                    break
                payload = segment.to_bytes()  # refuses what is not JSON before any write
                markers = []
                for d in dicts:
                    index = {"tenant_id": tenant_id, "session_id": session_id,
                             "seq": d["seq"], "segment": segment.start}  # fmt: skip
                    self.backend.write(layout.id_file("messages", d["id"]), encode(index, "index"))
                    if d["status"] == "streaming":
                        marker = self._marker(sd, d["seq"], d["id"])
                        self.backend.write(marker, encode({"segment": segment.start}, "marker"))
                        markers.append(marker)
                self._index_calls(sd, segment.start, dicts)
                if self.backend.create(layout.segment_file(sd, segment.start), payload):
                    written = Segment.from_doc(decode(payload, "segment"), "segment")
                    stored.update((d["id"], message_from_dict(d)) for d in written.messages)
                    break
                for marker in markers:  # another writer took these seqs: try the next ones
                    self.backend.delete(marker)
            self._write_head(sd, segment if new else tail)
        return [stored[m.id] for m in messages]

    def rewrite_messages(
        self, tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
    ) -> int:
        return len(
            self._rewrite(
                tenant_id,
                messages,
                keep_user=False,
                activity=activity,
                only_streaming=only_streaming,
            )  # fmt: skip
        )

    # Override: a streaming reply's every flush; one message found through the id index
    # (the default reads a page of the session before and after the rewrite).
    def update_message(self, message: Message) -> Message:
        [stored] = self._rewrite(message.tenant_id, [message], keep_user=True)
        return stored

    def _rewrite(
        self,
        tenant_id: str,
        messages: Sequence[Message],
        *,
        keep_user: bool,
        activity: bool = True,
        only_streaming: bool = False,
    ) -> list[Message]:
        """Replace stored messages' fields (``user_id`` too unless ``keep_user``), all found
        first under the locks of their sessions; the stored messages, in order. With
        ``only_streaming`` a message no longer streaming is left (and not returned);
        without ``activity`` the sessions' ``updated_at`` stays."""
        folders = set()
        for m in messages:
            located = self._entry("messages", m.id)
            if located is None or located[1].get("tenant_id") != tenant_id:
                raise NotFoundError(f"message {m.id} not found for this tenant")
            folders.add(located[0])
        with ExitStack() as stack:
            for sd in sorted(folders):
                stack.enter_context(self._locked(sd, "a session was deleted meanwhile"))
                self._settle(sd)
            loaded: _Segments = {}
            changed: list[Found] = []
            for m in messages:  # again, under the locks
                found = self._find_message(m.id, loaded)
                if found is None or found.data["tenant_id"] != tenant_id:
                    raise NotFoundError(f"message {m.id} not found for this tenant")
                if only_streaming and found.data["status"] != "streaming":
                    continue  # finished meanwhile: its ending stays
                found.segment.messages[found.index] = {
                    **found.data,
                    "content": m.content,
                    "status": m.status,
                    "name": m.name,
                    "metadata": m.metadata,
                    "tool_calls": [c.to_dict() for c in m.tool_calls],
                    "user_id": found.data["user_id"] if keep_user else m.user_id,
                }
                changed.append(found)
            payloads = {key: segment.to_bytes() for key, segment in loaded.items()}
            for f in changed:
                if f.data["status"] == "streaming":
                    marker = self._marker(f.session_dir, f.data["seq"], f.data["id"])
                    self.backend.write(marker, encode({"segment": f.segment.start}, "marker"))
                self._index_calls(f.session_dir, f.segment.start, [f.data])
            for sd in folders if activity else ():
                self._touch(sd)
            for (sd, start), payload in payloads.items():
                self.backend.write(layout.segment_file(sd, start), payload)
            for f in changed:
                if f.data["status"] != "streaming":
                    self.backend.delete(self._marker(f.session_dir, f.data["seq"], f.data["id"]))
        written = {key: decode(payload, "segment")["messages"] for key, payload in payloads.items()}
        return [
            message_from_dict(written[f.session_dir, f.segment.start][f.index]) for f in changed
        ]

    # Override: only the messages with a streaming marker are read (the default reads the
    # whole session on every open), and what a crashed writer left half-written is swept.
    def interrupt_streaming(self, tenant_id: str, session_id: str) -> int:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None or not self.backend.listdir(f"{sd}/streaming"):
            return 0
        try:
            with self._locked(sd, "gone"):
                if self._session_doc(sd) is None:
                    return 0
                self.backend.sweep_temporary(sd)
                return self._interrupt_locked(sd)
        except NotFoundError:
            return 0

    def _interrupt_locked(self, sd: str) -> int:
        self._settle(sd)
        changed = 0
        names = self.backend.listdir(f"{sd}/streaming")
        dirty: dict[int, Segment] = {}
        for name in names:
            seq_text, _, rest = name.partition("-")
            doc = self._hint(f"{sd}/streaming/{name}")
            if not seq_text.isdigit() or not isinstance(doc, dict):
                continue
            start = int(doc.get("segment", 0))
            segment = dirty.get(start) or self._segment(sd, start)
            index = int(seq_text) - start
            if segment is None or not 0 <= index < len(segment.messages):
                continue
            data = segment.messages[index]
            if data["id"] == rest[:-5] and data["status"] == "streaming":
                segment.messages[index] = {**data, "status": "interrupted"}
                dirty[start] = segment
                changed += 1
        if dirty:
            self._touch(sd)
        for start, segment in dirty.items():
            self.backend.write(layout.segment_file(sd, start), segment.to_bytes())
        for name in names:
            self.backend.delete(f"{sd}/streaming/{name}")
        return changed

    # -- deleting ------------------------------------------------------------------------

    def _write_head(
        self,
        sd: str,
        last: Segment | Tail,
        *,
        cutting: int | None = None,
        updated_at: str | None = None,
    ) -> None:
        """The ``head.json`` hint: the last segment's extent and the activity (now); with
        ``cutting``, the intent of a deletion, written durably before its commit."""
        head: dict[str, Any] = {"start": last.start, "end": last.end, "systems": last.systems,
                                "updated_at": updated_at or utcnow().isoformat()}  # fmt: skip
        if last.deleted:
            head["deleted"] = last.deleted
        if cutting is not None:
            head["cutting"] = cutting
        self.backend.write(f"{sd}/head.json", encode(head, "head"), durable=cutting is not None)

    def delete_messages(self, tenant_id: str, session_id: str, after_seq: int) -> int:
        sd = layout.session_dir(tenant_id, session_id)
        if self._session_doc(sd) is None:
            return 0
        try:
            with self._locked(sd, "gone"):
                if self._session(tenant_id, session_id) is None:
                    return 0
                self._settle(sd)
                tail, last = self._tail(sd)
                if tail.end <= after_seq:
                    return 0
                last, keep, gone = self._cut_plan(sd, tail, last, after_seq)
                if not gone:
                    return 0
                self._write_head(sd, tail, cutting=after_seq)  # the intent, and the activity
                last, removed = self._cut(sd, last, keep, gone, after_seq)
                self._clean_cut(sd, last, keep, after_seq, removed)
                self._write_head(sd, last)
                return gone
        except NotFoundError:
            return 0

    def _settle(self, sd: str) -> None:
        """Finish a deletion a crash cut short (its intent is in ``head.json``), before a
        write that uses the indexes; one read of ``head.json`` when there is none."""
        head = self._hint(f"{sd}/head.json")
        if _extent(head) and "cutting" not in head:
            return
        tail, last = self._tail(sd)
        if tail.pending is None:
            return
        last, keep, gone = self._cut_plan(sd, tail, last, tail.pending)
        removed: list[dict[str, Any]] = []
        if gone:  # the crash came before the commit
            last, removed = self._cut(sd, last, keep, gone, tail.pending)
        self._clean_cut(sd, last, keep, tail.pending, removed)
        touched = head.get("updated_at") if isinstance(head, dict) else None
        self._write_head(sd, last, updated_at=touched if isinstance(touched, str) else None)

    def _cut_plan(
        self, sd: str, tail: Tail, last: Segment | None, after: int
    ) -> tuple[Segment, Segment | None, int]:
        """The last segment, the newest segment that keeps messages (``None``: none does)
        and how many messages with a seq above ``after`` can be read now."""
        if last is None or last.start != tail.start:
            last = self._need_segment(sd, tail.start)
        segment, cut, gone = last, None, 0
        while True:
            visible = segment.upto(cut)
            gone += max(0, segment.start + len(visible) - 1 - max(after, segment.start - 1))
            if segment.start <= after:
                return last, segment, gone
            if not segment.prev:
                return last, None, gone
            if segment.cut is not None:
                cut = segment.cut if cut is None else min(cut, segment.cut)
            segment = self._need_segment(sd, segment.prev)

    def _cut(
        self, sd: str, last: Segment, keep: Segment | None, gone: int, after: int
    ) -> tuple[Segment, list[dict[str, Any]]]:
        """The commit: the last segment rewritten, keeping its seqs (never reused), its
        messages up to ``after`` (when it keeps some) or a cut hiding the older segments'
        messages above it. Returns the new last segment and the messages it lost."""
        systems = [pair for pair in last.systems if pair[0] <= after]
        deleted = last.deleted + gone
        if keep is last:
            kept = after - last.start + 1
            new = Segment(last.start, last.prev, systems, last.messages[:kept], claimed=last.end,
                          deleted=deleted, cut=last.cut)  # fmt: skip
            removed = last.messages[kept:]
        else:
            new = Segment(last.start, keep.start if keep else 0, systems, [], claimed=last.end,
                          deleted=deleted, cut=after)  # fmt: skip
            removed = last.messages
        self.backend.write(layout.segment_file(sd, last.start), new.to_bytes())
        return new, removed

    def _clean_cut(
        self,
        sd: str,
        last: Segment,
        keep: Segment | None,
        after: int,
        removed: list[dict[str, Any]],
    ) -> None:
        """After the commit: what points at every message that went (index entries,
        markers, ``calls/`` entries), then the kept segment truncated and the segments
        between it and the last one deleted (idempotent: the next writer finishes a crash)."""
        removed = list(removed)
        floor = keep.start if keep is not None else 0
        doomed = [s for s in self._numbers(f"{sd}/messages") if floor < s < last.start]
        kept = after - floor + 1
        truncate = keep is not None and keep is not last and len(keep.messages) > kept
        if keep is not None and truncate:
            removed += keep.messages[kept:]
        for start in doomed:
            segment = self._segment(sd, start)
            removed += segment.messages if segment is not None else ()
        for d in removed:
            self._forget(sd, d, after)
        if keep is not None and truncate:
            keep.systems = [pair for pair in keep.systems if pair[0] <= after]
            keep.messages = keep.messages[:kept]
            self.backend.write(layout.segment_file(sd, keep.start), keep.to_bytes())
        for start in doomed:
            self.backend.delete(layout.segment_file(sd, start))

    def _forget(self, sd: str, d: dict[str, Any], after: int) -> None:
        """Drop what points at a deleted message (entries a later message made stay)."""
        path = layout.id_file("messages", d["id"])
        entry = self._hint(path)
        if (
            isinstance(entry, dict)
            and entry.get("tenant_id") == d["tenant_id"]
            and entry.get("session_id") == d["session_id"]
            and entry.get("seq") == d["seq"]
        ):
            self.backend.delete(path)
        if d["status"] == "streaming":
            self.backend.delete(self._marker(sd, d["seq"], d["id"]))
        for call in d["tool_calls"]:
            path = self._call_file(sd, call["id"])
            entry = self._hint(path)
            seq = entry.get("seq") if isinstance(entry, dict) else None
            if isinstance(seq, int) and seq > after:
                self.backend.delete(path)


def _extent(head: Any) -> bool:
    """Whether ``head.json`` holds the last segment's extent (else: damaged or missing)."""
    return (
        isinstance(head, dict)
        and isinstance(head.get("start"), int)
        and isinstance(head.get("end"), int)
        and isinstance(head.get("systems"), list)
    )
