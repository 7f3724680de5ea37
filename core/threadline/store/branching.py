"""Branches of a conversation: fork a session at a message or checkpoint, list its forks.

A fork is an ordinary session of the same tenant, user and agent whose
``metadata["forked_from"]`` records where it came from (``session_id``, ``at``, ``kind``
``"message"`` or ``"checkpoint"``, ``seq`` of the last shared message). Built on the required
hooks only, so every store supports it: the shared messages are copied (new ids, derived
from the fork's id and the original's; same roles, content, tool calls, times), in pages.
Editing and regenerating (:mod:`threadline.runtime.editing`) keep replaced messages this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from threadline.errors import NotFoundError, ValidationError
from threadline.ids import IdLike, check_id, new_id, optional_id
from threadline.models import Checkpoint, Message, Session, trusted
from threadline.queries import fork_parent

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

COPY_PAGE = 1000
"""Messages read and copied per batch while forking."""


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
        await _copy_messages(store, tenant, sid, fork.id, cut.seq or 0)
    elif checkpoint is not None:
        await _copy_checkpoint(store, checkpoint, fork.id)
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


def _prompt_id(session_id: str) -> str:
    # The id an Agent gives a session's system prompt (runtime.agent._system_message_id).
    return str(uuid.uuid5(uuid.UUID(session_id), "threadline:system-prompt"))


def _copy_id(fork_id: str, original: Message | Checkpoint) -> str:
    # Deterministic: retrying a fork that stopped half-way saves each copy once; an agent's
    # system prompt keeps the agent's id for it, so an agent opening the fork adds no other.
    if isinstance(original, Message) and original.id == _prompt_id(original.session_id):
        return _prompt_id(fork_id)
    return _copied_id(fork_id, original.id)


def _copied_id(fork_id: str, original_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"threadline:fork:{fork_id}:{original_id}"))


def _copy(message: Message, fork_id: str) -> Message:
    return attrs.evolve(message, session_id=fork_id, id=_copy_id(fork_id, message), seq=None)


_MESSAGE_FIELDS = tuple(f.name for f in attrs.fields(Message))


def _copier(source_id: str, fork_id: str) -> Callable[[Message], Message]:
    """:func:`_copy` for the messages of one source, without validating again what the
    store gave back (and the system prompt's ids computed once)."""
    prompt, fork_prompt = _prompt_id(source_id), _prompt_id(fork_id)

    def copy(message: Message) -> Message:
        values = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
        values["session_id"], values["seq"] = fork_id, None
        values["id"] = fork_prompt if message.id == prompt else _copied_id(fork_id, message.id)
        return trusted(Message, **values)

    return copy


def _summary_copy(copy: Message, seqs: dict[int, int]) -> Message:
    """``copy`` of a compaction summary with the seqs it covers (and the previous summary
    it names) turned into the fork's: ``seqs`` maps the source's seqs to the copies'
    (the fork numbers its messages afresh, so a source with gaps has other seqs)."""
    from threadline.runtime.compaction import SUMMARY_KEY, summary_range

    covered = summary_range(copy)
    if covered is None:
        return copy
    first, last = covered
    inside = [new for old, new in seqs.items() if old <= last]
    new_last = max(inside, default=0)
    new_first = min((new for old, new in seqs.items() if first <= old <= last), default=new_last)
    info = {**copy.metadata[SUMMARY_KEY], "first_seq": new_first, "last_seq": new_last}
    if isinstance(info.get("previous"), str):
        info["previous"] = _copied_id(copy.session_id, info["previous"])
    return attrs.evolve(copy, metadata={**copy.metadata, SUMMARY_KEY: info})


async def _copy_messages(store: Store, tenant: str, sid: str, fork_id: str, last: int) -> None:
    """Copy the source's messages up to seq ``last`` into the fork, ``COPY_PAGE`` at a
    time; the next page is read while the copies of this one are written."""
    from threadline.runtime.compaction import summary_range

    # A retry finds the copies a stopped fork saved (by their derived ids) and their seqs.
    done = {m.id: m.seq or 0 for m in await store.get_messages(tenant, fork_id)}
    seqs: dict[int, int] = {}  # a source message's seq -> its copy's
    copy_of = _copier(sid, fork_id)

    def read(after: int) -> asyncio.Task[list[Message]]:
        return asyncio.ensure_future(
            store.read_messages(tenant, sid, after_seq=after, before_seq=last + 1, limit=COPY_PAGE)
        )

    reading = read(0)
    try:
        while True:
            page = await reading
            if len(page) == COPY_PAGE:
                reading = read(page[-1].seq or 0)
            batch: list[tuple[int, Message]] = []
            for message in page:
                copy = copy_of(message)
                if copy.id in done:
                    seqs[message.seq or 0] = done[copy.id]
                elif summary_range(copy) is not None:
                    # A summary names seqs: the copies of what it covers are saved first.
                    await _save_copies(store, batch, seqs)
                    batch = [(message.seq or 0, _summary_copy(copy, seqs))]
                    await _save_copies(store, batch, seqs)
                    batch = []
                else:
                    batch.append((message.seq or 0, copy))
            await _save_copies(store, batch, seqs)
            if len(page) < COPY_PAGE:
                return
    finally:
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading


async def _save_copies(
    store: Store, batch: list[tuple[int, Message]], seqs: dict[int, int]
) -> None:
    if batch:
        saved = await store.save_messages([copy for _, copy in batch])
        seqs.update((old, stored.seq or 0) for (old, _), stored in zip(batch, saved))


async def _copy_checkpoint(store: Store, checkpoint: Checkpoint, fork_id: str) -> None:
    history = tuple(_copy(m, fork_id) for m in checkpoint.history)
    done = {m.id for m in await store.get_messages(checkpoint.tenant_id, fork_id)}
    if any(m.id not in done for m in history):
        await store.save_messages([m for m in history if m.id not in done])
    copy_id = _copy_id(fork_id, checkpoint)
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
