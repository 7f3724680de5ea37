"""The record a store keeps for a checkpoint, and the error of a stale parent tag."""

from __future__ import annotations

import attrs

from threadline.errors import ConflictError
from threadline.models import Checkpoint

__all__ = ["CheckpointRecord", "StaleRecordError", "id_conflict"]


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


class StaleRecordError(ConflictError):
    """A delta's parent record was rewritten after the delta was computed: compute it again."""


def id_conflict(kind: str, record_id: str) -> ConflictError:
    """The one neutral answer to an id held elsewhere (another session or tenant): it says
    nothing of who holds it, so a caller cannot probe other tenants' ids."""
    return ConflictError(f"{kind} id {record_id} cannot be used here: use a new id")
