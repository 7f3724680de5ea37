"""Incremental checkpoint histories: the one record format every store can use.

A :class:`~threadline.models.Checkpoint` logically holds its run's whole message
history. Stored that way, a run of *S* steps writes *O(S²)* bytes: the weakness the
design forbids. A store using this module keeps one **record** per checkpoint
instead, either

* a **snapshot**: every message of the history; or
* a **delta** on the checkpoint's parent: how many leading messages of the parent's
  (logical) history to keep, then the messages that follow them.

Format (version 1)
------------------

A record is one JSON object, versioned, so that older records stay readable when
the format moves on::

    {"v": 1, "kind": "snapshot", "messages": [ITEM, ...]}
    {"v": 1, "kind": "delta", "keep": 398, "messages": [ITEM, ...]}

The logical history of a delta is the first ``keep`` messages of its parent's
logical history followed by its own ``messages``. Decoding a record of a ``v``
newer than :data:`FORMAT_VERSION` raises :class:`~threadline.errors.StoreError`
asking for an upgrade, never a silently wrong history.

An ``ITEM`` is one message, compact because the messages are most of what is
stored (about 95 bytes beside the content, most of it the message id)::

    {"id": "0195...", "role": "user", "content": "...", "at": 1737000000000000, ...}

* ``at`` is ``created_at`` as integer microseconds since the Unix epoch (UTC): exact.
* ``content`` is left out when empty; ``status`` when ``"complete"``; ``seq``,
  ``tool_call_id`` and ``name`` when ``None``; ``metadata`` when empty;
  ``tool_calls`` (``[[id, name, arguments], ...]``) when there are none.
* ``session_id`` and ``tenant_id`` are left out when they are the checkpoint's own.
* ``user_id`` and ``agent_id`` are left out when they equal those of the message
  before it in the history (``None`` before the first message); a change is
  written, ``null`` included. Every message a graph run appends carries the same
  user and agent, so after the first message they cost nothing.

Neither rule depends on anything but the logical history itself: a kept message has
the same position, and the same predecessor, in every checkpoint that keeps it.

When a record is a snapshot
---------------------------

:func:`encode_history` writes a snapshot when the checkpoint has no parent (a run's
first checkpoint, or a fresh run after a tombstone), when its history shares no
leading message with the parent's (``set_execution_point`` with a new history), and
when the parent is already ``SNAPSHOT_EVERY - 1`` links away from its snapshot. So
**a chain (a snapshot and the deltas on it) never holds more than**
:data:`SNAPSHOT_EVERY` **records**, and restoring any checkpoint reads at most that
many. Otherwise it writes a delta with the longest common prefix as ``keep``: an
ordinary step stores only the new messages, a rollback copy (same history as its
parent) stores none, and a history cut short (compressed, or rolled back by hand)
stores only what differs. Parallel checkpoints may share a parent: each is a delta
on it.

Choosing ``SNAPSHOT_EVERY`` (*N*)
---------------------------------

For a run of *S* steps adding *d* bytes each, deltas cost *S·d* and the snapshots
about *S²·d / (2N)*: total stored bytes grow like *S·d·(1 + S/(2N))*. A restore
reads at most *N* records, but the bytes it decodes are the history's whatever *N*
is (the snapshot's messages plus the deltas'): a longer chain adds one small row
per link, not more data. So *N* trades write amplification against the number of
rows (or files) a restore touches. Measured on SQLite with W5 (200 steps, each
adding two 400-byte messages; ``benchmarks/bench_checkpoints.py``), restoring step
200's 400 messages on a freshly opened store:

======  ======================  =====================  ==================
 *N*     file growth / text      history records only   restore p50
======  ======================  =====================  ==================
  16     9.7x                    9.1x                   3.3 ms (8 rows)
  32     6.1x                    5.5x                   3.4 ms (8 rows)
  64     4.3x                    3.7x                   3.2 ms (8 rows)
 128     2.7x                    2.1x                   3.3 ms (72 rows)
 256     1.9x                    1.3x                   3.8 ms (200 rows)
======  ======================  =====================  ==================

*N* = 128 is the smallest power of two that keeps W5 under 3x the message text;
most of a restore's time is decoding the 400 messages, which any *N* must do.
Runs much longer than *N* steps trend to *S/(2N)* times the text: a store that
expects thousand-step runs may set a larger ``snapshot_every``.

Writing without reading the parent
----------------------------------

Finding ``keep`` needs the parent's logical history. Rebuilding it from the store
on every write would make each checkpoint cost as much as a restore, so a store
keeps the histories it wrote or read lately in a :class:`HistoryCache`, keyed by
checkpoint id and validated by a **write tag**: a random 63-bit number stored with
each record (:func:`new_tag`). A store reads its parent row's tag anyway (to check
the parent exists); if it matches the cached entry, the cached history is the
parent's, because a record is never changed once written (a checkpoint id deleted
with its session and written again gets a new tag). Within a run the runtime hands
the store the very message objects the parent held, so the prefix comparison is a
pointer comparison per message and a checkpoint costs the same at step 200 as at
step 1. On a miss the store rebuilds the parent's history from its chain (one
query), as a restore would.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from threadline.codec import dump_json
from threadline.errors import StoreError
from threadline.models import Message, ToolCall, builder, trusted

__all__ = [
    "FORMAT_VERSION",
    "SNAPSHOT_EVERY",
    "CachedHistory",
    "EncodedHistory",
    "HistoryCache",
    "apply_record",
    "apply_steps",
    "common_prefix",
    "decode_items",
    "encode_history",
    "encode_items",
    "encoded_record",
    "load_record",
    "new_tag",
    "rebuild",
    "rebuild_steps",
]

FORMAT_VERSION = 1
"""The record format this module writes (and the newest it reads)."""

SNAPSHOT_EVERY = 128
"""At most this many records in a chain: a snapshot and up to ``SNAPSHOT_EVERY - 1`` deltas."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_build_message = builder(Message)  # positional, in field order; no validation


