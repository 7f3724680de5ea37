"""Checkpoint records: the storage under the core's checkpoint log.

:mod:`threadline.storekit.log` encodes each checkpoint's history as a snapshot or a
delta on its parent (:mod:`threadline.storekit.delta`) and keeps the history cache;
this module keeps the records. A version is numbered from ``last_version`` in the
insert's transaction; the parent's write tag is checked in it too, so a delta computed
against a history rewritten meanwhile is refused (the core computes it again). A chain
is read in one recursive query of primary-key lookups (at most ``SNAPSHOT_EVERY`` rows).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from threadline.codec import dump_json
from threadline.errors import NotFoundError, StoreError, ValidationError
from threadline.storekit import log
from threadline.storekit.records import (
    CheckpointRecord,
    RecordRewrite,
    StaleRecordError,
    id_conflict,
)
from threadline.storekit.sync import SyncStore
from threadline_sqlite.rows import (
    CHECKPOINT_COLUMNS,
    CHECKPOINT_VERSION,
    ancestor_from_row,
    record_from_row,
    record_row,
)
from threadline_sqlite.sql import (
    BUMP_VERSION,
    SESSION_OF_TENANT,
    bump,
    chunks,
    forgetting,
    marks,
    missing_session,
)
from threadline_sqlite.worker import connection

__all__ = ["CHAIN", "OF_SESSION", "CheckpointHooks", "records_of_session", "rewrite_records"]

_INSERT = f"INSERT INTO entity_checkpoint ({CHECKPOINT_COLUMNS}) VALUES ({marks(16)})"
_INSERT_UNDER = (
    f"INSERT INTO entity_checkpoint ({CHECKPOINT_COLUMNS}) SELECT {marks(16)} WHERE EXISTS "
    "(SELECT 1 FROM entity_checkpoint WHERE id = ? AND session_id = ? "
    "AND (? IS NULL OR history_tag = ?))"
)
"""A record's insert where its parent is in its session with the given tag (or any)."""
_BY_ID = f"SELECT {CHECKPOINT_COLUMNS} FROM entity_checkpoint WHERE id = ?"
_PARENT = "SELECT session_id, history_tag FROM entity_checkpoint WHERE id = ?"
OF_SESSION = (
    f"SELECT {CHECKPOINT_COLUMNS} FROM entity_checkpoint WHERE session_id = ? AND tenant_id = ?"
)
_C_COLUMNS = ", ".join("c." + name.strip() for name in CHECKPOINT_COLUMNS.split(","))
_OF_TENANT = (
    f"SELECT {_C_COLUMNS} FROM entity_checkpoint c JOIN entity_session s ON s.id = c.session_id "
    "WHERE c.tenant_id = ?"
)


# A checkpoint and the records its history is rebuilt from, in one statement: itself,
# then its parent, and so on while the row just read is a delta (history_depth > 0).
# Each step is a primary-key lookup. Rows come with their distance n first and are put
# in order in Python (an ORDER BY would copy every row, snapshot included, into a
# temporary b-tree first).
def _chain_from(head: str) -> str:
    """A chain read in one statement, starting at the row ``head`` selects."""
    return f"""
WITH RECURSIVE chain(n, {CHECKPOINT_COLUMNS}) AS (
  SELECT 0, {CHECKPOINT_COLUMNS} FROM ({head})
  UNION ALL
  SELECT chain.n + 1, {_C_COLUMNS}
  FROM chain JOIN entity_checkpoint c ON c.id = chain.parent_id
  WHERE chain.history_depth > 0
)
SELECT n, {CHECKPOINT_COLUMNS} FROM chain
"""


CHAIN = _chain_from(
    f"SELECT {CHECKPOINT_COLUMNS} FROM entity_checkpoint WHERE id = ? AND tenant_id = ?"
)
_LATEST_CHAIN = {  # the newest record (of an agent) and its chain: a restore in one statement
    agent: _chain_from(
        OF_SESSION + (" AND agent_id = ?" if agent else "") + " ORDER BY version DESC LIMIT 1"
    )
    for agent in (False, True)
}
_LATEST = {
    agent: OF_SESSION + (" AND agent_id = ?" if agent else "") + " ORDER BY version DESC LIMIT 1"
    for agent in (False, True)
}
# One statement (atomic without a transaction of its own); only onto a list the record was
# made with, so a record written without one keeps its writes elsewhere (json(): a value).
_APPEND = (
    "UPDATE entity_checkpoint SET state = json_insert(state, ?, json(?)) "
    "WHERE id = ? AND tenant_id = ? AND json_type(state, ?) = 'array'"
)


