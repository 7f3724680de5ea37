"""The window from indexes: the cost follows the window, not the session's length.

The session's key (migration 0009, found by ``(id, tenant_id)``), then
``(session_key, role, seq)`` finds the n-th last user message and the system messages;
``(session_key, seq)`` reads the rounds after it; ``entity_message_tool_call`` finds the
call of a tool result that would be orphaned. The selection is exactly
:func:`threadline.storekit.window.select_window`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from threadline.models import Message
from threadline.storekit.sync import SyncStore
from threadline.storekit.window import orphaned_tool_results
from threadline_sqlite.rows import READ_COLUMNS, message_from_read
from threadline_sqlite.sql import SESSION_KEY, chunks, marks
from threadline_sqlite.worker import connection

__all__ = [
    "MESSAGES_RANGE",
    "NEAREST_CALLERS",
    "ROUND_START",
    "SYSTEM_BEFORE",
    "WINDOW",
    "WindowHooks",
]

_MESSAGES_ALL = (
    f"SELECT {READ_COLUMNS} FROM entity_message WHERE session_key = {SESSION_KEY} ORDER BY seq"
)
MESSAGES_RANGE = (
    f"SELECT {READ_COLUMNS} FROM entity_message "
    f"WHERE session_key = {SESSION_KEY} AND seq >= ? AND seq < ? ORDER BY seq"
)
SYSTEM_BEFORE = (
    f"SELECT {READ_COLUMNS} FROM entity_message "
    f"WHERE session_key = {SESSION_KEY} AND role = 'system' AND seq < ? ORDER BY seq"
)
# The window in one statement: the session's key (its tenant checked), the seq of the
# n-th last user message (OFFSET n-1) or 1, the system messages before it, then
# everything from it on. Index-only lookups.
WINDOW = f"""
WITH session(key) AS (
  SELECT key FROM entity_session WHERE id = :session AND tenant_id = :tenant
), start(seq) AS (
  SELECT coalesce((SELECT seq FROM entity_message
                   WHERE session_key = (SELECT key FROM session) AND role = 'user'
                   ORDER BY seq DESC LIMIT 1 OFFSET :skip), 1)
)
SELECT {READ_COLUMNS} FROM entity_message
WHERE session_key = (SELECT key FROM session) AND role = 'system'
  AND seq < (SELECT seq FROM start)
UNION ALL
SELECT {READ_COLUMNS} FROM entity_message
WHERE session_key = (SELECT key FROM session) AND seq >= (SELECT seq FROM start)
ORDER BY seq
"""
# For each orphaned call id the nearest call before the window (max seq), then the
# earliest of those: where threadline.storekit.window.window_start moves the window's start.
NEAREST_CALLERS = (
    "SELECT min(caller) FROM (SELECT max(seq) AS caller FROM entity_message_tool_call "
    "WHERE session_id = ? AND seq < ? AND call_id IN ({marks}) GROUP BY call_id)"
)
ROUND_START = (
    "SELECT max(seq) FROM entity_message WHERE session_key = "
    "(SELECT key FROM entity_session WHERE id = ?) AND role = 'user' AND seq <= ?"
)


def _round_start(window: Sequence[Message], last_rounds: int) -> tuple[int, bool]:
    """Where the rounds begin in a :data:`WINDOW` result, and whether they hold a tool result.

    The query starts the rounds at the ``last_rounds``-th last user message, or at
    ``seq`` 1 when the session has fewer user messages; the head before it holds only
    system messages.
    """
    seen = 0
    tool_result = False
    for index in range(len(window) - 1, -1, -1):
        role = window[index].role
        if role == "user":
            seen += 1
            if seen == last_rounds:
                return index, tool_result
        elif role == "tool":
            tool_result = True
    return 0, tool_result  # fewer user messages than rounds: everything from seq 1


def _grow(
    db: sqlite3.Connection, tenant_id: str, session_id: str, rounds: list[Message]
) -> list[Message]:
    """Move the window's start back until no tool result in it lacks its call.

    Mirrors :func:`threadline.storekit.window.window_start` with index lookups: for each
    orphaned id the nearest earlier message that called it, the earliest of those, then
    the user message that starts its round.
    """
    read = message_from_read
    start = (rounds[0].seq or 1) if rounds else 1
    while start > 1:
        orphans = sorted(orphaned_tool_results(rounds))
        if not orphans:
            break
        caller: int | None = None
        for chunk in chunks(orphans):
            sql = NEAREST_CALLERS.format(marks=marks(len(chunk)))
            found = db.execute(sql, (session_id, start, *chunk)).fetchone()[0]
            if found is not None and (caller is None or found < caller):
                caller = found
        if caller is None:
            break
        user = db.execute(ROUND_START, (session_id, caller)).fetchone()[0]
        new_start = int(user) if user is not None else 1
        earlier = db.execute(MESSAGES_RANGE, (session_id, tenant_id, new_start, start))
        rounds = [read(row, session_id, tenant_id) for row in earlier] + rounds
        start = new_start
    head = db.execute(SYSTEM_BEFORE, (session_id, tenant_id, start))
    return [read(row, session_id, tenant_id) for row in head] + rounds


class WindowHooks(SyncStore):
    """``load_window`` from the indexes."""

    # Derived, kept: one statement for the common window (W3 in benchmarks/bench_sqlite.py);
    # the default reads pages backwards, two queries or more.
    def load_window(
        self, tenant_id: str, session_id: str, last_rounds: int | None
    ) -> list[Message]:
        db = connection()
        read = message_from_read
        if last_rounds is None or last_rounds == 0:
            rows = (
                db.execute(_MESSAGES_ALL, (session_id, tenant_id))
                if last_rounds is None
                else db.execute(SYSTEM_BEFORE, (session_id, tenant_id, 2**62))
            )
            return [read(row, session_id, tenant_id) for row in rows]
        params = {"session": session_id, "tenant": tenant_id, "skip": last_rounds - 1}
        window = [read(row, session_id, tenant_id) for row in db.execute(WINDOW, params)]
        start, answers_a_call = _round_start(window, last_rounds)
        if (
            not answers_a_call
            or (window[start].seq or 0) <= 1
            or not orphaned_tool_results(window[start:])
        ):
            return window
        # Rare: a tool result in the window answers a call made before it. Grow back to the
        # call's round, in one read transaction so every query sees the same snapshot.
        db.execute("BEGIN")
        try:
            window = [read(row, session_id, tenant_id) for row in db.execute(WINDOW, params)]
            start, _ = _round_start(window, last_rounds)
            return _grow(db, tenant_id, session_id, window[start:])
        finally:
            db.execute("COMMIT")