# -- messages ---------------------------------------------------------------------------------


def encode_items(
    messages: Sequence[Message],
    *,
    tenant_id: str,
    session_id: str,
    previous: Message | None = None,
) -> list[dict[str, Any]]:
    """The compact items for ``messages``, which follow ``previous`` in the history."""
    user = previous.user_id if previous is not None else None
    agent = previous.agent_id if previous is not None else None
    items = []
    for m in messages:
        item: dict[str, Any] = {"id": m.id, "role": m.role}
        if m.content:
            item["content"] = m.content
        item["at"] = (m.created_at - _EPOCH) // _ONE_US
        if m.session_id != session_id:
            item["session_id"] = m.session_id
        if m.tenant_id != tenant_id:
            item["tenant_id"] = m.tenant_id
        if m.user_id != user:
            item["user_id"] = user = m.user_id
        if m.agent_id != agent:
            item["agent_id"] = agent = m.agent_id
        if m.seq is not None:
            item["seq"] = m.seq
        if m.tool_calls:
            item["tool_calls"] = [[c.id, c.name, c.arguments] for c in m.tool_calls]
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            item["name"] = m.name
        if m.status != "complete":
            item["status"] = m.status
        if m.metadata:
            item["metadata"] = m.metadata
        items.append(item)
    return items


def decode_items(
    items: Iterable[Mapping[str, Any]],
    *,
    tenant_id: str,
    session_id: str,
    previous: Message | None = None,
) -> list[Message]:
    """Messages from items made by :func:`encode_items` (no validation: the store wrote them)."""
    user = previous.user_id if previous is not None else None
    agent = previous.agent_id if previous is not None else None
    build, epoch, delta = _build_message, _EPOCH, timedelta
    out = []
    for d in items:
        if len(d) == 4 and "content" in d:  # id, role, content, at: the rest is default
            out.append(
                build(session_id, tenant_id, d["role"], d["content"], user, agent, (), None,
                      None, "complete", {}, d["id"], None, epoch + delta(0, 0, d["at"]))
            )  # fmt: skip
            continue
        get = d.get
        user = get("user_id", user)
        agent = get("agent_id", agent)
        calls = get("tool_calls")
        out.append(
            build(
                get("session_id", session_id),
                get("tenant_id", tenant_id),
                d["role"],
                get("content", ""),
                user,
                agent,
                tuple(trusted(ToolCall, id=i, name=n, arguments=a) for i, n, a in calls)
                if calls
                else (),
                get("tool_call_id"),
                get("name"),
                get("status", "complete"),
                get("metadata") or {},
                d["id"],
                get("seq"),
                epoch + delta(0, 0, d["at"]),
            )
        )
    return out


# -- writing ----------------------------------------------------------------------------------


def common_prefix(history: Sequence[Message], base: Sequence[Message]) -> int:
    """How many leading messages ``history`` and ``base`` share (equal, identity first)."""
    size = len(base)
    if len(history) >= size and tuple(history[:size]) == tuple(base):
        return size  # the usual case: tuple equality compares identical objects by pointer
    n = 0
    for mine, theirs in zip(history, base):
        if mine is not theirs and mine != theirs:
            break
        n += 1
    return n