STATE = "checkpoint state"
"""What :func:`~threadline.codec.dump_json` names in its error for an appended item."""


def _key(key: str) -> str:
    """``key`` as a JSON path member: plain identifiers only (no quoting needed)."""
    if not key.isidentifier():
        raise ValidationError(f"state key {key!r}: an identifier is needed")
    return key


_TAGS = "SELECT id, history_tag FROM entity_checkpoint WHERE session_id = ?"
_REWRITE = (
    "UPDATE entity_checkpoint SET history = ?, history_depth = ?, history_tag = ? "
    "WHERE id = ? AND session_id = ?"
)


def chain_records(rows: Iterable[Sequence[Any]]) -> list[CheckpointRecord]:
    """A chain's rows (distance first) as records, head first; an ancestor's JSON fields
    are not decoded (the log reads only its ids, record, depth and tag)."""
    out = []
    for n, *columns in sorted(rows, key=itemgetter(0)):  # n is unique
        out.append(record_from_row(columns) if n == 0 else ancestor_from_row(columns))
    return out


def records_of_session(
    db: sqlite3.Connection, tenant_id: str, session_id: str
) -> list[CheckpointRecord]:
    """A session's records by version."""
    rows = db.execute(OF_SESSION + " ORDER BY version", (session_id, tenant_id))
    return [record_from_row(row) for row in rows]


def rewrite_records(
    db: sqlite3.Connection,
    session_id: str,
    records: Sequence[CheckpointRecord],
    delete_ids: Sequence[str],
) -> int:
    """Apply a rewrite plan of :mod:`threadline.storekit.log` in the caller's transaction."""
    changed = 0
    for r in records:
        changed += db.execute(_REWRITE, (r.record, r.depth, r.tag, r.id, session_id)).rowcount
    for chunk in chunks(list(delete_ids)):
        sql = f"DELETE FROM entity_checkpoint WHERE session_id = ? AND id IN ({marks(len(chunk))})"
        changed += db.execute(sql, (session_id, *chunk)).rowcount
    return changed


