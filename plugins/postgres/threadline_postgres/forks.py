"""Forks on PostgreSQL: a fork's messages share the stored bytes of the session they came from.

``threadline_fork_messages`` is one transaction: the fork's session row locked, then one
``INSERT ... SELECT`` writes the fork's rows with the source's seqs, each big one naming the
row that holds its content and tool calls (under :data:`~threadline_postgres.rows.SHARED_KEY`
in its metadata, migration 0012: the source's row, or the row the source's row itself names,
so a fork of a fork reads one row away) with an empty content; short messages, where a
pointer saves nothing, are copied. The counters follow in the same transaction, so an
interrupted fork left nothing and a retry finds the finished one. Reads select the plain
columns and resolve the shared rows they got after the read, by one more query
(:func:`resolve_shared`), so reads of rows that share nothing pay nothing; a trigger copies
the bytes into the sharing rows before a source row changes or goes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from threadline.errors import NotFoundError
from threadline.hookspecs import hookimpl
from threadline.models import Message
from threadline.storekit.forks import copied_id, fork_message_id
from threadline_postgres.rows import SHARED_KEY, shared_messages, unshare

if TYPE_CHECKING:
    import asyncpg

    from threadline_postgres.pool import PooledStore

    _Base = PooledStore
else:
    _Base = object

__all__ = ["SHARE_FROM", "Forks", "resolve_shared", "shared_statement"]

SHARE_FROM = 128
"""Bytes of content and tool calls from which a fork's row shares its source's instead of
holding a copy (below it the pointer and the read's lookup cost more than they save)."""


def fork_statements(table: str, sessions: str) -> dict[str, str]:
    """The fork's statements on the (schema-qualified) message and session tables."""
    return {
        "lock": (
            f"SELECT last_seq, deleted_seqs FROM {sessions} "
            "WHERE id = $1::uuid AND tenant_id = $2::uuid FOR UPDATE"
        ),
        "ids": (
            f"SELECT seq, id FROM {table} WHERE session_id = $1::uuid AND tenant_id = $2::uuid "
            "AND seq <= $3::bigint ORDER BY seq"
        ),
        # The source's rows (m) resolved to the row holding their bytes (o); $1 fork, $2
        # tenant, $3 source ids, $4 the fork's ids, $5 the threshold.
        "insert": f"""
            INSERT INTO {table} (id, session_id, tenant_id, seq, role, content, user_id,
                agent_id, tool_calls, call_ids, tool_call_id, name, status, metadata,
                created_at)
            SELECT r.new_id, $1::uuid, $2::uuid, r.seq, r.role,
                   CASE WHEN r.big THEN '' ELSE r.content END, r.user_id, r.agent_id,
                   CASE WHEN r.big THEN NULL ELSE r.tool_calls END, r.call_ids,
                   r.tool_call_id, r.name, r.status,
                   CASE WHEN r.big THEN r.metadata || jsonb_build_object('{SHARED_KEY}', r.holder)
                        ELSE r.metadata END, r.created_at
            FROM (
                SELECT c.*, octet_length(c.content)
                           + coalesce(octet_length(c.tool_calls::text), 0) >= $5::int AS big
                FROM (
                    SELECT n.new_id, m.seq, m.role, m.user_id, m.agent_id, m.call_ids,
                           m.tool_call_id, m.name, m.status, m.created_at,
                           m.metadata - '{SHARED_KEY}' AS metadata,
                           CASE WHEN o.id IS NULL THEN m.content ELSE o.content END AS content,
                           CASE WHEN o.id IS NULL THEN m.tool_calls
                                ELSE o.tool_calls END AS tool_calls,
                           coalesce(o.id, m.id) AS holder
                    FROM unnest($3::uuid[], $4::uuid[]) AS n(id, new_id)
                    JOIN {table} m ON m.id = n.id AND m.tenant_id = $2::uuid
                    LEFT JOIN {table} o ON m.content = '' AND m.metadata ? '{SHARED_KEY}'
                        AND o.id = (m.metadata->>'{SHARED_KEY}')::uuid AND o.tenant_id = $2::uuid
                ) AS c
            ) AS r""",
        "counters": (
            f"UPDATE {sessions} SET last_seq = $3::bigint, deleted_seqs = $4::bigint, "
            "updated_at = GREATEST(updated_at, now()) WHERE id = $1::uuid AND tenant_id = $2::uuid"
        ),
        "summaries": (
            f"SELECT id, metadata->'summary'->>'previous' AS previous FROM {table} "
            "WHERE session_id = $1::uuid AND tenant_id = $2::uuid AND role = 'system' "
            "AND metadata->'summary'->>'previous' IS NOT NULL"
        ),
        "rename": (
            f"UPDATE {table} SET metadata = jsonb_set(metadata, '{{summary,previous}}', "
            "to_jsonb($3::text)) WHERE id = $1::uuid AND tenant_id = $2::uuid"
        ),
    }


def shared_statement(table: str) -> str:
    """The content and tool calls of the rows ``$2`` (ids) of tenant ``$1``, with the row
    each names when it is itself a shared one (a fork of a fork whose source went after)."""
    return (
        f"SELECT id, content, tool_calls, CASE WHEN content = '' THEN metadata->>'{SHARED_KEY}' "
        f"END AS shared_from FROM {table} WHERE tenant_id = $1::uuid AND id = ANY($2::uuid[])"
    )


_HOPS = 8  # rows a pointer may lead through (a fork writes pointers one row away)


async def resolve_shared(
    fetch: Callable[..., Awaitable[list[Any]]], table: str, messages: list[Message]
) -> list[Message]:
    """``messages`` (just built from rows by :func:`~threadline_postgres.rows.message_from_row`)
    with a fork's shared rows filled in place from the rows they name, one query per tenant
    (and per hop of a pointer to a pointer): nothing is sent when no row is shared.
    ``fetch(statement, *args)`` runs a query (a store's ``_fetch`` or a connection's)."""
    pending = shared_messages(messages)
    for _ in range(_HOPS):
        if not pending:
            return messages
        later: list[Message] = []
        tenants: dict[str, list[Message]] = {}
        for m in pending:
            tenants.setdefault(m.tenant_id, []).append(m)
        for tenant, group in tenants.items():
            ids = list({str(m.metadata[SHARED_KEY]) for m in group})
            found = {r["id"]: r for r in await fetch(shared_statement(table), tenant, ids)}
            for m in group:
                row = found.get(str(m.metadata[SHARED_KEY]))
                if row is not None and row["shared_from"] is not None:  # it shares too
                    m.metadata[SHARED_KEY] = row["shared_from"]  # the message's own copy
                    later.append(m)
                else:
                    unshare(m, None if row is None else row["content"],
                            None if row is None else row["tool_calls"])  # fmt: skip
        pending = later
    for m in pending:  # a loop of pointers (never written): the rows' own values
        unshare(m, None, None)
    return messages


class Forks(_Base):
    """Forking a session inside the database (see :mod:`threadline.store.branching`)."""

    @hookimpl
    async def threadline_fork_messages(
        self, tenant_id: str, session_id: str, fork_id: str, last_seq: int
    ) -> int:
        """The fork's rows in one transaction, sharing the source's big values."""
        sql = fork_statements(self.sql.tables["entity_message"], self.sql.tables["entity_session"])

        async def run(conn: asyncpg.Connection) -> int:
            fork = await conn.fetchrow(sql["lock"], fork_id, tenant_id)
            if fork is None:
                raise NotFoundError(f"session {fork_id} not found for this tenant")
            if fork["last_seq"]:  # a retry: the fork is filled
                return int(fork["last_seq"] - fork["deleted_seqs"])
            rows = await conn.fetch(sql["ids"], session_id, tenant_id, last_seq)
            if not rows:
                return 0
            ids = [str(r["id"]) for r in rows]
            new = [fork_message_id(session_id, fork_id, i) for i in ids]
            await conn.execute(sql["insert"], fork_id, tenant_id, ids, new, SHARE_FROM)
            for r in await conn.fetch(sql["summaries"], fork_id, tenant_id):
                renamed = copied_id(fork_id, r["previous"])
                await conn.execute(sql["rename"], r["id"], tenant_id, renamed)
            cut = int(rows[-1]["seq"])
            await conn.execute(sql["counters"], fork_id, tenant_id, cut, cut - len(rows))
            return len(rows)

        return await self._call("fork_messages", run, transaction=True)
