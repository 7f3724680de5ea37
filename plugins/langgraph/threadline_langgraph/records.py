"""One LangGraph checkpoint as one threadline checkpoint record, and pending writes as more.

A LangGraph checkpoint becomes a :class:`threadline.models.Checkpoint` of the thread's
session. Its message-list channel is the record's ``history`` (a delta on an earlier
record's, see :mod:`threadline_langgraph.messages`); the rest of the checkpoint (the other
channel values, ``channel_versions``, ``versions_seen``, ...) is ``state["c"]``, under
short names (``ts`` as integer microseconds), as JSON where a value is plain JSON, else
through LangGraph's serializer (typed bytes as base64), so ``Send`` packets, interrupts
and any value the serializer takes round-trip exactly. A message held elsewhere in the
checkpoint (the graph input in ``__start__``) is stored once in ``state["messages"]``
and referred to. The checkpoint metadata is ``properties["langgraph"]["metadata"]``:
JSON, shown by ``threadline checkpoints``. Properties at their defaults (the root
namespace, generation 0) are left out; records of earlier versions (LangGraph's field
names in ``state["checkpoint"]``) read the same.

Pending writes go into their checkpoint's record where the store can append to a stored
record's state in one transaction (the shortcut hook ``threadline_append_checkpoint_state``:
SQLite, PostgreSQL, memory): the record is made with an empty ``state["pw"]`` and each
``put_writes`` call appends its writes to it, so a step stores one row per checkpoint and a
checkpoint with its writes is one read. Elsewhere (fsspec, Redis, stores without the
shortcut) they are records of their own, made with nothing but ``create_checkpoint`` and
read with ``get_checkpoint``. The ``n``-th call on a checkpoint writes record ``n`` (an id
derived from the checkpoint's, :func:`~threadline_langgraph.ids.writes_record_id`), so a
checkpoint's writes are a few indexed reads whatever the thread's length, and two writers
racing for ``n`` are told apart by the store (one gets a conflict and takes ``n + 1``). A
written message the checkpoint already holds (the input a ``__start__`` task writes) is a
reference into the checkpoint's record, which was stored first. Reading folds the records as
LangGraph's savers do: a regular write of a ``(task_id, idx)`` already written is ignored, a
special one (error, interrupt, resume) replaces the earlier, in ``writes_sort_key`` order. A
write record holds its task once (``state["t"]``, ``state["p"]``) and each write as
``[channel, value]`` (``idx`` is its position; a special channel's ``idx`` is written)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    writes_sort_key,
)

from threadline.models import Checkpoint as Record
from threadline.models import builder
from threadline_langgraph.ids import namespace_agent_id, writes_record_id
from threadline_langgraph.messages import (
    MessageCodec,
    Refs,
    Resolver,
    decode_typed,
    encode_typed,
    is_message_list,
)

__all__ = [
    "CHECKPOINT",
    "FOLDED",
    "WRITES",
    "Where",
    "checkpoint_record",
    "fold_writes",
    "lg",
    "metadata_of",
    "resolver",
    "stored_values",
    "tuple_of",
    "writes_record",
    "writes_state",
]

CHECKPOINT = "checkpoint"
WRITES = "writes"
FOLDED = "pw"
"""The state key of a checkpoint record's own pending writes (each a write record's state)."""
_RECORD_FIELDS = tuple(f.name for f in attrs.fields(Record))


class Where:
    """Where records go: tenant, thread (its session and generation), namespace, user."""

    __slots__ = ("checkpoint_ns", "generation", "session_id", "tenant_id", "thread_id", "user_id")

    def __init__(
        self,
        *,
        tenant_id: str,
        thread_id: str,
        session_id: str,
        generation: int,
        checkpoint_ns: str,
        user_id: str | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.thread_id = thread_id
        self.session_id = session_id
        self.generation = generation
        self.checkpoint_ns = checkpoint_ns
        self.user_id = user_id

    def properties(self, kind: str, checkpoint_id: str, **more: Any) -> dict[str, Any]:
        info = {"kind": kind, "ns": self.checkpoint_ns, "id": checkpoint_id,
                "gen": self.generation, **more}  # fmt: skip
        return {"langgraph": compact_info(info)}


_INFO_DEFAULTS: dict[str, Any] = {"ns": "", "gen": 0}


def compact_info(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` without the fields at their defaults (the root namespace, generation 0):
    bytes on every record that :func:`lg` puts back."""
    return {k: v for k, v in info.items() if k not in _INFO_DEFAULTS or v != _INFO_DEFAULTS[k]}


def lg(record: Record) -> dict[str, Any]:
    """The LangGraph part of a record's properties, defaults filled in (``{}`` for a record
    of another kind)."""
    value = record.properties.get("langgraph")
    if not isinstance(value, dict) or not value:
        return {}
    return {**_INFO_DEFAULTS, **value}


