"""What the pages show, read through the public :class:`threadline.Store` API only.

Every function takes the tenant explicitly; the store scopes every read to it. Where the
facade has no query for a page (full-text search, a tenant's API calls, a session's
status), this module scans a bounded number of the newest sessions and says so on the
page (see the ``*_SCAN`` limits).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timezone
from typing import Any

import attrs

from threadline.models import ApiCall, Checkpoint, Message, Session
from threadline.queries import SessionCursor
from threadline.store import Store

__all__ = [
    "MESSAGE_PAGE",
    "SCAN_SESSIONS",
    "SESSION_PAGE",
    "ConversationPage",
    "SessionFilter",
    "SessionRow",
    "conversation_page",
    "find_sessions",
    "last_message",
]

SESSION_PAGE = 50
"""Sessions per page of the session list."""
MESSAGE_PAGE = 100
"""Messages per page of a conversation (a 10,000-message session has 100 pages)."""
SCAN_SESSIONS = 1000
"""Most sessions read to answer a filter the store cannot (status, date, search, usage)."""
SEARCH_SNIPPET = 80
MESSAGE_STATUSES = ("complete", "streaming", "interrupted", "error", "cancelled")

SearchHook = Callable[..., Awaitable[Sequence[Message]]]


@attrs.frozen
class SessionFilter:
    """The session list's filters (all optional)."""

    user_id: str | None = None
    agent_id: str | None = None
    status: str | None = None
    since: date | None = None
    until: date | None = None
    query: str | None = None

    @property
    def scans(self) -> bool:
        """Whether the filter needs sessions read one by one (the store cannot filter)."""
        return bool(self.status or self.since or self.until or self.query)


@attrs.frozen
class SessionRow:
    """One line of the session list."""

    session: Session
    count: int
    last: Message | None
    match: Message | None = None

    @property
    def status(self) -> str:
        return self.last.status if self.last is not None else "empty"

    @property
    def snippet(self) -> str:
        return snippet(self.match.content, "") if self.match is not None else ""


