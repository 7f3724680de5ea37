"""The checkpoint log, written once over the record hooks of the required tier.

A store keeps one :class:`~threadline.storekit.records.CheckpointRecord` per checkpoint:
a snapshot of its history or a delta on its parent (:mod:`threadline.storekit.delta`
has the format and the snapshot rule). This module does the rest, for every store:

* **writing** (:func:`create_checkpoint`): the parent's history comes from the store's
  :class:`~threadline.storekit.delta.HistoryCache` when the write tag the store holds
  for it is the cached one (the insert hook checks the tag and refuses a stale one),
  else from its chain; a retry of a stored id comes back, other content conflicts;
* **reading** (:func:`restore`, :func:`histories`): a history is rebuilt from its chain,
  each record decoded once however many checkpoints share it, without holding the event
  loop (in a :class:`~threadline.storekit.sync.SyncStore`'s own thread with the read, or on
  the loop in slices of :data:`INLINE_CHARS` of record text);
* **the prune plan** (:func:`prune_plan`): keep the newest versions whole, a kept delta
  whose base goes is rewritten as a snapshot first;
* **the erase-rewrite plan** (:func:`erase_plan`): every record whose own messages hold the
  erased user's is rewritten redacted (same kind, ``keep`` and depth), and every checkpoint
  whose history held them gets a new tag, so no cache anywhere serves the old history.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from threadline.codec import dump_json
from threadline.errors import ConflictError, NotFoundError, StoreError
from threadline.models import Checkpoint, Message, builder
from threadline.storekit.delta import (
    SNAPSHOT_EVERY,
    EncodedHistory,
    HistoryCache,
    apply_record,
    encode_history,
    encoded_record,
    load_record,
    new_tag,
    rebuild,
    rebuild_steps,
)
from threadline.storekit.erasure import redact_record
from threadline.storekit.records import CheckpointRecord, StaleRecordError, id_conflict

__all__ = [
    "INLINE_CHARS",
    "Hooks",
    "chain_history",
    "checkpoint_of_chain",
    "create_checkpoint",
    "erase_plan",
    "histories",
    "history_cache",
    "prune_plan",
    "read_chain",
    "restore",
    "session_tags",
]

INLINE_CHARS = 16_384
"""A chain with at most this much record text is decoded on the event loop in one go; a
longer one on the loop in slices of about this much text, the loop free between two (a
record's JSON is parsed whole: a 200-step loop's snapshot, 120 KiB, ~0.3 ms). Measured
(400-byte messages, 2-core machine): decoding costs 4-5 us per KiB, so a slice holds the
loop ~0.08 ms and a pause costs ~5 us; a hand-off to a worker thread instead cost
0.15-0.3 ms more per restore of a 200-step loop's chain (72 records, 198 KiB: 1.1 ms inline,
1.3 ms in a thread, 1.14 ms in slices), more when the machine is busy."""


class Hooks(Protocol):
    """One store's hooks as the kit calls them (:class:`threadline.plugins.dispatch.Binding`)."""

    state: dict[str, Any]

    def has(self, hook: str) -> bool: ...

    async def call(self, hook: str, **kwargs: Any) -> Any: ...


_CHECKPOINT_FIELDS = tuple(f.name for f in attrs.fields(Checkpoint))


def _replace(checkpoint: Checkpoint, **changes: Any) -> Checkpoint:
    """``attrs.evolve`` without re-validating values already checked (a long history's
    messages are checked once, not on every copy the log makes of its checkpoint)."""
    values = {name: getattr(checkpoint, name) for name in _CHECKPOINT_FIELDS}
    values.update(changes)
    return builder(Checkpoint)(**values)


def history_cache(hooks: Hooks) -> HistoryCache:
    """The store's history cache (one per bound store)."""
    cache = hooks.state.get("history_cache")
    if cache is None:
        cache = hooks.state["history_cache"] = HistoryCache()
    assert isinstance(cache, HistoryCache)
    return cache


Built = tuple[list[CheckpointRecord], tuple[Message, ...]]


