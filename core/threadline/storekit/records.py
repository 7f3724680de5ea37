"""The record a store keeps for a checkpoint, the plan that rewrites a session's records,
and the error of a stale parent tag or plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs

from threadline.errors import ConflictError
from threadline.models import Checkpoint, builder

__all__ = [
    "CheckpointRecord",
    "RecordRewrite",
    "StaleRecordError",
    "ancestor",
    "id_conflict",
]


@attrs.frozen
class CheckpointRecord:
    """A checkpoint as a store keeps it: its fields, and its history as one encoded record.

    ``checkpoint.history`` is empty; ``record`` is the history record of
    :mod:`threadline.storekit.delta` (a snapshot, or a delta on ``checkpoint.parent_id``),
    ``depth`` its links from the chain's snapshot and ``tag`` its write tag.
    """

    checkpoint: Checkpoint
    record: str
    depth: int
    tag: int

    @property
    def id(self) -> str:
        return self.checkpoint.id

    @property
    def parent_id(self) -> str | None:
        return self.checkpoint.parent_id


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ANCESTOR_DEFAULTS = {
    "agent_id": None,
    "node_id": None,
    "input": None,
    "input_type": None,
    "history": (),
    "tombstone": False,
    "version": None,
}


def ancestor(
    checkpoint_id: str,
    parent_id: str | None,
    tenant_id: str,
    session_id: str,
    record: str,
    depth: int,
    tag: int,
) -> CheckpointRecord:
    """A chain's ancestor as the log reads it: only its ids, record, depth and tag are
    real (the other checkpoint fields are placeholders), so a store skips decoding them."""
    values: list[Any] = list(_ANCESTOR_VALUES)
    values[_AT_ID], values[_AT_PARENT] = checkpoint_id, parent_id
    values[_AT_TENANT], values[_AT_SESSION] = tenant_id, session_id
    values[_AT_STATE], values[_AT_PROPERTIES] = {}, {}
    out = _new(CheckpointRecord)  # a chain has up to SNAPSHOT_EVERY of them: no kwargs,
    _set_checkpoint(out, _build_checkpoint(*values))  # no attrs __init__ (~4x faster)
    _set_record(out, record)
    _set_depth(out, depth)
    _set_tag(out, tag)
    return out


_build_checkpoint = builder(Checkpoint)
_FIELDS = [f.name for f in attrs.fields(Checkpoint)]
_ANCESTOR_VALUES = tuple(
    _ANCESTOR_DEFAULTS.get(name, _EPOCH if name == "created_at" else None) for name in _FIELDS
)
_AT_ID, _AT_PARENT = _FIELDS.index("id"), _FIELDS.index("parent_id")
_AT_TENANT, _AT_SESSION = _FIELDS.index("tenant_id"), _FIELDS.index("session_id")
_AT_STATE, _AT_PROPERTIES = _FIELDS.index("state"), _FIELDS.index("properties")
_new = object.__new__
_set_checkpoint, _set_record, _set_depth, _set_tag = (
    CheckpointRecord.__dict__[name].__set__ for name in ("checkpoint", "record", "depth", "tag")
)


class StaleRecordError(ConflictError):
    """A record a write was planned on changed meanwhile (a delta's parent rewritten, or a
    session's records added, rewritten or deleted under a prune or erase plan): plan again."""


@attrs.frozen
class RecordRewrite:
    """A prune or erase plan for one session's checkpoint records, applied whole by
    ``threadline_rewrite_checkpoint_records`` or refused when it is stale."""

    records: Sequence[CheckpointRecord] = ()
    """Records with their new ``record``, ``depth`` and ``tag``, matched by id."""
    delete_ids: Sequence[str] = ()
    """Checkpoints to delete."""
    expected_tags: Mapping[str, int] = attrs.field(factory=dict)
    """The write tag of every record of the session the plan read, by checkpoint id."""

    def check(self, stored_tags: Mapping[str, int], session_id: str) -> None:
        """Refuse the plan (:class:`StaleRecordError`) unless the session's records, by id
        and tag, are exactly those it was made from."""
        if dict(stored_tags) != dict(self.expected_tags):
            raise StaleRecordError(f"session {session_id}'s checkpoints changed meanwhile")


def id_conflict(kind: str, record_id: str) -> ConflictError:
    """The one neutral answer to an id held elsewhere (another session or tenant): it says
    nothing of who holds it, so a caller cannot probe other tenants' ids."""
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")
