"""Retention hooks: erase a user, prune checkpoints, delete idle sessions (all derived)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from threadline.hookspecs.markers import hookspec


@hookspec
def threadline_erase_user(tenant_id: str, user_id: str, dry_run: bool) -> Mapping[str, int] | None:
    """Erase everything a user owns in one tenant (a right-to-erasure request).

    Tier: derived (default: sessions, messages, API calls and the erase-rewrite plan over
    the record hooks; not one transaction).

    Deletes the user's sessions with their messages, API calls and checkpoints. Rows
    carrying the ``user_id`` in *other* users' sessions of the tenant go as well:

    - messages are redacted in place with :func:`threadline.storekit.erasure.redact`:
      ``content`` ``""``, ``tool_calls`` ``()``, ``metadata`` ``{}``, ``name`` and
      ``user_id`` ``None``; ``id``, ``role``, ``seq``, ``status`` and ``tool_call_id``
      are kept, so seqs stay contiguous, counts stay true and a tool result still pairs
      with its call;
    - API calls with that ``user_id`` are deleted;
    - checkpoint histories are redacted the same way: every checkpoint that held one
      of the user's messages reads back with the same history, the user's messages
      redacted (stores with incremental records rewrite only the records holding them,
      see :func:`threadline.storekit.erasure.redact_record`). A checkpoint's ``input`` and
      ``state`` are the run's own values and are left as they are.

    Everything happens in one transaction where the store has them. Other tenants, and
    other users' own rows, keep everything. A second run finds nothing (redacted
    messages no longer carry the ``user_id``). A graph run still going in another
    process holds its history in memory and may write it again with its next checkpoint:
    erase a user once their runs have stopped.

    :param tenant_id: the tenant the user belongs to.
    :param user_id: the user whose sessions go and whose messages elsewhere are redacted.
    :param dry_run: count what would go and change nothing.
    :return: how many rows of each kind went (or would go): ``sessions``, ``messages``
        (in the user's sessions), ``messages_redacted`` (in other users' sessions),
        ``api_calls`` (in the user's sessions and elsewhere), ``checkpoints`` (in the
        user's sessions) and ``checkpoints_redacted`` (checkpoints of other users'
        sessions whose history held the user's messages).
    :raises StoreError: the checkpoint's chain has no snapshot (a damaged store).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_prune_checkpoints(
    tenant_id: str, session_id: str, keep: int, dry_run: bool
) -> int | None:
    """Delete a session's older checkpoints, keeping the newest ``keep`` versions whole.

    Tier: derived (default: the prune plan + ``rewrite_checkpoint_records``).

    Every kept checkpoint reads back exactly as before: one stored as a delta on a
    checkpoint that goes is rewritten first as a snapshot of its history (its
    ``parent_id`` stays as recorded). The latest checkpoint (a tombstone included) is
    always kept. Other sessions and tenants are never touched. Housekeeping, not
    activity: the session's ``updated_at`` stays as it is.

    :param tenant_id: the caller's tenant.
    :param session_id: the session whose checkpoints are pruned.
    :param keep: how many of the newest versions to keep (at least 1).
    :param dry_run: count what would go and delete nothing.
    :return: how many checkpoints went (or would go); 0 for an unknown session.
    :raises StoreError: the checkpoint's chain has no snapshot (a damaged store).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_delete_sessions_before(
    tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
) -> int | None:
    """Delete a tenant's sessions last updated before a moment, with everything in them.

    Tier: derived (default: ``list_sessions`` pages + ``delete_session``).

    ``updated_at`` is the session's last activity (any write that belongs to it,
    checkpoints and API calls included), so a session written to inside the window stays.

    :param tenant_id: the caller's tenant.
    :param before: sessions whose ``updated_at`` is earlier than this (aware) moment go.
    :param user_id: only this user's sessions when given.
    :param dry_run: count what would go and delete nothing.
    :return: how many sessions went (or would go).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """
