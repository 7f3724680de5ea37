"""The core's default for every derived hook, written once over the required tier.

Each default is an ``async`` function taking the store's bound hooks
(:class:`threadline.storekit.log.Hooks`) and the hook's arguments, and lists the hooks it
needs. :class:`threadline.Store` binds a default to a stacked store that lacks its own
implementation and has every hook the default needs (see :mod:`threadline.plugins.dispatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from threadline.errors import ConflictError, NotFoundError
from threadline.ids import utcnow
from threadline.models import Checkpoint, Message, Session, trusted
from threadline.queries import MessageRange, SessionCursor, SessionQuery
from threadline.storekit import log
from threadline.storekit.delta import SNAPSHOT_EVERY
from threadline.storekit.erasure import redact
from threadline.storekit.forks import copied_id, prompt_id, renamed_summary
from threadline.storekit.log import Hooks
from threadline.storekit.message_rows import read_message_rows
from threadline.storekit.records import CheckpointRecord, RecordRewrite, StaleRecordError
from threadline.storekit.window import orphaned_tool_results, window_start

__all__ = ["DEFAULTS", "Default"]

_PAGE = 500  # sessions per list_sessions call when a default walks a tenant
_PLAN_TRIES = 8  # a prune or erase plan made stale by concurrent writes is made again


@attrs.frozen
class Default:
    """A derived hook's default: the hooks it needs and the function."""

    needs: tuple[str, ...]
    function: Callable[..., Awaitable[Any]]
    uses: tuple[str, ...] = ()
    """Hooks used when the store has them (the API-call group for erasure)."""


DEFAULTS: dict[str, Default] = {}


def _default(*needs: str, uses: tuple[str, ...] = ()) -> Callable[..., Any]:
    def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        DEFAULTS["threadline_" + fn.__name__] = Default(needs, fn, uses)
        return fn

    return register


async def _read(
    hooks: Hooks,
    tenant_id: str,
    session_id: str,
    *,
    after_seq: int = 0,
    before_seq: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    role: str | None = None,
) -> list[Message]:
    query = MessageRange(after_seq, before_seq, limit, newest_first, role)
    return list(
        await hooks.call(
            "threadline_read_messages", tenant_id=tenant_id, session_id=session_id, query=query
        )
        or ()
    )


async def _sessions(hooks: Hooks, tenant_id: str, user_id: str | None) -> list[Session]:
    """Every session of the tenant (of ``user_id`` when given), read in keyset pages."""
    out: list[Session] = []
    after: SessionCursor | None = None
    while True:
        query = SessionQuery(user_id=user_id, limit=_PAGE, after=after)
        page = list(
            await hooks.call("threadline_list_sessions", tenant_id=tenant_id, query=query) or ()
        )
        out.extend(page)
        if len(page) < _PAGE:
            return list({s.id: s for s in out}.values())  # a concurrent bump may repeat one
        after = SessionCursor.of(page[-1])


# -- sessions -------------------------------------------------------------------------------


async def _replace(hooks: Hooks, tenant_id: str, session_id: str, **changes: Any) -> Session:
    stored = await hooks.call("threadline_get_session", tenant_id=tenant_id, session_id=session_id)
    if stored is None:
        raise NotFoundError(f"session {session_id} not found for this tenant")
    if "title" in changes:  # an edit is activity: updated_at moves forward, never back
        changes["updated_at"] = max(changes["updated_at"], stored.updated_at)
    result: Session = await hooks.call(
        "threadline_replace_session", session=attrs.evolve(stored, **changes)
    )
    return result


@_default("threadline_get_session", "threadline_replace_session")
async def update_session(hooks: Hooks, session: Session) -> Session:
    return await _replace(
        hooks, session.tenant_id, session.id,
        title=session.title, metadata=session.metadata, updated_at=utcnow(),
    )  # fmt: skip


@_default("threadline_get_session", "threadline_replace_session")
async def set_session_updated_at(
    hooks: Hooks, tenant_id: str, session_id: str, updated_at: datetime
) -> Session:
    return await _replace(hooks, tenant_id, session_id, updated_at=updated_at)


@_default("threadline_list_sessions", "threadline_delete_session")
async def delete_sessions_before(
    hooks: Hooks, tenant_id: str, before: datetime, user_id: str | None, dry_run: bool
) -> int:
    doomed = [s for s in await _sessions(hooks, tenant_id, user_id) if s.updated_at < before]
    if dry_run:
        return len(doomed)
    gone = 0
    for s in doomed:
        gone += bool(
            await hooks.call("threadline_delete_session", tenant_id=tenant_id, session_id=s.id)
        )
    return gone


# -- messages -------------------------------------------------------------------------------


