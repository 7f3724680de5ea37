"""Checkpoint chain reads probe keys without statistics (#15).

A LangGraph loop writes a session's checkpoints one by one and autovacuum may not have
analyzed the table yet: the planner knows nothing of the rows. A restore (the newest record
of a session, of an agent, and its chain of delta bases) must still probe keys: walk the
``(session_id, version, tenant_id)`` key down from the newest version and follow each
``history_base`` by the whole primary key ``(id, tenant_id)``. It did not after 0008 made
the primary key ``(id, tenant_id)``: each link was costed as a bitmap scan of ~19 rows, the
whole read past ``jit_above_cost`` (~25 ms of JIT compilation per restore), and the newest
record was found by reading and sorting every record of the session (a cost that grew with
the history: 48 ms per step at step 200 against 22 ms at step 1).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

import threadline
from threadline import Checkpoint, Message, Session
from threadline.ids import new_id
from threadline_postgres import parse_config
from threadline_postgres.sql import Statements

STEPS = 400  # checkpoints of the session: every other one of the agent
PAD = "x" * 1500  # a LangGraph state's size, under TOAST's threshold: ~100 pages of records


class Loop:
    """A session a loop wrote, never analyzed: its connection, statements and records."""

    def __init__(self, conn: asyncpg.Connection, sql: Statements, tenant: str, session: str,
                 agent: str, made: list[Checkpoint]) -> None:  # fmt: skip
        self.conn, self.sql, self.tenant, self.session = conn, sql, tenant, session
        self.agent, self.made = agent, made

    async def plan(self, statement: str, *args: Any, analyze: bool = False) -> dict[str, Any]:
        how = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
        text = await self.conn.fetchval(f"EXPLAIN ({how}) {statement}", *args)
        plan: dict[str, Any] = json.loads(text)[0]
        return plan


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's nodes that read a checkpoint table (or one of its partitions)."""
    out = [node] if node.get("Relation Name", "").startswith("entity_checkpoint") else []
    for child in node.get("Plans", ()):
        out += _scans(child)
    return out


@pytest_asyncio.fixture(params=[0, 4], ids=["plain", "partitioned"])
async def loop(
    make_url: Callable[..., str],
    database_url: str,
    fresh_schema: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Loop]:
    partitions = {"partitions": request.param} if request.param else {}
    url = make_url(schema=fresh_schema, **partitions)
    store = await threadline.connect(url)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'SET search_path TO "{fresh_schema}"')
        leaves = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r'",
            fresh_schema,
        )
        for (table,) in leaves:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        tenant, agent = new_id(), new_id()
        session = await store.create_session(Session(tenant_id=tenant))
        history: list[Message] = []
        made: list[Checkpoint] = []
        for step in range(STEPS):
            history.append(
                Message(session_id=session.id, tenant_id=tenant, role="user", content=f"m{step}")
            )
            made.append(
                await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=tenant,
                        session_id=session.id,
                        agent_id=agent if step % 2 == 0 else None,
                        parent_id=made[-1].id if made else None,
                        state={"step": step, "pad": PAD},
                        history=tuple(history),
                    )
                )
            )
        analyzed = await conn.fetchval(
            "SELECT bool_or(last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
            " FROM pg_stat_user_tables WHERE schemaname = $1 AND relname LIKE 'entity_checkpoint%'",
            fresh_schema,
        )
        assert not analyzed  # the planner has no statistics of the records
        yield Loop(conn, Statements(parse_config(url)), tenant, session.id, agent, made)
    finally:
        await conn.close()
        await store.close()


async def test_chain_reads_probe_keys_and_stay_under_the_jit_threshold(loop: Loop) -> None:
    jit_above = float(await loop.conn.fetchval("SHOW jit_above_cost"))
    s, t, a = uuid.UUID(loop.session), uuid.UUID(loop.tenant), uuid.UUID(loop.agent)
    head = uuid.UUID(loop.made[-1].id)
    reads = {
        "latest of the agent": (loop.sql.latest_chain, (s, t, a)),
        "latest": (loop.sql.latest_chain, (s, t, None)),
        "chain": (loop.sql.checkpoint_chain, (head, t)),
    }
    for name, (statement, args) in reads.items():
        plan = await loop.plan(statement, *args)
        assert plan["Plan"]["Total Cost"] < jit_above, (name, plan["Plan"]["Total Cost"])
        kinds = {n["Node Type"] for n in _scans(plan["Plan"])}
        assert kinds <= {"Index Scan"}, (name, kinds)  # no bitmap, no seq scan, no sort


async def test_the_newest_record_is_found_without_reading_the_history(loop: Loop) -> None:
    """The records a restore reads are its chain and a step or two of the version walk, not
    every record of the session."""
    s, t, a = uuid.UUID(loop.session), uuid.UUID(loop.tenant), uuid.UUID(loop.agent)
    for agent, newest in ((a, loop.made[-2]), (None, loop.made[-1])):
        rows = await loop.conn.fetch(loop.sql.latest_chain, s, t, agent)
        assert str(rows[0]["id"]) == newest.id
        assert [str(r["id"]) for r in rows[1:]] == [
            str(r["history_base"]) for r in rows[:-1]
        ]  # each row the base of the one before it
        plan = await loop.plan(loop.sql.latest_chain, s, t, agent, analyze=True)
        read = sum(n["Actual Rows"] * n["Actual Loops"] for n in _scans(plan["Plan"]))
        assert read <= len(rows) + 3, (read, len(rows))
        assert len(rows) < STEPS / 2  # the chain is cut by snapshots: the bound is not moot
    # another tenant's id finds nothing, after reading one record
    other = uuid.UUID(new_id())
    assert await loop.conn.fetch(loop.sql.latest_chain, s, other, a) == []
    plan = await loop.plan(loop.sql.latest_chain, s, other, a, analyze=True)
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in _scans(plan["Plan"])) <= 1