def _plain_json(value: object) -> bool:
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError):
        return False


def stored_values(checkpoint: Checkpoint) -> tuple[dict[str, Any], str | None]:
    """The channel values a checkpoint stores (those with a version), and which of them is
    the message list kept as the record's history (``messages`` first), if any."""
    versions = checkpoint.get("channel_versions") or {}
    values = {k: v for k, v in (checkpoint.get("channel_values") or {}).items() if k in versions}
    channel = "messages" if is_message_list(values.get("messages")) else None
    if channel is None:
        channel = next((k for k, v in values.items() if is_message_list(v)), None)
    return values, channel


def checkpoint_record(
    codec: MessageCodec,
    where: Where,
    *,
    record_id: str,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    parent_checkpoint_id: str | None,
    parent_record_id: str | None,
    folded: bool = False,
    stored: tuple[dict[str, Any], str | None] | None = None,
) -> tuple[Record, Refs]:
    """The threadline record of a LangGraph checkpoint, and the messages it holds
    (``folded``: with the empty list its pending writes are appended to, see the module;
    ``stored``: its :func:`stored_values`, when known)."""
    c: dict[str, Any] = dict(checkpoint)
    c.pop("id")
    values, channel = stored if stored is not None else stored_values(checkpoint)
    values = dict(values)
    messages = values.pop(channel) if channel is not None else []
    c.pop("channel_values", None)
    refs = Refs(messages)
    history = codec.to_history(
        messages, tenant_id=where.tenant_id, session_id=where.session_id, user_id=where.user_id
    )
    c["channel_values"] = values
    state = _compact_state(codec, c, refs, channel)
    if refs.extra:
        state["messages"] = refs.extra
    if folded:
        state[FOLDED] = []
    refs.frozen = True
    more: dict[str, Any] = {}
    if parent_checkpoint_id:
        more["parent"] = parent_checkpoint_id
    run_id = metadata.get("run_id")
    if isinstance(run_id, str):
        more["run_id"] = run_id
    if _plain_json(dict(metadata)):
        more["metadata"] = dict(metadata)
    else:
        more["metadata_blob"] = encode_typed(codec.serde, dict(metadata))
    record = Record(
        id=record_id,
        tenant_id=where.tenant_id,
        session_id=where.session_id,
        agent_id=namespace_agent_id(where.session_id, where.checkpoint_ns),
        parent_id=parent_record_id,
        state=state,
        properties=where.properties(CHECKPOINT, checkpoint["id"], **more),
    )
    # The history's messages were made (and checked) by the codec: not checked again on
    # every put, which would cost the thread's length.
    values = {name: getattr(record, name) for name in _RECORD_FIELDS}
    values["history"] = history
    return builder(Record)(**values), refs


# The checkpoint's fields in ``state["c"]`` under short names (``state["checkpoint"]`` with
# LangGraph's names, as earlier versions wrote it, reads the same): a few hundred bytes a
# step over the three checkpoints of a chat turn.
_SHORT = {"channel_versions": "cv", "versions_seen": "vs", "updated_channels": "uc",
          "channel_values": "cx", "pending_sends": "ps"}  # fmt: skip