@_default("threadline_save_messages")
async def save_message(hooks: Hooks, message: Message) -> Message:
    stored = await hooks.call("threadline_save_messages", messages=[message])
    result: Message = next(iter(stored))
    return result


@_default("threadline_read_messages")
async def get_messages(
    hooks: Hooks, tenant_id: str, session_id: str, after_seq: int, limit: int | None
) -> list[Message]:
    return await _read(hooks, tenant_id, session_id, after_seq=after_seq, limit=limit)


@_default("threadline_read_messages")
async def count_messages(hooks: Hooks, tenant_id: str, session_id: str) -> int:
    # Correct, not fast: seqs have gaps once messages were deleted (delete_messages), so the
    # last seq is no count. A store keeps a count and overrides this for speed.
    return len(await _read(hooks, tenant_id, session_id))


@_default("threadline_read_messages")
async def load_window(
    hooks: Hooks, tenant_id: str, session_id: str, last_rounds: int | None
) -> list[Message]:
    """Pages read backwards until the rounds (grown back to their tool calls) are inside,
    then the system messages before them: the cost follows the window."""
    if last_rounds is None:
        return await _read(hooks, tenant_id, session_id)
    suffix: list[Message] = []
    page = max(64, 8 * min(last_rounds, 1 << 20))
    while True:
        before = suffix[0].seq if suffix else None
        older = await _read(
            hooks, tenant_id, session_id, before_seq=before, limit=page, newest_first=True
        )
        suffix[:0] = reversed(older)
        complete = not suffix or suffix[0].seq == 1 or len(older) < page
        start = window_start(suffix, last_rounds)
        if complete or (start > 0 and not orphaned_tool_results(suffix[start:])):
            break
        page *= 2
    rounds = suffix[start:]
    head = [m for m in suffix[:start] if m.role == "system"]
    lowest = suffix[0].seq if suffix else 1
    if lowest and lowest > 1:  # system messages older than what was read
        head[:0] = await _read(hooks, tenant_id, session_id, before_seq=lowest, role="system")
    return head + rounds


async def _stored(hooks: Hooks, message: Message) -> Message:
    t, sid = message.tenant_id, message.session_id
    if message.seq is not None:
        found = await _read(hooks, t, sid, after_seq=message.seq - 1, limit=1)
        if found and found[0].id == message.id:
            return found[0]
    for stored in await _read(hooks, t, sid):  # no seq given: look through the session
        if stored.id == message.id:
            return stored
    raise NotFoundError(f"message {message.id} not found for this tenant")


@_default("threadline_read_messages", "threadline_rewrite_messages")
async def update_message(hooks: Hooks, message: Message) -> Message:
    stored = await _stored(hooks, message)
    await hooks.call(
        "threadline_rewrite_messages",
        tenant_id=message.tenant_id,
        messages=[attrs.evolve(message, user_id=stored.user_id)],
        activity=True,
        only_streaming=False,
    )
    return await _stored(hooks, stored)


@_default("threadline_read_messages", "threadline_rewrite_messages")
async def interrupt_streaming(hooks: Hooks, tenant_id: str, session_id: str) -> int:
    """Conditional (``only_streaming``): a reply finished between the read and the rewrite
    keeps its ending; only rows still ``streaming`` change, and only they are counted."""
    left = [
        attrs.evolve(m, status="interrupted")
        for m in await _read(hooks, tenant_id, session_id)
        if m.status == "streaming"
    ]
    if not left:
        return 0
    changed = await hooks.call(
        "threadline_rewrite_messages",
        tenant_id=tenant_id,
        messages=left,
        activity=True,
        only_streaming=True,
    )
    return int(changed or 0)


DEFAULTS["threadline_read_message_rows"] = Default(
    ("threadline_read_messages",), read_message_rows
)  # its own module (threadline.storekit.message_rows): the rows' contract lives there


_FORK_PAGE = 1000
"""Messages read and copied per batch by the default ``fork_messages``."""
_MESSAGE_FIELDS = tuple(f.name for f in attrs.fields(Message))


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
    metadata = renamed_summary(copy.metadata, copy.session_id) or copy.metadata
    info = {**metadata[SUMMARY_KEY], "first_seq": new_first, "last_seq": new_last}
    return attrs.evolve(copy, metadata={**metadata, SUMMARY_KEY: info})


async def _save_copies(
    hooks: Hooks, batch: list[tuple[int, Message]], seqs: dict[int, int]
) -> None:
    if batch:
        saved = await hooks.call("threadline_save_messages", messages=[c for _, c in batch])
        seqs.update((old, stored.seq or 0) for (old, _), stored in zip(batch, saved))


