"""Checkpoint hooks: the record primitives a store keeps, and the derived checkpoint API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    from threadline.models import Checkpoint
    from threadline.storekit.records import CheckpointRecord, RecordRewrite


@hookspec
def threadline_insert_checkpoint_record(
    record: CheckpointRecord, parent_tag: int | None
) -> CheckpointRecord | None:
    """Insert a checkpoint record, assigning the next per-session ``version`` atomically.

    Tier: required. The derived ``create_checkpoint`` encodes the history
    (:mod:`threadline.storekit.log`); the store only keeps the record. When
    ``record.checkpoint.id`` is stored already the stored record comes back unchanged
    (the core compares it with the retry). Moves the session's ``updated_at`` to now.

    :param record: the checkpoint (``history`` empty, ``version`` ignored), its encoded
        history record, depth and write tag.
    :param parent_tag: the write tag of the parent's record the delta was computed
        against (``None`` without a parent).
    :return: the stored record with its ``version``.
    :raises NotFoundError: the session, or the parent in this session, does not exist.
    :raises StaleRecordError: the parent's record no longer carries ``parent_tag``
        (rewritten meanwhile); nothing is stored and the core computes the delta again.
    :raises ConflictError: the id is stored in another session (of this tenant or another:
        the neutral id-conflict message).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_read_checkpoint_records(
    tenant_id: str, checkpoint_id: str, chain: bool
) -> Sequence[CheckpointRecord] | None:
    """Read a checkpoint's record, and with ``chain`` its ancestors back to a snapshot.

    Tier: required. SQL stores answer the chain with one recursive query. An ancestor
    (every record after the first) needs only its ``id``, ``parent_id``, ``tenant_id``,
    ``session_id``, ``record``, ``depth`` and ``tag``: a store may skip decoding its other
    fields (:func:`threadline.storekit.records.ancestor` builds one).

    :param tenant_id: the caller's tenant.
    :param checkpoint_id: the checkpoint.
    :param chain: also every record the checkpoint's history builds on (``depth`` links).
    :return: the record first, then its parent's, ... (empty when there is none).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_checkpoint_records(
    tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
) -> Sequence[CheckpointRecord] | None:
    """List checkpoint records by ascending version (sessions in creation order, then id).

    Tier: required. With ``latest`` it answers a restore in one call: the record with the
    highest version, then its chain as ``read_checkpoint_records`` gives it (ancestors
    need only their ids, record, depth and tag).

    :param tenant_id: the caller's tenant.
    :param session_id: only this session's records when given.
    :param agent_id: only this agent's records when given.
    :param latest: the record with the highest version followed by its ancestors back to
        its snapshot, head first (``session_id`` is given then).
    :return: the records (empty for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_rewrite_checkpoint_records(
    tenant_id: str, session_id: str, plan: RecordRewrite
) -> int | None:
    """Replace some records' history, depth and tag, and delete others, in one transaction,
    if the session's records are still those the plan was made from.

    Tier: required. The derived ``prune_checkpoints`` and ``erase_user`` plan the
    rewrite (:mod:`threadline.storekit.log`) from the session's records as they read them;
    the store applies it whole, or refuses it when a record was added, rewritten or
    deleted since (the core plans again). Housekeeping: ``updated_at`` stays.

    :param tenant_id: the caller's tenant.
    :param session_id: the session every record belongs to.
    :param plan: ``records`` with their new ``record``, ``depth`` and ``tag`` (by id),
        ``delete_ids`` to delete, and ``expected_tags``: the write tag of every record of the
        session the plan read, by id; the session's records must be exactly these, with these
        tags (``plan.check(stored_tags, session_id)`` raises the error).
    :return: how many records were rewritten or deleted.
    :raises NotFoundError: the session does not exist for this tenant (nothing changes).
    :raises StaleRecordError: the session's records differ from ``plan.expected_tags`` (nothing
        changes).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_create_checkpoint(checkpoint: Checkpoint) -> Checkpoint | None:
    """Store a checkpoint, assigning the next per-session ``version`` atomically.

    Tier: derived (default: the store kit's checkpoint log over ``insert_checkpoint_record``).

    Every write that belongs to a session is activity, and a checkpoint (a tombstone or a
    rollback too) is one: the session's ``updated_at`` moves to now, never back, in the
    same transaction where the store has one, so ``list_sessions`` and
    ``delete_sessions_before`` see a running graph as active. A checkpoint needs its
    session row: none exists outside one.

    :param checkpoint: the checkpoint; its ``version`` is ignored.
    :return: the stored checkpoint with its ``version``.
    :raises NotFoundError: the session does not exist for this tenant.
    :raises ConflictError: the id is already stored with different content, or by
        another tenant (the same neutral message either way).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreError: the checkpoint's chain has no snapshot (a damaged store).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_get_checkpoint(tenant_id: str, checkpoint_id: str) -> Checkpoint | None:
    """Read one checkpoint with its whole history.

    Tier: derived (default: ``read_checkpoint_records`` chain).

    :param tenant_id: the caller's tenant.
    :param checkpoint_id: the checkpoint.
    :return: the checkpoint, or ``None``.
    :raises StoreError: the checkpoint's chain has no snapshot (a damaged store).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_checkpoints(
    tenant_id: str, session_id: str | None, agent_id: str | None
) -> Sequence[Checkpoint] | None:
    """List checkpoints by ascending version (sessions by ``created_at``, then ``id``).

    Tier: derived (default: ``list_checkpoint_records``, histories decoded once per record).

    :param tenant_id: the caller's tenant.
    :param session_id: only this session's checkpoints when given.
    :param agent_id: only this agent's checkpoints when given.
    :return: the checkpoints, with their histories.
    :raises StoreError: the checkpoint's chain has no snapshot (a damaged store).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_get_latest_checkpoint(
    tenant_id: str, session_id: str, agent_id: str | None
) -> Checkpoint | None:
    """Read the checkpoint with the highest version in a session (tombstones included).

    Tier: derived (default: one ``list_checkpoint_records(latest=True)``, the history
    rebuilt without holding the event loop).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param agent_id: only this agent's checkpoints when given.
    :return: the latest checkpoint, or ``None``.
    :raises StoreError: the checkpoint's chain has no snapshot (a damaged store).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_read_checkpoint_head(
    tenant_id: str, checkpoint_id: str | None, session_id: str | None, agent_id: str | None
) -> CheckpointRecord | None:
    """Read the record a chain read would start with, alone: the named checkpoint's, or the
    session's latest (of ``agent_id`` when given).

    Tier: shortcut (optional: the core takes it when the store has it). A restore whose head
    the store's history cache holds by its write tag then costs one indexed row instead of
    its chain (up to ``SNAPSHOT_EVERY`` rows, a snapshot among them); the chain is read only
    when the cache misses (:func:`threadline.storekit.log.read_chain`). A blocking store
    (:class:`~threadline.storekit.sync.SyncStore`) writes it as a plain method: the core
    runs it and the chain read in one hand-off.

    :param tenant_id: the caller's tenant.
    :param checkpoint_id: the checkpoint; ``None`` for the session's latest.
    :param session_id: the session whose latest record is asked (``checkpoint_id`` is None).
    :param agent_id: only this agent's records, for the latest.
    :return: the record with every field, or ``None`` (no such checkpoint or session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_append_checkpoint_state(
    tenant_id: str, checkpoint_id: str, key: str, item: object
) -> bool | None:
    """Append ``item`` to the list ``state[key]`` of a stored checkpoint, in one transaction
    committed before it returns; the record's history and write tag stay as they are.

    Tier: shortcut (optional). LangGraph's saver keeps a checkpoint's pending writes in the
    checkpoint's own record on a store that has it (one row a checkpoint, not one more per
    ``put_writes``), and writes records of their own elsewhere. Not activity: the
    checkpoint's insert moved ``updated_at`` just before.

    :param tenant_id: the caller's tenant.
    :param checkpoint_id: the checkpoint.
    :param key: the state key, an identifier (``str.isidentifier()``).
    :param item: a JSON value.
    :return: ``True`` when appended; ``False`` when there is no such checkpoint for this
        tenant or its state has no list ``key`` (nothing changes).
    :raises ValidationError: ``key`` is not an identifier, or ``item`` is not JSON (nothing
        changes).
    :raises StoreUnavailableError: the backend cannot be reached (whether it was appended is
        unknown: appending is not retried).
    """
