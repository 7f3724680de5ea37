"""Forks on SQLite: a fork's messages share the stored bytes of the session they came from.

``fork_messages`` is one ``BEGIN IMMEDIATE`` transaction: one ``INSERT ... SELECT`` writes
the fork's rows with the source's seqs, each pointing at the row its content and tool calls
are in (``shared_key``, migration 0012: the source's key, or the key the source's row
itself points at, so a fork of a fork reads one row away); short messages, where a pointer
saves nothing, are copied. The fork's tool-call and writer indexes and its counters are
written in the same transaction, so an interrupted fork left nothing and a retry finds the
finished one. Reads resolve the shared columns (:func:`threadline_sqlite.rows.shared`);
triggers copy the bytes into the sharing rows before a source row changes or goes.
"""

from __future__ import annotations

import json
import sqlite3

from threadline.codec import dump_json
from threadline.storekit.forks import fork_message_id, renamed_summary
from threadline.storekit.sync import SyncStore
from threadline_sqlite.sql import missing_session, now_us, write

__all__ = ["SHARE_FROM", "ForkHooks"]

SHARE_FROM = 128
"""Characters of content and tool calls from which a fork's row shares its source's instead
of holding a copy (below it the pointer and the read's lookup cost more than they save)."""

_KEY = "SELECT key, last_seq FROM entity_session WHERE id = ? AND tenant_id = ?"
_IDS = "SELECT seq, id FROM entity_message WHERE session_key = ? AND seq <= ? ORDER BY seq"
# The source's rows up to the cut, each resolved to the row holding its bytes (o): big ones
# shared (empty content, the holder's key), small ones copied. Parameters: fork key, source
# key, the [seq, new id] pairs as JSON, the threshold.
_INSERT = """
INSERT INTO entity_message (session_key, seq, id, user_id, agent_id, role, content,
  tool_calls, tool_call_id, name, status, metadata, created_at, shared_key)
SELECT ?1, seq, new_id, user_id, agent_id, role,
  CASE WHEN big THEN '' ELSE content END, CASE WHEN big THEN NULL ELSE tool_calls END,
  tool_call_id, name, status, metadata, created_at, CASE WHEN big THEN holder END
FROM (
  SELECT *, length(content) + coalesce(length(tool_calls), 0) >= ?4 AS big FROM (
    SELECT m.seq, json_extract(n.value, '$[1]') AS new_id, m.user_id, m.agent_id, m.role,
      coalesce(o.content, m.content) AS content,
      CASE WHEN m.shared_key IS NULL THEN m.tool_calls ELSE o.tool_calls END AS tool_calls,
      m.tool_call_id, m.name, m.status, m.metadata, m.created_at,
      coalesce(m.shared_key, m.session_key) AS holder
    FROM json_each(?3) n  -- CROSS JOIN keeps it outside: probed by key, parsed once
    CROSS JOIN entity_message m ON m.session_key = ?2 AND m.seq = json_extract(n.value, '$[0]')
    LEFT JOIN entity_message o ON o.session_key = m.shared_key AND o.seq = m.seq
  )
)
"""
_TOOL_CALLS = (
    "INSERT OR IGNORE INTO entity_message_tool_call (session_id, call_id, seq) "
    "SELECT ?, call_id, seq FROM entity_message_tool_call WHERE session_id = ? AND seq <= ?"
)
_WRITERS = (
    "INSERT OR IGNORE INTO entity_message_user (session_id, user_id) SELECT DISTINCT ?, user_id "
    "FROM entity_message WHERE session_key = ? AND user_id IS NOT NULL"
)
_SUMMARIES = (
    "SELECT seq, metadata FROM entity_message WHERE session_key = ? AND role = 'system' "
    "AND json_extract(metadata, '$.summary.previous') IS NOT NULL"
)
_SET_METADATA = "UPDATE entity_message SET metadata = ? WHERE session_key = ? AND seq = ?"
_COUNTERS = (
    "UPDATE entity_session SET last_seq = ?, deleted_seqs = ?, "
    "updated_at = max(updated_at, ?) WHERE key = ?"
)
_COUNT = "SELECT last_seq - deleted_seqs FROM entity_session WHERE key = ?"


class ForkHooks(SyncStore):
    """Forking a session inside the database (see :mod:`threadline.store.branching`)."""

    def fork_messages(self, tenant_id: str, session_id: str, fork_id: str, last_seq: int) -> int:
        with write() as db:
            fork = db.execute(_KEY, (fork_id, tenant_id)).fetchone()
            if fork is None:
                raise missing_session(fork_id)
            fork_key, fork_last = fork
            if (
                fork_last
                or db.execute(
                    "SELECT 1 FROM entity_message WHERE session_key = ? LIMIT 1", (fork_key,)
                ).fetchone()
            ):
                return int(db.execute(_COUNT, (fork_key,)).fetchone()[0])  # a retry: done
            source = db.execute(_KEY, (session_id, tenant_id)).fetchone()
            if source is None:
                return 0
            return _fork(db, tenant_id, session_id, source[0], fork_id, fork_key, last_seq)


def _fork(
    db: sqlite3.Connection,
    tenant_id: str,
    session_id: str,
    source_key: int,
    fork_id: str,
    fork_key: int,
    last_seq: int,
) -> int:
    """Write the fork's rows, indexes and counters (inside the caller's transaction)."""
    pairs = [
        [seq, fork_message_id(session_id, fork_id, id_)]
        for seq, id_ in db.execute(_IDS, (source_key, last_seq))
    ]
    if not pairs:
        return 0
    db.execute(_INSERT, (fork_key, source_key, json.dumps(pairs), SHARE_FROM))
    db.execute(_TOOL_CALLS, (fork_id, session_id, last_seq))
    db.execute(_WRITERS, (fork_id, fork_key))
    for seq, metadata in db.execute(_SUMMARIES, (fork_key,)).fetchall():
        renamed = renamed_summary(json.loads(metadata), fork_id)
        if renamed is not None:
            db.execute(_SET_METADATA, (dump_json(renamed, "metadata"), fork_key, seq))
    cut = pairs[-1][0]
    db.execute(_COUNTERS, (cut, cut - len(pairs), now_us(), fork_key))
    return len(pairs)