def _cached(cache: HistoryCache | None, records: Sequence[CheckpointRecord]) -> Built | None:
    """The head's history from ``cache`` when it holds the head's record by its tag: the
    message objects this store wrote or read for it, not a rebuild of the chain."""
    if cache is None or not records:
        return None
    head = records[0]
    entry = cache.get(head.id)
    if entry is None or entry.tag != head.tag:
        return None
    _checked_head(records)
    return list(records), entry.history


def _built(chain: Iterable[CheckpointRecord] | None, cache: HistoryCache | None = None) -> Built:
    records = list(chain or ())
    return _cached(cache, records) or (records, chain_history(records))


HEAD_READER = "threadline_read_checkpoint_head"
"""The shortcut hook a chain read asks first (see its spec): the record the chain would
start with, alone. A head the history cache holds by its tag then costs one indexed row,
not its chain (up to ``SNAPSHOT_EVERY`` rows, a snapshot among them)."""


def _head_args(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The head hook's arguments from a chain read's (``read_checkpoint_records`` or
    ``list_checkpoint_records(latest=True)``)."""
    return {
        "tenant_id": kwargs["tenant_id"],
        "checkpoint_id": kwargs.get("checkpoint_id"),
        "session_id": kwargs.get("session_id"),
        "agent_id": kwargs.get("agent_id"),
    }


def _hit(cache: HistoryCache, head: CheckpointRecord) -> Built | None:
    """A head alone, with its history from ``cache`` when the cache holds it by its tag."""
    entry = cache.get(head.id)
    if entry is None or entry.tag != head.tag:
        return None
    return [head], entry.history


def _head_first(
    cache: HistoryCache,
    head_of: Callable[[], CheckpointRecord | None],
    chain_of: Callable[[str], Iterable[CheckpointRecord] | None],
) -> Built:
    """The head (``head_of``) and its cached history, else its chain (``chain_of``)."""
    head = head_of()
    if head is None:
        return [], ()
    return _hit(cache, head) or _built(chain_of(head.id), cache)


def _head_worth_reading(cache: HistoryCache | None, kwargs: Mapping[str, Any]) -> bool:
    """Whether a chain read should ask for its head first: a latest read (the head's id
    is not known) while the cache holds anything, or a named checkpoint the cache holds
    (else the chain is read at once: a miss would cost two reads)."""
    if cache is None or not len(cache):  # an empty cache (a store just opened) misses
        return False
    named = kwargs.get("checkpoint_id")
    return named is None or cache.get(named) is not None


def _sync_operation(plugin: object, hook: str) -> str | None:
    """The plain method a :class:`~threadline.storekit.sync.SyncStore` wrote ``hook`` as."""
    return getattr(getattr(plugin, hook, None), "sync_operation", None)


async def read_chain(hooks: Hooks, hook: str, *, cached: bool = True, **kwargs: Any) -> Built:
    """Call the chain-reading ``hook`` (``read_checkpoint_records`` with ``chain``, or
    ``list_checkpoint_records`` with ``latest``) and rebuild the head's history.

    On a :class:`~threadline.storekit.sync.SyncStore` whose hooks block, the read and the
    rebuild run together in one :meth:`~threadline.storekit.sync.SyncStore.run_sync` of
    ``hook`` (the store's reader thread, say): one hand-off. Otherwise the hook is awaited
    and a chain longer than :data:`INLINE_CHARS` is rebuilt in slices, the loop free
    between two (no thread hand-off: see :data:`INLINE_CHARS`).

    A head whose record the store's :class:`~threadline.storekit.delta.HistoryCache` holds
    by its tag (this store wrote or read it, and nothing rewrote it since) is not rebuilt:
    its history is the cached tuple, the very message objects (immutable models) written
    or read before, so a caller can compare it with what it holds by identity. A store
    with a :data:`HEAD_READER` is asked for the head alone first (in the same hand-off on a
    blocking store), and for the chain only when the cache misses it.
    """
    cache = history_cache(hooks) if cached else None
    plugin = getattr(hooks, "plugin", None)
    tenant_id = kwargs.get("tenant_id")
    head_first = (
        tenant_id is not None and _head_worth_reading(cache, kwargs) and hooks.has(HEAD_READER)
    )
    operation = _sync_operation(plugin, hook)
    if operation is not None and getattr(plugin, "blocking", False):
        op: Callable[..., Iterable[CheckpointRecord]] = getattr(plugin, operation)
        run_sync = plugin.run_sync  # type: ignore[union-attr]
        chain_op = _sync_operation(plugin, "threadline_read_checkpoint_records")
        head_op = _sync_operation(plugin, HEAD_READER) if head_first else None
        if head_op is not None and cache is not None and chain_op is not None:
            read_op: Callable[..., Iterable[CheckpointRecord]] = getattr(plugin, chain_op)
            reader: Callable[..., CheckpointRecord | None] = getattr(plugin, head_op)
            built: Built = await run_sync(hook, lambda: _head_first(
                cache, lambda: reader(**_head_args(kwargs)), lambda head_id: read_op(
                    tenant_id=tenant_id, checkpoint_id=head_id, chain=True),
            ))  # fmt: skip
            return built
        built = await run_sync(hook, lambda: _built(op(**kwargs), cache))
        return built
    if head_first and cache is not None:
        first: CheckpointRecord | None = await hooks.call(HEAD_READER, **_head_args(kwargs))
        if first is None:
            return [], ()
        hit = _hit(cache, first)
        if hit is not None:
            return hit
        hook = "threadline_read_checkpoint_records"
        kwargs = {"tenant_id": tenant_id, "checkpoint_id": first.id, "chain": True}
    chain = list(await hooks.call(hook, **kwargs) or ())
    hit = _cached(cache, chain)
    if hit is not None:
        return hit
    if sum(len(r.record) for r in chain) <= INLINE_CHARS:
        return _built(chain)
    history: list[Message] = []
    if chain:
        head = _checked_head(chain)
        for _ in rebuild_steps(
            history, [r.record for r in reversed(chain)], tenant_id=head.tenant_id,
            session_id=head.session_id, step_chars=INLINE_CHARS,
        ):  # fmt: skip
            await asyncio.sleep(0)
    return chain, tuple(history)


async def _chain(hooks: Hooks, tenant_id: str, checkpoint_id: str) -> Built:
    return await read_chain(
        hooks,
        "threadline_read_checkpoint_records",
        tenant_id=tenant_id,
        checkpoint_id=checkpoint_id,
        chain=True,
    )


async def restore(
    hooks: Hooks, hook: str, *, cached: bool = True, **kwargs: Any
) -> Checkpoint | None:
    """The checkpoint at the head of the chain ``hook`` reads (:func:`read_chain`), with its
    history, which is cached for the next write on it (``cached=False``: rebuilt from the
    chain even when the cache holds it)."""
    chain, history = await read_chain(hooks, hook, cached=cached, **kwargs)
    if not chain:
        return None
    head = chain[0]
    history_cache(hooks).put(head.id, head.tag, head.depth, history)
    return _replace(head.checkpoint, history=history)


def chain_history(chain: Sequence[CheckpointRecord]) -> tuple[Message, ...]:
    """The history at the head of ``chain`` (the record first, its snapshot last). Only the
    head's full checkpoint is read: an ancestor needs only its ids, record and depth."""
    if not chain:
        return ()
    head = _checked_head(chain)
    return rebuild(
        [r.record for r in reversed(chain)], tenant_id=head.tenant_id, session_id=head.session_id
    )


def _checked_head(chain: Sequence[CheckpointRecord]) -> Checkpoint:
    """The head's checkpoint of a chain whose links and snapshot are checked."""
    if chain[-1].depth != 0:
        raise StoreError(f"checkpoint {chain[-1].id}'s chain has no snapshot; the store is damaged")
    for child, parent in itertools.pairwise(chain):
        if not child.depth or child.parent_id != parent.id:
            raise StoreError(f"checkpoint {child.id}'s chain is broken; the store is damaged")
    return chain[0].checkpoint


def checkpoint_of_chain(hooks: Hooks, chain: Sequence[CheckpointRecord]) -> Checkpoint | None:
    """The checkpoint at the head of ``chain`` with its history (cached for later writes)."""
    if not chain:
        return None
    history = chain_history(chain)
    head = chain[0]
    history_cache(hooks).put(head.id, head.tag, head.depth, history)
    return _replace(head.checkpoint, history=history)


def histories(
    by_id: Mapping[str, CheckpointRecord], ids: Iterable[str]
) -> dict[str, tuple[Message, ...]]:
    """The histories of ``ids`` (and of every checkpoint they build on), each record decoded once.

    :raises StoreError: a chain's record is missing or damaged.
    """
    out: dict[str, tuple[Message, ...]] = {}
    for checkpoint_id in ids:
        chain: list[CheckpointRecord] = []
        current: str | None = checkpoint_id
        while current not in out:
            record = by_id.get(current or "")
            if record is None:
                raise StoreError(f"checkpoint {current} is missing; the store is damaged")
            chain.append(record)
            if not record.depth:
                break
            current = record.parent_id
        for record in reversed(chain):
            built = list(out[record.parent_id or ""]) if record.depth else []
            c = record.checkpoint
            apply_record(built, record.record, tenant_id=c.tenant_id, session_id=c.session_id)
            out[record.id] = tuple(built)
    return out


def _as_stored(checkpoint: Checkpoint) -> Checkpoint:
    """``checkpoint`` as a store gives it back: JSON round trips of its values and history."""
    t, sid = checkpoint.tenant_id, checkpoint.session_id
    snapshot = encode_history(checkpoint.history, tenant_id=t, session_id=sid)
    return attrs.evolve(
        checkpoint,
        input=json.loads(dump_json(checkpoint.input, "checkpoint input")),
        state=json.loads(dump_json(checkpoint.state, "checkpoint state")),
        properties=json.loads(dump_json(checkpoint.properties, "checkpoint properties")),
        history=rebuild([snapshot.text], tenant_id=t, session_id=sid),
    )


async def create_checkpoint(
    hooks: Hooks, checkpoint: Checkpoint, snapshot_every: int = SNAPSHOT_EVERY
) -> Checkpoint:
    """Store ``checkpoint`` as a snapshot or a delta on its parent (the derived hook's default)."""
    c = checkpoint
    t, sid = c.tenant_id, c.session_id
    cache = history_cache(hooks)
    bare = _replace(c, history=(), version=None)
    for attempt in range(3):
        parent_tag: int | None = None
        if c.parent_id is None:
            encoded = encode_history(c.history, tenant_id=t, session_id=sid)
        else:
            cached = cache.get(c.parent_id) if attempt == 0 else None
            if cached is None:
                if attempt == 0:  # refused before a read (the insert refuses it too)
                    dump_json(c.input, "checkpoint input")
                chain, parent = await _chain(hooks, t, c.parent_id)
                if not chain or chain[0].checkpoint.session_id != sid:
                    raise NotFoundError(
                        f"parent checkpoint {c.parent_id} not found in this session"
                    )
                cache.put(c.parent_id, chain[0].tag, chain[0].depth, parent)
                parent_depth, parent_tag, history = chain[0].depth, chain[0].tag, parent
            else:
                parent_depth, parent_tag, history = cached.depth, cached.tag, cached.history
            encoded = encode_history(
                c.history, tenant_id=t, session_id=sid, parent=history,
                parent_depth=parent_depth, snapshot_every=snapshot_every,
            )  # fmt: skip
        tag = new_tag()
        record = CheckpointRecord(bare, encoded.text, encoded.depth, tag)
        try:
            stored: CheckpointRecord = await hooks.call(
                "threadline_insert_checkpoint_record", record=record, parent_tag=parent_tag
            )
        except StaleRecordError:
            continue  # the parent was rewritten meanwhile (erased, pruned): read it again
        if stored.tag != tag:  # the id was stored already: a retry, or a conflict
            existing = await restore(
                hooks, "threadline_read_checkpoint_records", cached=False, tenant_id=t,
                checkpoint_id=c.id, chain=True,
            )  # fmt: skip
            assert existing is not None
            if attrs.evolve(_as_stored(c), version=existing.version) != existing:
                raise id_conflict("checkpoint", c.id)
            return existing
        cache.put(c.id, tag, encoded.depth, _as_read(c.history, encoded, t, sid))
        return _replace(stored.checkpoint, history=c.history)
    raise ConflictError(f"checkpoint {c.id}: its parent kept changing while it was written")


def _as_read(
    history: tuple[Message, ...], encoded: EncodedHistory, tenant_id: str, session_id: str
) -> tuple[Message, ...]:
    """The history a read of a record just written gives (what the cache serves): the
    caller's own message objects when its new messages come back equal from the record's
    JSON (decoded: only the new ones), else the decoded history."""
    keep = encoded.keep or 0
    built = list(history[:keep])
    apply_record(built, encoded.text, tenant_id=tenant_id, session_id=session_id)
    if len(built) == len(history) and all(map(operator.eq, built[keep:], history[keep:])):
        return history
    return tuple(built)


def session_tags(records: Iterable[CheckpointRecord]) -> dict[str, int]:
    """The write tag of each record a plan read (``expected_tags`` of the rewrite hook)."""
    return {r.id: r.tag for r in records}


def prune_plan(
    records: Sequence[CheckpointRecord], keep: int
) -> tuple[list[CheckpointRecord], list[str]]:
    """What pruning a session to its newest ``keep`` versions rewrites and deletes.

    ``records`` are the session's, in version order. A kept delta on a checkpoint that
    goes is rewritten as a snapshot of its history (depth 0, a new tag); its ``parent_id``
    stays as recorded.
    """
    doomed = [r.id for r in records[: max(len(records) - keep, 0)]]
    gone = set(doomed)
    kept = records[len(doomed) :]
    orphans = [r for r in kept if r.depth and r.parent_id in gone]
    if not orphans:
        return [], doomed
    built = histories({r.id: r for r in records}, [r.id for r in orphans])
    rewrites = []
    for r in orphans:
        c = r.checkpoint
        encoded = encode_history(built[r.id], tenant_id=c.tenant_id, session_id=c.session_id)
        rewrites.append(attrs.evolve(r, record=encoded.text, depth=0, tag=new_tag()))
    return rewrites, doomed


def erase_plan(
    records: Sequence[CheckpointRecord], user_id: str
) -> tuple[int, list[CheckpointRecord]]:
    """How many of a session's checkpoints held ``user_id``'s messages, and their rewrites.

    Every such checkpoint gets a new tag; its record is rewritten with
    :func:`threadline.storekit.erasure.redact_record` when its own messages hold the user's (else
    kept as it is). Positions do not move, so every delta on a rewritten record stays valid.
    A session none of whose records names the user is skipped without decoding (an item
    leaves out its ``user_id`` only after a message of the same user in the same session).
    """
    if not any(user_id in r.record for r in records):
        return 0, []
    built = histories({r.id: r for r in records}, [r.id for r in records])
    count, rewrites = 0, []
    for r in records:
        history = built[r.id]
        if not any(m.user_id == user_id for m in history):
            continue
        count += 1
        c = r.checkpoint
        keep, _ = load_record(r.record)
        encoded = redact_record(
            history, keep, user_id, tenant_id=c.tenant_id, session_id=c.session_id, depth=r.depth
        )
        if encoded is not None and keep and "user_id" not in encoded.record["messages"][0]:
            # Named: the delta reads the same before and after its base's rewrite (a store
            # without transactions rewrites deltas first, see rewrite_checkpoint_records).
            own = history[keep].user_id
            first = {**encoded.record["messages"][0], "user_id": None if own == user_id else own}
            encoded = encoded_record([first, *encoded.record["messages"][1:]], keep, r.depth)
        text = encoded.text if encoded is not None else r.record
        rewrites.append(attrs.evolve(r, record=text, tag=new_tag()))
    return count, rewrites
