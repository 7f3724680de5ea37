"""The record a store keeps for a checkpoint, and the error of a stale parent tag."""

from __future__ import annotations

from datetime import datetime, timezone

import attrs

from threadline.errors import ConflictError
from threadline.models import Checkpoint, builder

__all__ = ["CheckpointRecord", "StaleRecordError", "ancestor", "id_conflict"]


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
    checkpoint = _build_checkpoint(
        id=checkpoint_id,
        parent_id=parent_id,
        tenant_id=tenant_id,
        session_id=session_id,
        state={},
        properties={},
        created_at=_EPOCH,
        **_ANCESTOR_DEFAULTS,
    )
    return CheckpointRecord(checkpoint, record, depth, tag)


_build_checkpoint = builder(Checkpoint)


class StaleRecordError(ConflictError):
    """A record a write was planned on changed meanwhile (a delta's parent rewritten, or a
    session's records added, rewritten or deleted under a prune or erase plan): plan again."""


def id_conflict(kind: str, record_id: str) -> ConflictError:
    """The one neutral answer to an id held elsewhere (another session or tenant): it says
    nothing of who holds it, so a caller cannot probe other tenants' ids."""
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")
