"""Plans that do not depend on fresh statistics (#14), and ANALYZE after copy and import.

A schema is bulk-loaded with ``COPY`` (many sessions of one tenant, autovacuum off, no
``ANALYZE``): the planner knows nothing of the rows. Every read of one session must still
take the session's own index (``(session_id, seq)`` and its partial siblings) and never
an index led by ``tenant_id``, which made a window read scan every entry of the tenant.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

import threadline
from threadline import Message, Session
from threadline.ids import new_id
from threadline.transfer import copy_store, export_records, import_records
from threadline_postgres import parse_config
from threadline_postgres.sql import Statements

SESSIONS, PER_SESSION = 40, 1000
TENANT_INDEXES = {
    "entity_message_tenant_user",
    "entity_api_call_tenant_user",
    "entity_api_call_usage",
    "entity_checkpoint_tenant_agent",
    "entity_session_recent",
    "entity_session_user_recent",
}


class Loaded:
    """A bulk-loaded schema: its connection, statements, tenant and last session."""

    def __init__(self, conn: asyncpg.Connection, sql: Statements, tenant: uuid.UUID,
                 session: uuid.UUID) -> None:  # fmt: skip
        self.conn, self.sql, self.tenant, self.session = conn, sql, tenant, session

    async def indexes(self, statement: str, *args: Any) -> list[str]:
        """The indexes the plan of ``statement`` reads, in plan order."""
        plan = json.loads(await self.conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args))
        found: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            if "Index Name" in node:
                found.append(node["Index Name"])
            for child in node.get("Plans", ()):
                walk(child)

        walk(plan[0]["Plan"])
        # a partition's index by the name of the partitioned index it belongs to
        parents = await self.conn.fetch(
            "SELECT c.relname AS name, p.relname AS parent FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE c.relname = ANY($1) AND c.relkind = 'i'",
            found,
        )
        names = {r["name"]: r["parent"] for r in parents}
        return [names.get(name, name) for name in found]


@pytest_asyncio.fixture(params=[0, 4], ids=["plain", "partitioned"])
async def loaded(
    make_url: Callable[..., str],
    database_url: str,
    fresh_schema: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Loaded]:
    partitions = {"partitions": request.param} if request.param else {}
    url = make_url(schema=fresh_schema, **partitions)
    await (await threadline.connect(url)).close()  # migrated
    conn = await asyncpg.connect(database_url)
    await conn.execute(f'SET search_path TO "{fresh_schema}"')
    leaves = await conn.fetch(  # a partitioned table's settings are its partitions'
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind = 'r'",
        fresh_schema,
    )
    for (table,) in leaves:
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    tenant, user = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(timezone.utc)
    sessions = [uuid.uuid4() for _ in range(SESSIONS)]
    await conn.copy_records_to_table(
        "entity_session",
        records=[(s, tenant, user, now, now, PER_SESSION) for s in sessions],
        columns=["id", "tenant_id", "user_id", "created_at", "updated_at", "last_seq"],
    )
    await conn.copy_records_to_table(
        "entity_message",
        records=[
            (
                uuid.uuid4(),
                s,
                tenant,
                i + 1,
                "user" if i % 2 == 0 else "assistant",
                f"message {i}",
                uuid.uuid4(),
                "complete",
                now,
            )
            for s in sessions
            for i in range(PER_SESSION)
        ],  # fmt: skip
        columns=[
            "id",
            "session_id",
            "tenant_id",
            "seq",
            "role",
            "content",
            "user_id",
            "status",
            "created_at",
        ],  # fmt: skip
    )
    analyzed = await conn.fetchval(
        "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL FROM pg_stat_user_tables"
        " WHERE schemaname = $1 AND relname = 'entity_message'",
        fresh_schema,
    )
    assert analyzed is False  # the planner has no statistics of what was loaded
    try:
        yield Loaded(conn, Statements(parse_config(url)), tenant, sessions[-1])
    finally:
        await conn.close()


async def test_session_reads_take_the_session_index_without_statistics(loaded: Loaded) -> None:
    sql, sid, tid = loaded.sql, loaded.session, loaded.tenant
    reads: dict[str, tuple[str, tuple[Any, ...]]] = {
        "window": (sql.window, (sid, tid, 9)),
        "window_from": (sql.window_from, (sid, tid, 900)),
        "read newest": (sql.read_messages[True, False], (sid, tid, 0, 2**62, 20)),
        "read oldest": (sql.read_messages[False, False], (sid, tid, 100, 2**62, 20)),
        "read role": (sql.read_messages[True, True], (sid, tid, 0, 2**62, 20, "user")),
        "systems": (sql.window_systems, (sid, tid)),
        "callers": (sql.window_callers, (sid, tid, 900, ["call_1"])),
        "latest checkpoint": (sql.latest_chain, (sid, tid, None)),
        "checkpoints": (sql.session_records, (sid, tid, None)),
        "api calls": (sql.list_api_calls, (sid, tid)),
    }
    for name, (statement, args) in reads.items():
        used = await loaded.indexes(statement, *args)
        assert used, (name, "no index used")
        assert not TENANT_INDEXES & set(used), (name, used)
    window = await loaded.indexes(sql.window, sid, tid, 9)
    assert "entity_message_session_seq" in window
    assert "entity_message_user_turns" in window
    for key in ((True, False), (False, False)):
        assert "entity_message_session_seq" in await loaded.indexes(
            sql.read_messages[key], sid, tid, 0, 2**62, 20
        )


def _nodes(node: dict[str, Any]) -> list[str]:
    """Every node of a JSON plan as ``"<type> <relation>"``."""
    out = [f"{node['Node Type']} {node.get('Relation Name', '')}"]
    for child in node.get("Plans", ()):
        out += _nodes(child)
    return out


async def test_a_batch_append_probes_each_id_without_statistics(loaded: Loaded) -> None:
    """The check "is any id of the batch stored" reads the primary key once per id, never
    the whole table (it did: 40,000 rows read per batch of a bulk load before ANALYZE)."""
    sql, sid, tid, n = loaded.sql, loaded.session, loaded.tenant, 200
    now = datetime.now(timezone.utc)
    ids = [uuid.uuid4() for _ in range(n)]
    args = (
        sid, tid, n, ids, ["user"] * n, ["x"] * n, [None] * n, [None] * n, [None] * n,
        [None] * n, [None] * n, ["complete"] * n, ["{}"] * n, [now] * n,
    )  # fmt: skip
    for statement, values in ((sql.append_many, args), (sql.messages_by_ids, (ids,))):
        plan = json.loads(await loaded.conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *values))
        scans = _nodes(plan[0]["Plan"])
        assert "Seq Scan entity_message" not in scans, scans
    assert "entity_message_pkey" in await loaded.indexes(sql.append_many, *args)


@pytest.mark.parametrize("how", ["copy", "import"])
async def test_copy_and_import_analyze_what_they_loaded(
    make_url: Callable[..., str], database_url: str, fresh_schema: str, how: str
) -> None:
    src = await threadline.connect(make_url(schema=f"{fresh_schema}_src"))
    tenant = new_id()
    session = await src.create_session(Session(tenant_id=tenant))
    await src.save_messages([
        Message(session_id=session.id, tenant_id=tenant, role="user", content=f"m{i}")
        for i in range(30)
    ])  # fmt: skip
    dst = await threadline.connect(make_url(schema=fresh_schema))
    try:
        if how == "copy":
            assert (await copy_store(src, dst)).ok
        else:
            out = io.StringIO()
            await export_records(src, out)
            report = await import_records(dst, out.getvalue().splitlines(keepends=True))
            assert report.complete
    finally:
        await dst.close()
        await src.close()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA "{fresh_schema}_src" CASCADE')
        rows = await conn.fetch(
            "SELECT relname, last_analyze IS NOT NULL AS analyzed, n_live_tup "
            "FROM pg_stat_user_tables WHERE schemaname = $1",
            fresh_schema,
        )
        analyzed = {r["relname"]: r["analyzed"] for r in rows}
        for table in ("entity_session", "entity_message", "entity_api_call", "entity_checkpoint"):
            assert analyzed[table], (table, analyzed)
        reltuples = await conn.fetchval(
            "SELECT reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = 'entity_message'",
            fresh_schema,
        )
        assert reltuples == 30  # the planner knows what was loaded
    finally:
        await conn.close()