_LONG = {v: k for k, v in _SHORT.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


def _ts_micros(ts: object) -> int | None:
    """``ts`` as integer microseconds when it is the UTC ``isoformat()`` they give back."""
    if type(ts) is not str:
        return None
    try:
        at = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if at.utcoffset() != timedelta(0):
        return None
    micros = (at - _EPOCH) // _MICRO
    return micros if _micros_ts(micros) == ts else None


def _micros_ts(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()


def _compact_state(
    codec: MessageCodec, c: dict[str, Any], refs: Refs, channel: str | None
) -> dict[str, Any]:
    """The record state of checkpoint fields ``c`` (its message-list ``channel`` apart):
    short names, ``ts`` as microseconds, no empty ``channel_values``; the history channel
    under ``"h"`` unless it is ``messages`` (``null``: none)."""
    if any(k in _LONG or k == "t" for k in c):  # not a field set this format names
        state: dict[str, Any] = {"checkpoint": codec.encode_value(c, refs)}
        if channel is not None:
            state["channel"] = channel
        return state
    out: dict[str, Any] = {}
    for key, value in c.items():
        if key == "ts":
            micros = _ts_micros(value)
            if micros is not None:
                out["t"] = micros
                continue
        elif key == "channel_values" and value == {}:
            continue
        out[_SHORT.get(key, key)] = value
    state = {"c": codec.encode_value(out, refs)}
    if channel != "messages":
        state["h"] = channel
    return state


def _checkpoint_of_state(
    codec: MessageCodec, state: dict[str, Any], resolve: Resolver
) -> tuple[dict[str, Any], str | None]:
    """The checkpoint fields and history channel a record state holds (either format)."""
    if "c" not in state:
        old: dict[str, Any] = codec.decode_value(state["checkpoint"], resolve)
        return old, state.get("channel")
    fields: dict[str, Any] = codec.decode_value(state["c"], resolve)
    c: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "t":
            c["ts"] = _micros_ts(value)
        else:
            c[_LONG.get(key, key)] = value
    c.setdefault("channel_values", {})
    return c, state.get("h", "messages")


def metadata_of(codec: MessageCodec, record: Record) -> CheckpointMetadata:
    """The LangGraph metadata stored with a checkpoint record."""
    info = lg(record)
    if "metadata_blob" in info:
        value: CheckpointMetadata = decode_typed(codec.serde, info["metadata_blob"])
        return value
    plain: CheckpointMetadata = dict(info.get("metadata") or {})  # type: ignore[assignment]
    return plain


def resolver(codec: MessageCodec, record: Record) -> tuple[list[Any], Resolver]:
    """The LangChain messages of a checkpoint record's history, and the resolver of the
    references its values and writes hold."""
    history = codec.from_history(record.history)
    extra = [codec.decode_value(m) for m in record.state.get("messages") or ()]

    def resolve(ref: list[Any]) -> Any:
        return history[ref[1]] if ref[0] == "h" else extra[ref[1]]

    return history, resolve


def tuple_of(
    codec: MessageCodec, record: Record, writes: Iterable[Record], thread_id: str
) -> CheckpointTuple:
    """The LangGraph checkpoint tuple of a stored record and its pending-write records."""
    info = lg(record)
    history, resolve = resolver(codec, record)
    checkpoint, channel = _checkpoint_of_state(codec, record.state, resolve)
    checkpoint = {"v": checkpoint.pop("v", 1), "id": info["id"], **checkpoint}
    if channel is not None:
        checkpoint["channel_values"] = {**checkpoint["channel_values"], channel: list(history)}
    ns = info["ns"]
    parent = info.get("parent")
    return CheckpointTuple(
        config=_config(thread_id, ns, info["id"]),
        checkpoint=checkpoint,  # type: ignore[arg-type]
        metadata=metadata_of(codec, record),
        parent_config=_config(thread_id, ns, parent) if parent else None,
        pending_writes=fold_writes(
            codec, [*(w.state for w in writes), *(record.state.get(FOLDED) or ())], resolve
        ),
    )


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    return {"configurable": configurable}


def writes_record(
    codec: MessageCodec,
    where: Where,
    *,
    record_id: str,
    checkpoint_id: str,
    n: int,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    refs: Refs | None,
) -> Record:
    """Record ``n`` of the pending writes on checkpoint record ``record_id`` (``refs``: the
    messages that record holds, when known, written as references)."""
    return Record(
        id=writes_record_id(record_id, n),
        tenant_id=where.tenant_id,
        session_id=where.session_id,
        state=writes_state(codec, writes, task_id, task_path, refs),
        properties=where.properties(WRITES, checkpoint_id, n=n),
    )


def writes_state(
    codec: MessageCodec,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    refs: Refs | None,
) -> dict[str, Any]:
    """One ``put_writes`` call as JSON: a write record's state, or an item of a checkpoint
    record's ``state["pw"]``."""
    items = [
        [channel, codec.encode_value(value, refs)]
        if channel not in WRITES_IDX_MAP
        else [channel, codec.encode_value(value, refs), WRITES_IDX_MAP[channel]]
        for channel, value in writes
    ]
    state: dict[str, Any] = {"t": task_id, "w": items}
    if task_path:
        state["p"] = task_path
    return state


def fold_writes(
    codec: MessageCodec, states: Iterable[dict[str, Any]], resolve: Resolver
) -> list[PendingWrite]:
    """The pending writes of a checkpoint (its write records' states in ``n`` order, then
    those in its own record), as LangGraph sees them: first regular write per
    ``(task_id, idx)``, last special one, sorted."""
    kept: dict[tuple[str, int], list[Any]] = {}
    for state in states:
        for item in _write_items(state):
            task_id, idx = item[0], item[2]
            if idx >= 0 and (task_id, idx) in kept:
                continue
            kept[(task_id, idx)] = item
    ordered = sorted(kept.values(), key=lambda i: writes_sort_key(i[3], i[0], i[2]))
    return [(i[0], i[1], codec.decode_value(i[4], resolve)) for i in ordered]


def _write_items(state: dict[str, Any]) -> list[list[Any]]:
    """A write record's writes as ``[task_id, channel, idx, task_path, value]``: the
    record holds the task once and a write's ``idx`` only when it is not its position
    (a special channel's), or (as earlier versions wrote it) every item whole."""
    if "w" not in state:
        return list(state.get("writes") or ())
    task_id, path = state["t"], state.get("p", "")
    return [
        [task_id, item[0], item[2] if len(item) > 2 else idx, path, item[1]]
        for idx, item in enumerate(state["w"])
    ]