@attrs.frozen
class EncodedHistory:
    """A checkpoint's history as one record, ready to store."""

    record: dict[str, Any]
    """The record (JSON-ready), for stores that embed it in a larger document."""
    text: str
    """The record as compact JSON text."""
    depth: int
    """Links from the chain's snapshot: 0 for a snapshot, the parent's depth + 1 for a delta."""
    keep: int | None
    """Messages kept from the parent (``None`` for a snapshot)."""

    @property
    def is_snapshot(self) -> bool:
        return self.keep is None


def encode_history(
    history: Sequence[Message],
    *,
    tenant_id: str,
    session_id: str,
    parent: Sequence[Message] | None = None,
    parent_depth: int = 0,
    snapshot_every: int = SNAPSHOT_EVERY,
) -> EncodedHistory:
    """Decide snapshot or delta and encode the record (see the module docs for the rule).

    :param history: the new checkpoint's whole history.
    :param tenant_id: the checkpoint's tenant (messages of it do not repeat it).
    :param session_id: the checkpoint's session (likewise).
    :param parent: the parent checkpoint's logical history, or ``None`` without a parent.
    :param parent_depth: the parent record's depth (0 for a snapshot).
    :param snapshot_every: the longest chain allowed, in records.
    :raises ValidationError: a message holds something JSON cannot store.
    """
    if snapshot_every < 1:
        raise ValueError("snapshot_every must be at least 1")
    keep = 0
    if parent is not None and parent_depth + 1 < snapshot_every:
        keep = common_prefix(history, parent)
    if keep == 0:
        items = encode_items(history, tenant_id=tenant_id, session_id=session_id)
        return encoded_record(items, None, 0)
    items = encode_items(
        history[keep:], tenant_id=tenant_id, session_id=session_id, previous=history[keep - 1]
    )
    return encoded_record(items, keep, parent_depth + 1)


def encoded_record(items: list[dict[str, Any]], keep: int | None, depth: int) -> EncodedHistory:
    """The record holding ``items`` (from :func:`encode_items`): a snapshot when ``keep``
    is ``None``, else a delta keeping ``keep`` messages of its parent."""
    record: dict[str, Any] = {"v": FORMAT_VERSION, "kind": "snapshot", "messages": items}
    if keep is not None:
        record = {"v": FORMAT_VERSION, "kind": "delta", "keep": keep, "messages": items}
    return EncodedHistory(record, dump_json(record, "checkpoint history"), depth, keep)


_tags = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):  # a forked child draws tags of its own, not its parent's
    os.register_at_fork(after_in_child=lambda: _tags.seed(os.urandom(32)))


def new_tag() -> int:
    """A random write tag for a new record: a positive int that fits a signed 64-bit column.

    Drawn from a generator seeded by the OS (again in a forked child), not one system call
    per tag: a tag must differ from the one it replaces, not be secret, and a call that
    leaves the interpreter lets a store's worker thread take it first (measured 0.3 ms per
    ``os.urandom`` call on a busy 2-core machine, five tags per LangGraph step)."""
    return _tags.getrandbits(63)


# -- reading ----------------------------------------------------------------------------------


def load_record(record: str | bytes | Mapping[str, Any]) -> tuple[int | None, list[Any]]:
    """``(keep, items)`` of a record (``keep`` is ``None`` for a snapshot), format checked.

    :raises StoreError: the record is not one this version reads (newer, or damaged).
    """
    if isinstance(record, (str, bytes)):
        try:
            record = json.loads(record)
        except ValueError as exc:
            raise StoreError(f"a checkpoint history record is not JSON ({exc})") from None
    if not isinstance(record, Mapping):
        raise StoreError("a checkpoint history record is not a JSON object; the store is damaged")
    version = record.get("v")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise StoreError(
                f"a checkpoint history record has format version {version}; this threadline "
                f"reads up to {FORMAT_VERSION}: upgrade threadline to read it"
            )
        raise StoreError(f"a checkpoint history record has an unknown format ({version!r})")
    kind = record.get("kind")
    items = record.get("messages")
    if not isinstance(items, list):
        raise StoreError("a checkpoint history record has no message list; the store is damaged")
    if kind == "snapshot":
        return None, items
    keep = record.get("keep")
    if kind != "delta" or not isinstance(keep, int) or keep < 0:
        raise StoreError(f"a checkpoint history record is damaged (kind {kind!r}, keep {keep!r})")
    return keep, items


def apply_record(
    history: list[Message],
    record: str | bytes | Mapping[str, Any],
    *,
    tenant_id: str,
    session_id: str,
) -> None:
    """Turn ``history`` (the parent's logical history) into the record's, in place."""
    for _ in apply_steps(history, record, tenant_id=tenant_id, session_id=session_id):
        pass