def snippet(text: str, query: str, width: int = SEARCH_SNIPPET) -> str:
    """``width`` characters of ``text`` around the first match of ``query``."""
    text = " ".join(text.split())
    at = text.lower().find(query.lower()) if query else 0
    start = max(at - width // 3, 0)
    cut = text[start : start + width]
    return ("…" if start else "") + cut + ("…" if start + width < len(text) else "")


async def last_message(store: Store, tenant_id: str, session_id: str) -> tuple[int, Message | None]:
    """The number of messages and the last one (seqs may have gaps: a gap only reads more)."""
    count = await store.count_messages(tenant_id, session_id)
    if count == 0:
        return 0, None
    tail = await store.get_messages(tenant_id, session_id, after_seq=count - 1)
    return count, (tail[-1] if tail else None)


def _day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


async def _search_hook(store: Store) -> SearchHook | None:
    """``store.search_messages(tenant_id, query, limit=...)`` when the store offers it."""
    hook = getattr(store, "search_messages", None)
    return hook if callable(hook) else None


async def _matching(store: Store, tenant_id: str, session: Session, query: str) -> Message | None:
    """The first message of ``session`` containing ``query`` (case-insensitive): a scan."""
    needle = query.lower()
    after = 0
    while True:
        batch = await store.get_messages(tenant_id, session.id, after_seq=after, limit=500)
        for message in batch:
            if needle in message.content.lower():
                return message
        if len(batch) < 500:
            return None
        after = batch[-1].seq or after


async def find_sessions(
    store: Store, tenant_id: str, flt: SessionFilter, page: int
) -> tuple[list[SessionRow], bool, int | None]:
    """A page of sessions (newest activity first): rows, whether more follow, and how many
    sessions were scanned when the filter needed a scan that stopped at the limit."""
    offset = page * SESSION_PAGE
    if not flt.scans:
        sessions = await store.list_sessions(
            tenant_id,
            user_id=flt.user_id,
            agent_id=flt.agent_id,
            limit=SESSION_PAGE + 1,
            offset=offset,
        )
        rows = [SessionRow(s, *await last_message(store, tenant_id, s.id)) for s in sessions]
        return rows[:SESSION_PAGE], len(rows) > SESSION_PAGE, None
    matches: dict[str, Message] = {}
    hook = await _search_hook(store) if flt.query else None
    if hook is not None and flt.query:
        for message in await hook(tenant_id, flt.query, limit=SCAN_SESSIONS):
            matches.setdefault(message.session_id, message)
    wanted = offset + SESSION_PAGE + 1
    found: list[SessionRow] = []
    scanned = 0
    truncated = False
    after: SessionCursor | None = None
    while len(found) < wanted:
        batch = await store.list_sessions(
            tenant_id, user_id=flt.user_id, agent_id=flt.agent_id, limit=200, after=after
        )
        if not batch:
            break
        after = SessionCursor.of(batch[-1])
        for session in batch:
            scanned += 1
            day = _day(session.updated_at)
            if flt.until and day > flt.until:
                continue
            if flt.since and day < flt.since:
                batch = []  # newest first: nothing older can match
                break
            match: Message | None = None
            if flt.query:
                if hook is not None:
                    match = matches.get(session.id)
                else:
                    match = await _matching(store, tenant_id, session, flt.query)
                if match is None:
                    continue
            count, last = await last_message(store, tenant_id, session.id)
            status = last.status if last is not None else "empty"
            if flt.status and status != flt.status:
                continue
            found.append(SessionRow(session, count, last, match))
            if len(found) >= wanted:
                break
        if not batch or len(batch) < 200:
            break
        if scanned >= SCAN_SESSIONS:
            truncated = True
            break
    rows = found[offset : offset + SESSION_PAGE]
    return rows, len(found) > offset + SESSION_PAGE, scanned if truncated else None


# -- conversations -------------------------------------------------------------------------


@attrs.frozen
class ConversationPage:
    """One page of a conversation, with tool results paired to their calls."""

    messages: list[Message]
    count: int
    results: dict[str, Message]
    older: int | None
    newer: int | None
    live: bool

    @property
    def shown(self) -> list[Message]:
        """Messages shown on their own: tool results paired with a call on this page are
        shown under the call instead."""
        calls = {c.id for m in self.messages for c in m.tool_calls}
        return [m for m in self.messages if not (m.role == "tool" and m.tool_call_id in calls)]

    @property
    def watermark(self) -> int:
        """The seq up to which every message on the page is final (live updates start there)."""
        mark = 0
        for m in self.messages:
            if m.status == "streaming":
                break
            mark = m.seq or mark
        return mark


async def conversation_page(
    store: Store,
    tenant_id: str,
    session_id: str,
    *,
    before: int | None = None,
    after: int | None = None,
) -> ConversationPage:
    """The latest page (live), or the page before seq ``before`` / after seq ``after``."""
    count = await store.count_messages(tenant_id, session_id)
    live = before is None and after is None
    if after is not None:
        messages = await store.get_messages(
            tenant_id, session_id, after_seq=after, limit=MESSAGE_PAGE + 1
        )
        more_newer = len(messages) > MESSAGE_PAGE
        messages = messages[:MESSAGE_PAGE]
        live = not more_newer
    elif before is not None:
        start = max(before - 1 - MESSAGE_PAGE, 0)
        messages = await store.get_messages(
            tenant_id, session_id, after_seq=start, limit=MESSAGE_PAGE
        )
        messages = [m for m in messages if (m.seq or 0) < before]
    else:
        tail = await store.get_messages(
            tenant_id, session_id, after_seq=max(count - MESSAGE_PAGE, 0)
        )
        messages = tail[-MESSAGE_PAGE:]
    first = messages[0].seq if messages else None
    last = messages[-1].seq if messages else None
    older = first if first is not None and first > 1 else None
    newer = None if live or last is None else last
    results = {m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id}
    return ConversationPage(messages, count, results, older, newer, live)


# -- usage ---------------------------------------------------------------------------------


async def tenant_api_calls(store: Store, tenant_id: str) -> tuple[list[ApiCall], int | None]:
    """The API calls of the tenant's newest sessions (up to :data:`SCAN_SESSIONS`), oldest
    first; with the number of sessions read when that limit cut the scan short."""
    calls: list[ApiCall] = []
    scanned = 0
    after: SessionCursor | None = None
    while True:
        batch = await store.list_sessions(tenant_id, limit=200, after=after)
        after = SessionCursor.of(batch[-1]) if batch else None
        for session in batch:
            calls.extend(await store.list_api_calls(tenant_id, session.id))
        scanned += len(batch)
        if len(batch) < 200:
            calls.sort(key=lambda c: (c.created_at, c.id))
            return calls, None
        if scanned >= SCAN_SESSIONS:
            calls.sort(key=lambda c: (c.created_at, c.id))
            return calls, scanned


# -- checkpoints ---------------------------------------------------------------------------


def kind_of(checkpoint: Checkpoint) -> str:
    """The checkpoint's kind (``auto``, ``manual``, ``rollback``, ``tombstone``, ...)."""
    if checkpoint.tombstone:
        return "tombstone"
    kind = checkpoint.properties.get("kind")
    return kind if isinstance(kind, str) else "checkpoint"


def is_interrupt(checkpoint: Checkpoint) -> bool:
    """A run paused for a human (human-in-the-loop writes ``kind: interrupt`` or an
    ``interrupt`` property)."""
    return kind_of(checkpoint) == "interrupt" or "interrupt" in checkpoint.properties


def starts_history(checkpoint: Checkpoint, parent: Checkpoint | None) -> bool:
    """Whether the checkpoint's history does not extend its parent's: stores keep such a
    checkpoint as a full snapshot, not a delta (the facade does not say which are)."""
    if parent is None:
        return True
    ids = [m.id for m in parent.history]
    return [m.id for m in checkpoint.history[: len(ids)]] != ids or not ids


@attrs.frozen
class TreeNode:
    """A checkpoint placed in the tree picture."""

    checkpoint: Checkpoint
    column: int
    row: int
    kind: str
    interrupt: bool
    snapshot: bool


@attrs.frozen
class Tree:
    """The checkpoint tree: nodes in version order and parent-child edges."""

    nodes: list[TreeNode]
    edges: list[tuple[TreeNode, TreeNode]]
    columns: int


def checkpoint_tree(checkpoints: Sequence[Checkpoint]) -> Tree:
    """Lay out checkpoints one per row (by version); a branch opens a new column."""
    ordered = sorted(checkpoints, key=lambda c: (c.version or 0, c.id))
    by_id = {c.id: c for c in ordered}
    placed: dict[str, TreeNode] = {}
    continued: set[str] = set()
    columns = 0
    nodes: list[TreeNode] = []
    edges: list[tuple[TreeNode, TreeNode]] = []
    for row, checkpoint in enumerate(ordered):
        parent = placed.get(checkpoint.parent_id or "")
        if parent is not None and parent.checkpoint.id not in continued:
            column = parent.column
            continued.add(parent.checkpoint.id)
        else:
            column = columns
        columns = max(columns, column + 1)
        node = TreeNode(
            checkpoint,
            column,
            row,
            kind_of(checkpoint),
            is_interrupt(checkpoint),
            starts_history(checkpoint, by_id.get(checkpoint.parent_id or "")),
        )
        placed[checkpoint.id] = node
        nodes.append(node)
        if parent is not None:
            edges.append((parent, node))
    return Tree(nodes, edges, columns)


@attrs.frozen
class StateChange:
    key: str
    before: str | None
    after: str | None


@attrs.frozen
class CheckpointDiff:
    """What changed from checkpoint ``a`` (the older) to ``b``."""

    a: Checkpoint
    b: Checkpoint
    added: list[Message]
    removed: list[Message]
    state: list[StateChange]


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def diff_checkpoints(first: Checkpoint, second: Checkpoint) -> CheckpointDiff:
    """Messages added and removed, state keys added, removed or changed (older to newer)."""
    a, b = sorted((first, second), key=lambda c: (c.version or 0, c.id))
    ids_a = {m.id for m in a.history}
    ids_b = {m.id for m in b.history}
    changes: list[StateChange] = []
    for key in sorted(set(a.state) | set(b.state)):
        before, after = a.state.get(key, _MISSING), b.state.get(key, _MISSING)
        if before != after:
            changes.append(
                StateChange(
                    key,
                    None if before is _MISSING else _shown(before),
                    None if after is _MISSING else _shown(after),
                )
            )
    return CheckpointDiff(
        a,
        b,
        [m for m in b.history if m.id not in ids_a],
        [m for m in a.history if m.id not in ids_b],
        changes,
    )


_MISSING: Any = object()
