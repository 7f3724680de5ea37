"""Checkpoint records on PostgreSQL: the record hooks of the required tier.

The core's checkpoint log (:mod:`threadline.storekit.log`) encodes histories, keeps the
history cache and plans prunes and erasures; this module keeps the records. A record is a
row of ``entity_checkpoint``: ``history_delta`` holds its history record, ``history_base``
the parent it is a delta on (``NULL`` for a snapshot), ``chain_depth`` and ``history_tag``
its depth and write tag. The version comes from the session row's ``last_version``
counter, bumped in the insert's transaction, so writers queue on the session row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import attrs

from threadline.codec import dump_json
from threadline.errors import NotFoundError, ThreadlineError, ValidationError
from threadline.hookspecs import hookimpl
from threadline.storekit.log import prune_plan
from threadline.storekit.records import (
    CheckpointRecord,
    RecordRewrite,
    StaleRecordError,
    id_conflict,
)
from threadline_postgres.pool import Duplicate, PooledStore
from threadline_postgres.rows import (
    ancestor_from_row,
    checkpoint_params,
    record_from_row,
    record_param,
)

__all__ = ["CheckpointRecords"]


def chain_records(rows: Iterable[Any]) -> list[CheckpointRecord]:
    """A chain's rows (head first) as records; an ancestor's JSON fields are not decoded
    (the log reads only its ids, record, depth and tag)."""
    out: list[CheckpointRecord] = []
    for row in rows:
        out.append(ancestor_from_row(row) if out else record_from_row(row))
    return out


_HEADS: dict[str, str] = {}


def _latest_head(latest_chain: str) -> str:
    """The latest-chain query returning its head row only: a recursive query is evaluated
    as its rows are fetched, so ``LIMIT 1`` stops it at the head (the non-recursive term)."""
    head = _HEADS.get(latest_chain)
    if head is None:
        body, order, _ = latest_chain.rpartition("ORDER BY depth")
        if not order:
            raise AssertionError("latest_chain no longer ends with ORDER BY depth")
        head = _HEADS[latest_chain] = body + "LIMIT 1"
    return head


class _AlreadyStored(ThreadlineError):
    """Internal signal: the checkpoint id is stored (``row``); the version bump rolls back."""

    def __init__(self, row: Any) -> None:
        super().__init__("already stored")
        self.row = row


class CheckpointRecords(PooledStore):
    """The checkpoint record hooks, and pruning in one transaction."""

    @hookimpl
    async def threadline_insert_checkpoint_record(
        self, record: CheckpointRecord, parent_tag: int | None
    ) -> CheckpointRecord:
        """Bump the session's version and insert, in one transaction; the parent's tag is
        checked with the session row locked (a rewrite of it holds that lock too)."""
        c = record.checkpoint
        params, stored = checkpoint_params(c)  # refuse bad input before writing
        t, sid, sql = c.tenant_id, c.session_id, self.sql

        async def run(conn: asyncpg.Connection) -> int:
            version = await conn.fetchval(sql.bump_version, sid, t)
            if version is None:
                raise NotFoundError(f"session {sid} not found for this tenant")
            existing = await conn.fetchrow(sql.checkpoint_by_id, c.id)
            if existing is not None:
                raise _AlreadyStored(existing)
            if c.parent_id is not None:
                link = await conn.fetchrow(sql.checkpoint_link, c.parent_id, t)
                if link is None or link["session_id"] != sid:
                    raise NotFoundError(f"parent checkpoint {c.parent_id} not found")
                if parent_tag is not None and link["history_tag"] != parent_tag:
                    raise StaleRecordError(f"checkpoint {c.parent_id} was rewritten")
            await conn.execute(
                sql.insert_checkpoint, c.id, sid, t, c.agent_id, version, c.parent_id, *params,
                c.parent_id if record.depth else None, record_param(record), record.depth,
                record.tag,
            )  # fmt: skip
            return int(version)

        try:
            version = await self._call("insert_checkpoint_record", run, transaction=True)
        except _AlreadyStored as signal:
            found = record_from_row(signal.row)
            if found.checkpoint.session_id != sid:
                raise id_conflict("checkpoint", c.id) from None
            return found
        except Duplicate:  # inserted meanwhile in another session
            raise id_conflict("checkpoint", c.id) from None
        return attrs.evolve(record, checkpoint=attrs.evolve(stored, version=version))

    @hookimpl
    async def threadline_read_checkpoint_records(
        self, tenant_id: str, checkpoint_id: str, chain: bool
    ) -> list[CheckpointRecord]:
        """The record, and with ``chain`` its bases back to the snapshot, in one query."""
        query = self.sql.checkpoint_chain if chain else self.sql.checkpoint_record
        rows = await self._fetch("read_checkpoint_records", query, checkpoint_id, tenant_id)
        return chain_records(rows)

    @hookimpl
    async def threadline_read_checkpoint_head(
        self,
        tenant_id: str,
        checkpoint_id: str | None,
        session_id: str | None,
        agent_id: str | None,
    ) -> CheckpointRecord | None:
        """The record a chain read starts with, alone (a shortcut): one row where the
        history cache holds its history, instead of the chain."""
        args: tuple[str | None, ...]
        if checkpoint_id is not None:
            what, query, args = "read_checkpoint_records", self.sql.checkpoint_record, (
                checkpoint_id, tenant_id,
            )  # fmt: skip
        else:
            what, query, args = "list_checkpoint_records", _latest_head(self.sql.latest_chain), (
                session_id, tenant_id, agent_id,
            )  # fmt: skip
        row = await self._fetchrow(what, query, *args)
        return record_from_row(row) if row is not None else None

    @hookimpl
    async def threadline_append_checkpoint_state(
        self, tenant_id: str, checkpoint_id: str, key: str, item: Any
    ) -> bool:
        """Append ``item`` to the list ``state[key]`` of a stored checkpoint in one
        statement, committed before it returns (a shortcut); its history and tag stay.
        ``False``: no such checkpoint, or its state has no list ``key``."""
        if not key.isidentifier():
            raise ValidationError(f"state key {key!r}: an identifier is needed")
        table = self.sql.tables["entity_checkpoint"]
        query = (
            f"UPDATE {table} SET state = jsonb_set(state, ARRAY[$3::text], "
            "(state -> $3::text) || jsonb_build_array($4::jsonb)) "
            "WHERE id = $1::uuid AND tenant_id = $2::uuid "
            "AND jsonb_typeof(state -> $3::text) = 'array'"
        )
        text = dump_json(item, "checkpoint state")
        status: str = await self._call(
            "insert_checkpoint_record",
            lambda conn: conn.execute(query, checkpoint_id, tenant_id, key, text),
            retry=False,  # appending twice is not harmless
        )
        return status.split()[-1] != "0"

    @hookimpl
    async def threadline_list_checkpoint_records(
        self, tenant_id: str, session_id: str | None, agent_id: str | None, latest: bool
    ) -> list[CheckpointRecord]:
        """By version (tenant-wide: sessions in creation order), or the latest one."""
        what = "list_checkpoint_records"
        if session_id is None:
            rows = await self._fetch(what, self.sql.tenant_records, tenant_id, agent_id)
            rows = rows[-1:] if latest else rows
        elif latest:  # a restore: the newest record and its chain, one query
            rows = await self._fetch(what, self.sql.latest_chain, session_id, tenant_id, agent_id)
            return chain_records(rows)
        else:
            rows = await self._fetch(
                what, self.sql.session_records, session_id, tenant_id, agent_id
            )
        return [record_from_row(r) for r in rows]

    @hookimpl
    async def threadline_rewrite_checkpoint_records(
        self,
        tenant_id: str,
        session_id: str,
        plan: RecordRewrite,
    ) -> int:
        """Rewrite and delete in one transaction, the session row locked (an insert holds
        it too), if the session's records still carry the tags the plan read."""

        async def run(conn: asyncpg.Connection) -> int:
            if await conn.fetchrow(self.sql.lock_session, session_id, tenant_id) is None:
                raise NotFoundError(f"session {session_id} not found for this tenant")
            tags = {
                r["id"]: r["history_tag"]
                for r in await conn.fetch(self.sql.session_tags, session_id, tenant_id)
            }
            plan.check(tags, session_id)
            return await self._rewrite_records(
                conn, tenant_id, session_id, plan.records, plan.delete_ids
            )

        return await self._call("rewrite_checkpoint_records", run, transaction=True)

    async def _rewrite_records(
        self,
        conn: asyncpg.Connection,
        tenant_id: str,
        session_id: str,
        records: Sequence[CheckpointRecord],
        delete_ids: Sequence[str],
    ) -> int:
        """Apply a rewrite plan inside the caller's transaction (the session row locked)."""
        if records:
            await conn.executemany(
                self.sql.rewrite_record,
                [(r.id, session_id, record_param(r), r.depth, r.tag, tenant_id) for r in records],
            )
        gone = []
        if delete_ids:
            gone = await conn.fetch(
                self.sql.delete_records, session_id, list(delete_ids), tenant_id
            )
        return len(records) + len(gone)

    # Overrides the default for atomicity: the plan is read and applied under the session
    # row's lock, so a checkpoint written (or erased) meanwhile keeps its base and history.
    @hookimpl
    async def threadline_prune_checkpoints(
        self, tenant_id: str, session_id: str, keep: int, dry_run: bool
    ) -> int:
        """The store kit's prune plan (:func:`threadline.storekit.log.prune_plan`), in one
        transaction: kept deltas on a doomed base become snapshots, then the rest goes."""

        async def run(conn: asyncpg.Connection) -> int:
            if await conn.fetchrow(self.sql.lock_session, session_id, tenant_id) is None:
                return 0
            rows = await conn.fetch(self.sql.session_records, session_id, tenant_id, None)
            rewrites, doomed = prune_plan([record_from_row(r) for r in rows], keep)
            if doomed and not dry_run:
                await self._rewrite_records(conn, tenant_id, session_id, rewrites, doomed)
            return len(doomed)

        return await self._call("prune_checkpoints", run, transaction=True)
