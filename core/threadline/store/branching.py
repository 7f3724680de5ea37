"""Branches of a conversation: fork a session at a message or checkpoint, list its forks.

A fork is an ordinary session of the same tenant, user and agent whose
``metadata["forked_from"]`` records where it came from (``session_id``, ``at``, ``kind``
``"message"`` or ``"checkpoint"``, ``seq`` of the last shared message). Built on the required
hooks only, so every store supports it. The shared messages are given to the fork by the
derived hook ``threadline_fork_messages`` (new ids, derived from the fork's id and the
original's: :func:`threadline.storekit.forks.fork_message_id`; same roles, content, tool
calls, times): the core's default copies them in pages, SQLite and PostgreSQL insert rows
that share the source's stored content in one statement (copy-on-write). A fork at a
checkpoint goes the same way when the source's message log begins with the checkpoint's
history (a graph run's conversation up to it); else it copies the history.
Editing and regenerating (:mod:`threadline.runtime.editing`) keep replaced messages this way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from threadline.errors import NotFoundError, ValidationError
from threadline.ids import IdLike, check_id, new_id, optional_id
from threadline.models import Checkpoint, Message, Session
from threadline.queries import fork_parent
from threadline.storekit.forks import SUMMARY_KEY, copied_id, prompt_id

if TYPE_CHECKING:
    from threadline.store.facade import Store

__all__ = [
    "FORKED_FROM",
    "PAGE",
    "find_message",
    "fork_session",
    "forked_from",
    "list_branches",
    "pop_last",
]

FORKED_FROM = "forked_from"
"""The session metadata key a fork records its origin under."""

PAGE = 500
"""Messages read per batch while looking a message up."""


def forked_from(session: Session) -> dict[str, Any] | None:
    """The origin a fork recorded (``session_id``, ``at``, ``kind``, ``seq``), else ``None``."""
    origin = session.metadata.get(FORKED_FROM)
    return dict(origin) if isinstance(origin, Mapping) else None


async def find_message(store: Store, tenant_id: str, session_id: str, message_id: str) -> Message:
    """The stored message ``message_id`` of the session, read backwards a page at a time
    (the cost follows its distance from the end). :raises NotFoundError: not in the session."""
    before: int | None = None
    while True:
        page = await store.read_messages(
            tenant_id, session_id, before_seq=before, limit=PAGE, newest_first=True
        )
        for message in page:
            if message.id == message_id:
                return message
        if len(page) < PAGE:
            raise NotFoundError(f"no message {message_id} in session {session_id}")
        before = page[-1].seq


async def pop_last(
    store: Store, tenant_id: IdLike, session_id: IdLike, *, round: bool = False
) -> list[Message]:
    """Delete the session's last message, or with ``round=True`` its last round (the last
    user message and everything after it; nothing when no user message is stored).

    One ``delete_messages`` past the point found, so a message appended meanwhile goes too;
    seqs are never reused. Returns the deleted messages, oldest first (empty: nothing went).
    """
    tenant = check_id(tenant_id, "tenant_id")
    sid = check_id(session_id, "session_id")
    if not isinstance(round, bool):
        raise ValidationError(f"round must be a bool, got {round!r}")
    tail: list[Message] = []
    before: int | None = None
    while True:
        page = await store.read_messages(
            tenant, sid, before_seq=before, limit=1 if not round else PAGE, newest_first=True
        )
        for message in page:
            tail.append(message)
            if not round or message.role == "user":
                first = message.seq or 1
                await store.delete_messages(tenant, sid, after_seq=first - 1)
                return tail[::-1]
        if not page or len(page) < PAGE:
            return []
        before = page[-1].seq


async def fork_session(
    store: Store,
    tenant_id: IdLike,
    session_id: IdLike,
    *,
    at: IdLike,
    new_session_id: IdLike | None = None,
    title: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Session:
    """A new session holding ``session_id``'s history up to ``at`` (a message id: that
    message included; a checkpoint id of the session: its history, and the checkpoint
    itself so a graph run resumes there). See :meth:`threadline.Store.fork_session`."""
    tenant = check_id(tenant_id, "tenant_id")
    sid = check_id(session_id, "session_id")
    point = check_id(at, "at")
    target = optional_id(new_session_id, "new_session_id") or new_id()
    if target == sid:
        raise ValidationError("a fork needs a session id of its own")
    source = await store.get_session(tenant, sid)
    if source is None:
        raise NotFoundError(f"no session {sid}")
    checkpoint = await _checkpoint_of(store, tenant, sid, point)
    if checkpoint is None:
        cut = await find_message(store, tenant, sid, point)
        origin = {"session_id": sid, "at": point, "kind": "message", "seq": cut.seq}
    else:
        cut = None
        origin = {"session_id": sid, "at": point, "kind": "checkpoint", "seq": None}
    fork = await store.create_session(
        Session(
            id=target,
            tenant_id=tenant,
            user_id=source.user_id,
            agent_id=source.agent_id,
            title=source.title if title is None else title,
            metadata={**source.metadata, **(metadata or {}), FORKED_FROM: origin},
        )
    )
    if forked_from(fork) != origin:
        raise ValidationError(f"session {target} exists already and is not this fork")
    if cut is not None:
        await store._write(
            "threadline_fork_messages",
            tenant_id=tenant,
            session_id=sid,
            fork_id=fork.id,
            last_seq=cut.seq or 0,
        )
    elif checkpoint is not None:
        await _fork_checkpoint(store, checkpoint, fork.id)
    return fork


async def list_branches(store: Store, tenant_id: IdLike, session_id: IdLike) -> list[Session]:
    """The sessions forked from ``session_id``, oldest first: an indexed lookup
    (``list_sessions(forked_from=...)``), its forks only, a page at a time."""
    tenant = check_id(tenant_id, "tenant_id")
    sid = check_id(session_id, "session_id")
    source = await store.get_session(tenant, sid)
    if source is None:
        raise NotFoundError(f"no session {sid}")
    found = [
        s
        async for s in store.iter_sessions(tenant, forked_from=sid)
        if fork_parent(s.metadata) == sid
    ]
    return sorted(found, key=lambda s: (s.created_at, s.id))


async def _checkpoint_of(store: Store, tenant: str, sid: str, point: str) -> Checkpoint | None:
    checkpoint = await store.get_checkpoint(tenant, point)
    if checkpoint is None:
        return None
    if checkpoint.session_id != sid:
        raise NotFoundError(f"checkpoint {point} is not in session {sid}")
    return checkpoint


def _copies(history: Sequence[Message], fork_id: str) -> tuple[Message, ...]:
    """The fork's copies of ``history``, unsaved, no seq: the ids
    :func:`~threadline.storekit.forks.fork_message_id` derives (so a retry saves each once,
    whether the store shared or copied them)."""
    prompts: dict[str, str] = {}  # fork_message_id's rule, each session's prompt id once

    def renamed(m: Message) -> str:
        if m.session_id not in prompts:
            prompts[m.session_id] = prompt_id(m.session_id)
        if m.id == prompts[m.session_id]:
            return prompt_id(fork_id)
        return copied_id(fork_id, m.id)

    return tuple(attrs.evolve(m, session_id=fork_id, id=renamed(m), seq=None) for m in history)


_COMPARED = (
    "id",
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "name",
    "status",
    "user_id",
    "agent_id",
    "metadata",
)
"""What must be equal for a stored message to be a history message (its seq, session and
time may differ: a fork's are its own)."""


def _kept(message: Message) -> tuple[object, ...]:
    return (
        message.id,
        message.role,
        message.content,
        message.tool_calls,
        message.tool_call_id,
        message.name,
        message.status,
        message.user_id,
        message.agent_id,
        message.metadata,
    )


def _stored(row: tuple[Any, ...]) -> tuple[object, ...]:
    """A ``read_message_rows`` row of ``("seq", *_COMPARED)`` as :func:`_kept` gives a
    message: the metadata as a dict (a row holds ``None`` when empty, else the dict or its
    JSON text)."""
    metadata = row[-1]
    if metadata is None:
        metadata = {}
    elif isinstance(metadata, (str, bytes)):
        metadata = json.loads(metadata)
    return (*row[1:-1], metadata)


async def _prefix_seq(
    store: Store, tenant: str, sid: str, history: Sequence[Message]
) -> int | None:
    """The seq of the last of ``history`` in ``sid``'s stored messages when they begin with
    it (the same :data:`_COMPARED` values, in seq order), else ``None``. Rows of only those
    fields (no message built), a page at a time, stopping at the first difference."""
    after, done = 0, 0
    while done < len(history):
        page = await store.read_message_rows(
            tenant,
            sid,
            ("seq", *_COMPARED),
            after_seq=after,
            limit=min(PAGE, len(history) - done),
        )
        if not page:
            return None
        for row in page:
            if _stored(row) != _kept(history[done]):
                return None
            done += 1
        after = page[-1][0] or 0
    return after


async def _fork_checkpoint(store: Store, checkpoint: Checkpoint, fork_id: str) -> None:
    """Give the fork the checkpoint's history and a copy of the checkpoint.

    When the source's message log begins with that history (a graph run's conversation,
    :mod:`threadline.graph.messages`, up to this checkpoint), the fork's messages come from
    ``threadline_fork_messages`` (SQLite and PostgreSQL share the bytes); otherwise (a
    rollback or an edited history since, a later run, a summary in the history, a fork
    already holding messages: a retry) they are copied from the history. Either way their
    ids are :func:`~threadline.storekit.forks.fork_message_id`'s, so the checkpoint's copy
    names them and a retry adds nothing.
    """
    tenant, sid = checkpoint.tenant_id, checkpoint.session_id
    history = checkpoint.history
    shareable = (
        bool(history)
        and not any(SUMMARY_KEY in m.metadata for m in history)  # the fork renames those
        and not await store.read_messages(tenant, fork_id, limit=1)
    )
    last = await _prefix_seq(store, tenant, sid, history) if shareable else None
    if last is not None:
        await store._write(
            "threadline_fork_messages",
            tenant_id=tenant,
            session_id=sid,
            fork_id=fork_id,
            last_seq=last,
        )
        # A writer may have changed the source between the check and the fork (the fork,
        # one transaction, holds what the source held then): read it again, copy if so.
        if await _prefix_seq(store, tenant, sid, history) != last:
            await store.delete_messages(tenant, fork_id, after_seq=0)
            last = None
    await _copy_checkpoint(store, checkpoint, fork_id, filled=last is not None)


async def _copy_checkpoint(
    store: Store, checkpoint: Checkpoint, fork_id: str, *, filled: bool = False
) -> None:
    history = _copies(checkpoint.history, fork_id)
    if not filled:
        done = {m.id for m in await store.get_messages(checkpoint.tenant_id, fork_id)}
        if any(m.id not in done for m in history):
            await store.save_messages([m for m in history if m.id not in done])
    copy_id = copied_id(fork_id, checkpoint.id)
    if await store.get_checkpoint(checkpoint.tenant_id, copy_id) is not None:
        return
    await store.create_checkpoint(
        attrs.evolve(
            checkpoint,
            session_id=fork_id,
            history=history,
            parent_id=None,
            version=None,
            id=copy_id,
        )
    )