@_default("threadline_read_messages", "threadline_save_messages")
async def fork_messages(
    hooks: Hooks, tenant_id: str, session_id: str, fork_id: str, last_seq: int
) -> int:
    """Copy the source's messages up to ``last_seq`` into the fork, ``_FORK_PAGE`` at a
    time through ``save_messages`` (fresh seqs; the next page is read while this one is
    written). The copies share the source's values (a store in memory keeps the same
    strings); a retry finds the copies a stopped fork saved by their derived ids."""
    from threadline.runtime.compaction import summary_range

    done = {m.id: m.seq or 0 for m in await _read(hooks, tenant_id, fork_id)}
    seqs: dict[int, int] = {}  # a source message's seq -> its copy's
    prompt, fork_prompt = prompt_id(session_id), prompt_id(fork_id)

    def copy_of(message: Message) -> Message:  # no validation again of what the store gave
        values = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
        values["session_id"], values["seq"] = fork_id, None
        values["id"] = fork_prompt if message.id == prompt else copied_id(fork_id, message.id)
        return trusted(Message, **values)

    def read(after: int) -> asyncio.Task[list[Message]]:
        return asyncio.ensure_future(
            _read(hooks, tenant_id, session_id, after_seq=after, before_seq=last_seq + 1,
                  limit=_FORK_PAGE)
        )  # fmt: skip

    reading = read(0)
    try:
        while True:
            page = await reading
            if len(page) == _FORK_PAGE:
                reading = read(page[-1].seq or 0)
            batch: list[tuple[int, Message]] = []
            for message in page:
                copy = copy_of(message)
                if copy.id in done:
                    seqs[message.seq or 0] = done[copy.id]
                elif summary_range(copy) is not None:
                    # A summary names seqs: the copies of what it covers are saved first.
                    await _save_copies(hooks, batch, seqs)
                    batch = [(message.seq or 0, _summary_copy(copy, seqs))]
                    await _save_copies(hooks, batch, seqs)
                    batch = []
                else:
                    batch.append((message.seq or 0, copy))
            await _save_copies(hooks, batch, seqs)
            if len(page) < _FORK_PAGE:
                return len(seqs)
    finally:
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading


# -- checkpoints ----------------------------------------------------------------------------


@_default("threadline_insert_checkpoint_record", "threadline_read_checkpoint_records")
async def create_checkpoint(hooks: Hooks, checkpoint: Checkpoint) -> Checkpoint:
    # A store may set its chain limit as a ``snapshot_every`` attribute (storekit.delta).
    every = getattr(getattr(hooks, "plugin", None), "snapshot_every", SNAPSHOT_EVERY)
    return await log.create_checkpoint(hooks, checkpoint, every)


@_default("threadline_read_checkpoint_records")
async def get_checkpoint(hooks: Hooks, tenant_id: str, checkpoint_id: str) -> Checkpoint | None:
    return await log.restore(
        hooks,
        "threadline_read_checkpoint_records",
        tenant_id=tenant_id,
        checkpoint_id=checkpoint_id,
        chain=True,
    )


async def _records(
    hooks: Hooks, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
) -> list[CheckpointRecord]:
    return list(
        await hooks.call(
            "threadline_list_checkpoint_records",
            tenant_id=tenant_id,
            session_id=session_id,
            agent_id=agent_id,
            latest=latest,
        )
        or ()
    )


@_default("threadline_list_checkpoint_records")
async def get_latest_checkpoint(
    hooks: Hooks, tenant_id: str, session_id: str, agent_id: str | None
) -> Checkpoint | None:
    # One store call: ``latest`` gives the newest record followed by its chain.
    return await log.restore(
        hooks,
        "threadline_list_checkpoint_records",
        tenant_id=tenant_id,
        session_id=session_id,
        agent_id=agent_id,
        latest=True,
    )


@_default("threadline_list_checkpoint_records")
async def list_checkpoints(
    hooks: Hooks, tenant_id: str, session_id: str | None, agent_id: str | None
) -> list[Checkpoint]:
    # Every record is read (another agent's may be a chain's base); each is decoded once.
    records = await _records(hooks, tenant_id, session_id, None, False)
    wanted = [r for r in records if agent_id is None or r.checkpoint.agent_id == agent_id]
    built = log.histories({r.id: r for r in records}, [r.id for r in wanted])
    cache = log.history_cache(hooks)
    out = []
    for r in wanted:
        cache.put(r.id, r.tag, r.depth, built[r.id])
        out.append(attrs.evolve(r.checkpoint, history=built[r.id]))
    return out


@_default("threadline_list_checkpoint_records", "threadline_rewrite_checkpoint_records")
async def prune_checkpoints(
    hooks: Hooks, tenant_id: str, session_id: str, keep: int, dry_run: bool
) -> int:
    for _ in range(_PLAN_TRIES):
        records = await _records(hooks, tenant_id, session_id, None, False)
        rewrites, doomed = log.prune_plan(records, keep)
        if not doomed or dry_run:
            return len(doomed)
        if await _apply(hooks, tenant_id, session_id, records, rewrites, doomed):
            return len(doomed)
    raise _kept_changing(session_id)