class CheckpointHooks(SyncStore):
    """The four record hooks of the required tier, and an atomic prune."""

    def insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        return self.insert_checkpoint_row(record, record_row(record), parent_tag)

    def insert_checkpoint_row(
        self, record: CheckpointRecord, row: list[Any], parent_tag: int | None
    ) -> CheckpointRecord:
        """:meth:`insert_checkpoint_record` with ``row`` already encoded (:func:`record_row`,
        values refused before the lock): the store encodes first when it decides by the
        row's size where the write runs (:mod:`threadline_sqlite.inline`)."""
        c = record.checkpoint
        db = connection()
        db.execute("BEGIN IMMEDIATE")
        # The session is checked by the version bump (no row: no session), the parent (in
        # this session, with the tag the delta was computed against) by the insert itself,
        # and a stored id by the primary key: four statements. A failure rolls back, bump
        # included, and is told apart afterwards.
        version = bump(db, BUMP_VERSION, 1, c.session_id, c.tenant_id, "last_version")
        if version is None:
            db.execute("ROLLBACK")
            self._stored_record(record)  # the id stored elsewhere: a conflict
            raise missing_session(c.session_id)
        row[CHECKPOINT_VERSION] = version
        try:
            if c.parent_id is None:
                inserted = db.execute(_INSERT, row).rowcount
            else:
                under = (c.parent_id, c.session_id, parent_tag, parent_tag)
                inserted = db.execute(_INSERT_UNDER, (*row, *under)).rowcount
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            existing = self._stored_record(record)
            if existing is None:  # the insert failed for another reason
                raise StoreError(f"could not insert checkpoint {c.id} (integrity error)") from None
            return existing
        if not inserted:  # the parent is not in this session, or was rewritten
            db.execute("ROLLBACK")
            existing = self._stored_record(record)
            if existing is not None:
                return existing
            parent = db.execute(_PARENT, (c.parent_id,)).fetchone()
            if parent is None or parent[0] != c.session_id:
                raise NotFoundError(f"parent checkpoint {c.parent_id} not found in this session")
            raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten")
        db.execute("COMMIT")
        return record_from_row(row)

    @staticmethod
    def _stored_record(record: CheckpointRecord) -> CheckpointRecord | None:
        """The stored record of ``record``'s id (outside a transaction), ``None`` if none;
        stored in another session or tenant: a conflict."""
        found = connection().execute(_BY_ID, (record.id,)).fetchone()
        if found is None:
            return None
        existing = record_from_row(found)
        c = record.checkpoint
        if (existing.checkpoint.session_id, existing.checkpoint.tenant_id) != (
            c.session_id, c.tenant_id,
        ):  # fmt: skip
            raise id_conflict("checkpoint", c.id)
        return existing

    def read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        db = connection()
        if not chain:
            found = db.execute(_BY_ID + " AND tenant_id = ?", (checkpoint_id, tenant_id))
            return [record_from_row(row) for row in found]
        return chain_records(db.execute(CHAIN, (checkpoint_id, tenant_id)))

    def read_checkpoint_head(
        self,
        tenant_id: str,
        checkpoint_id: str | None,
        session_id: str | None,
        agent_id: str | None,
    ) -> CheckpointRecord | None:
        """The record a chain read starts with, alone (the ``threadline_read_checkpoint_head``
        shortcut): one indexed row where the cache holds its history, instead of the chain."""
        db = connection()
        if checkpoint_id is not None:
            row = db.execute(_BY_ID + " AND tenant_id = ?", (checkpoint_id, tenant_id)).fetchone()
        else:
            agent = agent_id is not None
            params = [session_id, tenant_id, *([agent_id] if agent else [])]
            row = db.execute(_LATEST[agent], params).fetchone()
        return record_from_row(row) if row is not None else None

    def append_checkpoint_state(
        self, tenant_id: str, checkpoint_id: str, key: str, item: Any
    ) -> bool:
        """Append ``item`` to the list ``state[key]`` of a stored checkpoint in one statement
        (the ``threadline_append_checkpoint_state`` shortcut); its history and tag stay.
        ``False``: no such checkpoint, or its state has no list ``key``."""
        return self.append_checkpoint_text(tenant_id, checkpoint_id, key, dump_json(item, STATE))

    def append_checkpoint_text(
        self, tenant_id: str, checkpoint_id: str, key: str, text: str
    ) -> bool:
        """:meth:`append_checkpoint_state` with the item already encoded (``dump_json``)."""
        path = "$." + _key(key)
        params = (path + "[#]", text, checkpoint_id, tenant_id, path)
        return bool(connection().execute(_APPEND, params).rowcount)

    def list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        params: list[Any] = [tenant_id]
        if latest and session_id is not None:  # a restore: the newest record with its chain
            params = [session_id, tenant_id, *([agent_id] if agent_id is not None else [])]
            return chain_records(connection().execute(_LATEST_CHAIN[agent_id is not None], params))
        if session_id is not None:
            sql, agent, order = OF_SESSION, " AND agent_id = ?", " ORDER BY version"
            params.insert(0, session_id)
        else:
            sql, agent, order = _OF_TENANT, " AND c.agent_id = ?", " ORDER BY s.created_at, s.id"
            order += ", c.version"
        if agent_id is not None:
            sql += agent
            params.append(agent_id)
        if latest:
            order += " DESC LIMIT 1"
        return [record_from_row(row) for row in connection().execute(sql + order, params)]

    def rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        plan: RecordRewrite,
    ) -> int:
        with forgetting() as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute(SESSION_OF_TENANT, (session_id, tenant_id)).fetchone() is None:
                raise missing_session(session_id)
            plan.check(dict(db.execute(_TAGS, (session_id,)).fetchall()), session_id)
            changed = rewrite_records(db, session_id, plan.records, plan.delete_ids)
            db.execute("COMMIT")
        return changed

    # Derived, kept for atomicity: the plan (storekit's) and its rewrite in one transaction,
    # so a checkpoint erased or rewritten meanwhile is never written back from a stale read.
    def prune_checkpoints(self, tenant_id: str, session_id: str, keep: int, dry_run: bool) -> int:
        with forgetting(dry_run) as db:
            db.execute("BEGIN IMMEDIATE")
            rewrites, doomed = log.prune_plan(records_of_session(db, tenant_id, session_id), keep)
            if doomed and not dry_run:
                rewrite_records(db, session_id, rewrites, doomed)
            db.execute("COMMIT")
        return len(doomed)