def apply_steps(
    history: list[Message],
    record: str | bytes | Mapping[str, Any],
    *,
    tenant_id: str,
    session_id: str,
    step_chars: int | None = None,
) -> Iterator[None]:
    """:func:`apply_record` as a generator that pauses after about every ``step_chars`` of
    the record's text (``None``: never), so a caller on an event loop can let others run."""
    size = len(record) if isinstance(record, (str, bytes)) else 0
    keep, items = load_record(record)
    if keep is None:
        history.clear()
    elif keep > len(history):
        raise StoreError(
            f"a checkpoint history delta keeps {keep} messages of a parent that has "
            f"{len(history)}; the store is damaged"
        )
    else:
        del history[keep:]
    step = len(items) or 1
    if step_chars is not None and size > step_chars:
        step = max(1, len(items) * step_chars // size)
        yield  # the record's JSON is decoded: a pause before its messages
    for start in range(0, len(items), step):
        history.extend(
            decode_items(
                items[start : start + step] if step < len(items) else items,
                tenant_id=tenant_id,
                session_id=session_id,
                previous=history[-1] if history else None,
            )
        )
        if step < len(items):
            yield


def rebuild_steps(
    history: list[Message],
    records: Iterable[str | bytes | Mapping[str, Any]],
    *,
    tenant_id: str,
    session_id: str,
    step_chars: int,
) -> Iterator[None]:
    """:func:`rebuild` into ``history`` as a generator that pauses after about every
    ``step_chars`` of record text (a record's JSON is decoded whole between two pauses)."""
    done = 0
    for record in records:
        for _ in apply_steps(
            history, record, tenant_id=tenant_id, session_id=session_id, step_chars=step_chars
        ):
            yield
            done = 0
        done += len(record) if isinstance(record, (str, bytes)) else 0
        if done >= step_chars:
            yield
            done = 0


def rebuild(
    records: Iterable[str | bytes | Mapping[str, Any]],
    *,
    tenant_id: str,
    session_id: str,
    base: Sequence[Message] = (),
) -> tuple[Message, ...]:
    """The logical history at the end of a chain of records, oldest (the snapshot) first.

    :param records: the chain: a snapshot, then each delta on the one before it.
    :param tenant_id: the checkpoint's tenant.
    :param session_id: the checkpoint's session.
    :param base: the history the first record applies to, when it is a delta on a
        history the store decoded itself (a record of an older, store-specific format).
    :raises StoreError: a record is damaged or of a newer format.
    """
    history = list(base)
    for record in records:
        apply_record(history, record, tenant_id=tenant_id, session_id=session_id)
    return tuple(history)


# -- the write-side cache -----------------------------------------------------------------------


@attrs.frozen
class CachedHistory:
    """A checkpoint's logical history as a store last wrote or read it."""

    tag: int
    depth: int
    history: tuple[Message, ...]


class HistoryCache:
    """Logical histories of recently written or read checkpoints, by id, for writing deltas.

    Bounded by entries and by the messages they hold (entries of one run share their
    message objects, so the memory is mostly pointers). Thread-safe: a store may fill it
    from a reader thread and use it from a writer thread. An entry is used only when the
    tag stored with the checkpoint's record still matches (see the module docs).

    Entries hold the message objects a caller wrote (or a read returned), so that a
    child's history can be compared by identity. Models are frozen; a caller that
    changes a stored message's ``metadata`` dict in place has changed what the cache
    compares against, not what was stored (the change is saved only if the message is
    written again as a new object).
    """

    def __init__(self, max_entries: int = 256, max_messages: int = 250_000) -> None:
        self.max_entries = max_entries
        self.max_messages = max_messages
        self._entries: OrderedDict[str, CachedHistory] = OrderedDict()
        self._messages = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, checkpoint_id: str | None) -> CachedHistory | None:
        """The entry for ``checkpoint_id``; use it only if its ``tag`` is the stored record's."""
        if checkpoint_id is None:
            return None
        with self._lock:
            entry = self._entries.get(checkpoint_id)
            if entry is None:
                return None
            self._entries.move_to_end(checkpoint_id)
            return entry

    def put(
        self, checkpoint_id: str, tag: int | None, depth: int | None, history: Sequence[Message]
    ) -> None:
        """Remember a checkpoint's history (ignored without a tag: a record of an older format)."""
        if tag is None or depth is None or len(history) > self.max_messages:
            return
        entry = CachedHistory(tag, depth, tuple(history))
        with self._lock:
            old = self._entries.pop(checkpoint_id, None)
            if old is not None:
                self._messages -= len(old.history)
            self._entries[checkpoint_id] = entry
            self._messages += len(entry.history)
            while self._entries and (
                len(self._entries) > self.max_entries or self._messages > self.max_messages
            ):
                _, dropped = self._entries.popitem(last=False)
                self._messages -= len(dropped.history)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._messages = 0