async def _apply(
    hooks: Hooks,
    tenant_id: str,
    session_id: str,
    read: Sequence[CheckpointRecord],
    rewrites: Sequence[CheckpointRecord],
    delete_ids: Sequence[str],
) -> bool:
    """Apply a plan made from ``read``; ``False`` when the session's records changed since
    (the store refused the stale plan and nothing changed: plan again)."""
    try:
        await hooks.call(
            "threadline_rewrite_checkpoint_records",
            tenant_id=tenant_id,
            session_id=session_id,
            plan=RecordRewrite(rewrites, delete_ids, log.session_tags(read)),
        )
    except StaleRecordError:
        return False
    return True


def _kept_changing(session_id: str) -> ConflictError:
    return ConflictError(f"session {session_id}'s checkpoints kept changing: try again")


# -- retention ------------------------------------------------------------------------------


@_default(
    "threadline_list_sessions",
    "threadline_delete_session",
    "threadline_read_messages",
    "threadline_rewrite_messages",
    "threadline_list_checkpoint_records",
    "threadline_rewrite_checkpoint_records",
    uses=("threadline_list_api_calls", "threadline_delete_api_calls"),
)
async def erase_user(hooks: Hooks, tenant_id: str, user_id: str, dry_run: bool) -> dict[str, int]:
    """Session by session (not one transaction): the user's sessions go, their messages,
    API calls and checkpoint histories in other users' sessions are redacted or deleted."""
    calls = hooks.has("threadline_list_api_calls") and hooks.has("threadline_delete_api_calls")
    counts = dict.fromkeys(
        ("sessions", "messages", "messages_redacted", "api_calls", "checkpoints",
         "checkpoints_redacted"), 0,
    )  # fmt: skip
    for session in await _sessions(hooks, tenant_id, None):
        sid = session.id
        if session.user_id == user_id:
            counts["sessions"] += 1
            counts["messages"] += await count_messages(hooks, tenant_id, sid)
            counts["checkpoints"] += len(await _records(hooks, tenant_id, sid, None, False))
            if calls:
                counts["api_calls"] += len(await _api_calls(hooks, tenant_id, sid))
            if not dry_run:
                await hooks.call("threadline_delete_session", tenant_id=tenant_id, session_id=sid)
            continue
        messages = [redact(m) for m in await _read(hooks, tenant_id, sid) if m.user_id == user_id]
        counts["messages_redacted"] += len(messages)
        counts["checkpoints_redacted"] += await _erase_checkpoints(
            hooks, tenant_id, sid, user_id, dry_run
        )
        foreign = []
        if calls:
            foreign = [
                c.id for c in await _api_calls(hooks, tenant_id, sid) if c.user_id == user_id
            ]
            counts["api_calls"] += len(foreign)
        if dry_run:
            continue
        if messages:  # housekeeping, not activity: the session's updated_at stays
            await hooks.call(
                "threadline_rewrite_messages", tenant_id=tenant_id, messages=messages,
                activity=False, only_streaming=False,
            )  # fmt: skip
        if foreign:
            await hooks.call(
                "threadline_delete_api_calls", tenant_id=tenant_id, api_call_ids=foreign
            )
    return counts


async def _erase_checkpoints(
    hooks: Hooks, tenant_id: str, session_id: str, user_id: str, dry_run: bool
) -> int:
    """Redact one session's checkpoint histories (planned again if a write came between)."""
    for _ in range(_PLAN_TRIES):
        records = await _records(hooks, tenant_id, session_id, None, False)
        n, rewrites = log.erase_plan(records, user_id)
        if not rewrites or dry_run:
            return n
        if await _apply(hooks, tenant_id, session_id, records, rewrites, ()):
            return n
    raise _kept_changing(session_id)


async def _api_calls(hooks: Hooks, tenant_id: str, session_id: str) -> Sequence[Any]:
    found = await hooks.call(
        "threadline_list_api_calls", tenant_id=tenant_id, session_id=session_id
    )
    return list(found or ())


# -- usage ----------------------------------------------------------------------------------


@_default("threadline_list_sessions", "threadline_list_api_calls")
async def summarize_usage(hooks: Hooks, tenant_id: str, query: Any) -> list[Any]:
    """Every session's calls read and summed (:func:`threadline.usage.summarize_calls`)."""
    from threadline.usage import summarize_calls

    calls = [
        call
        for session in await _sessions(hooks, tenant_id, None)
        for call in await _api_calls(hooks, tenant_id, session.id)
    ]
    return summarize_calls(calls, query)
