"""One LangGraph checkpoint as one threadline checkpoint record, and pending writes as more.

A LangGraph checkpoint becomes a :class:`threadline.models.Checkpoint` of the thread's
session. Its message-list channel is the record's ``history`` (a delta on an earlier
record's, see :mod:`threadline_langgraph.messages`); the rest of the checkpoint (the other
channel values, ``channel_versions``, ``versions_seen``, ...) is ``state["checkpoint"]``
as JSON where a value is plain JSON, else through LangGraph's serializer (typed bytes as
base64), so ``Send`` packets, interrupts and any value the serializer takes round-trip
exactly. A message held elsewhere in the checkpoint (the graph input in ``__start__``) is
stored once in ``state["messages"]`` and referred to. The checkpoint metadata is
``properties["langgraph"]["metadata"]``: JSON, shown by ``threadline checkpoints``.

Pending writes are records of their own, not a rewrite of the checkpoint's: a threadline
checkpoint cannot be changed through the store facade, and a record per ``put_writes``
call works on every store, third-party ones included, with nothing but
``create_checkpoint`` and ``get_checkpoint``. The ``n``-th call on a checkpoint writes
record ``n`` (an id derived from the checkpoint's,
:func:`~threadline_langgraph.ids.writes_record_id`), so a checkpoint's writes are a few
indexed reads whatever the thread's length, and two writers racing for ``n`` are told
apart by the store (one gets a conflict and takes ``n + 1``). A written message the
checkpoint already holds (the input a ``__start__`` task writes) is a reference into the
checkpoint's record, which was stored first. Reading folds the records as LangGraph's
savers do: a regular write of a ``(task_id, idx)`` already written is ignored, a special
one (error, interrupt, resume) replaces the earlier, in ``writes_sort_key`` order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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
]

CHECKPOINT = "checkpoint"
WRITES = "writes"
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
        info = {"kind": kind, "ns": self.checkpoint_ns, "id": checkpoint_id}
        return {"langgraph": {**info, "gen": self.generation, **more}}


def lg(record: Record) -> dict[str, Any]:
    """The LangGraph part of a record's properties (``{}`` for a record of another kind)."""
    value = record.properties.get("langgraph")
    return value if isinstance(value, dict) else {}


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
) -> tuple[Record, Refs]:
    """The threadline record of a LangGraph checkpoint, and the messages it holds."""
    c: dict[str, Any] = dict(checkpoint)
    c.pop("id")
    values, channel = stored_values(checkpoint)
    messages = values.pop(channel) if channel is not None else []
    c.pop("channel_values", None)
    refs = Refs(messages)
    history = codec.to_history(
        messages, tenant_id=where.tenant_id, session_id=where.session_id, user_id=where.user_id
    )
    c["channel_values"] = values
    state: dict[str, Any] = {"checkpoint": codec.encode_value(c, refs)}
    if channel is not None:
        state["channel"] = channel
    if refs.extra:
        state["messages"] = refs.extra
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
    checkpoint: dict[str, Any] = codec.decode_value(record.state["checkpoint"], resolve)
    checkpoint = {"v": checkpoint.pop("v", 1), "id": info["id"], **checkpoint}
    channel = record.state.get("channel")
    if channel is not None:
        checkpoint["channel_values"] = {**checkpoint["channel_values"], channel: list(history)}
    ns = info["ns"]
    parent = info.get("parent")
    return CheckpointTuple(
        config=_config(thread_id, ns, info["id"]),
        checkpoint=checkpoint,  # type: ignore[arg-type]
        metadata=metadata_of(codec, record),
        parent_config=_config(thread_id, ns, parent) if parent else None,
        pending_writes=fold_writes(codec, writes, resolve),
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
    items = [
        [task_id, channel, WRITES_IDX_MAP.get(channel, idx), task_path,
         codec.encode_value(value, refs)]
        for idx, (channel, value) in enumerate(writes)
    ]  # fmt: skip
    return Record(
        id=writes_record_id(record_id, n),
        tenant_id=where.tenant_id,
        session_id=where.session_id,
        state={"writes": items},
        properties=where.properties(WRITES, checkpoint_id, n=n),
    )


def fold_writes(
    codec: MessageCodec, records: Iterable[Record], resolve: Resolver
) -> list[PendingWrite]:
    """The pending writes of a checkpoint's write records (in ``n`` order), as LangGraph
    sees them: first regular write per ``(task_id, idx)``, last special one, sorted."""
    kept: dict[tuple[str, int], list[Any]] = {}
    for record in records:
        for item in record.state.get("writes") or ():
            task_id, idx = item[0], item[2]
            if idx >= 0 and (task_id, idx) in kept:
                continue
            kept[(task_id, idx)] = item
    ordered = sorted(kept.values(), key=lambda i: writes_sort_key(i[3], i[0], i[2]))
    return [(i[0], i[1], codec.decode_value(i[4], resolve)) for i in ordered]
