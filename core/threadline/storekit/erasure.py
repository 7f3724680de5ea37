"""What erasing a user does to a stored message: one definition every store applies.

A right-to-erasure request (:meth:`threadline.Store.erase_user`) deletes the user's own
sessions. The user's messages in *other* users' sessions cannot simply go: seqs must
stay contiguous and a tool result must still pair with its call. So they are
**redacted**: :func:`redact` empties what the user wrote and drops who wrote it, and
keeps the message's place in the conversation.

Checkpoint histories hold copies of messages, so they are redacted the same way: a
checkpoint of another user's run that held the erased user's messages restores to the
same history with those messages redacted, exactly as the session's message table
shows them. Stores that keep histories as incremental records
(:mod:`threadline.storekit.delta`) rewrite only the records holding such messages,
with :func:`redact_record`; positions do not move, so every delta on a rewritten record
stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from threadline.models import Message
from threadline.storekit.delta import EncodedHistory, encode_items, encoded_record

__all__ = ["redact", "redact_history", "redact_record"]


def redact(message: Message) -> Message:
    """``message`` with what its user wrote removed: empty content, no tool calls or metadata,
    no name and no ``user_id`` (so a second erasure finds nothing); ``id``, ``role``,
    ``seq``, ``status``, ``tool_call_id``, ``agent_id`` and ``created_at`` are kept."""
    return attrs.evolve(message, content="", tool_calls=(), metadata={}, name=None, user_id=None)


def redact_history(history: Sequence[Message], user_id: str) -> tuple[tuple[Message, ...], int]:
    """``history`` with ``user_id``'s messages redacted, and how many were."""
    out = tuple(redact(m) if m.user_id == user_id else m for m in history)
    return out, sum(m.user_id == user_id for m in history)


def redact_record(
    history: Sequence[Message],
    keep: int | None,
    user_id: str,
    *,
    tenant_id: str,
    session_id: str,
    depth: int = 0,
) -> EncodedHistory | None:
    """The checkpoint record for ``history`` with ``user_id``'s messages redacted.

    :param history: the checkpoint's logical history as stored (not yet redacted).
    :param keep: the record's ``keep`` (messages it takes from its parent), ``None``
        for a snapshot (or any record a store holds whole).
    :param user_id: the user being erased.
    :param tenant_id: the checkpoint's tenant.
    :param session_id: the checkpoint's session.
    :param depth: the record's depth as stored (unchanged by the rewrite).
    :return: the new record, the same kind with the same ``keep`` (so its depth, and
        every delta on it, stay valid); ``None`` when the record's own messages hold
        none of the user's and it needs no rewrite.

    Items are encoded after the *redacted* message before them, which is what a
    reader decodes them after once the parent is rewritten too: the parent's record
    is rewritten in the same erasure when it holds one of the user's messages.
    """
    start = keep or 0
    own, count = redact_history(history[start:], user_id)
    if not count:
        return None
    previous = redact_history(history[start - 1 : start], user_id)[0][0] if start else None
    items = encode_items(own, tenant_id=tenant_id, session_id=session_id, previous=previous)
    return encoded_record(items, keep, depth)
