"""Tenant keys (migration 0008) and hash partitions by tenant (``?partitions=N``, 0009).

The conformance groups of messages and checkpoints run on a partitioned schema; an
existing database made by the migrations before 0008 and filled through the store
upgrades in place, with and without partitions: every session, message, API call and
checkpoint reads back equal, seqs and versions go on from where they were, and the keys
hold the tenant.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

import threadline
from threadline import AgentConfig, AgentRecord, ApiCall, Checkpoint, ConfigurationError, Store
from threadline.testing import (
    BranchingConformance,
    CheckpointConformance,
    ContractConformance,
    MessageConformance,
    MessageDeletionConformance,
    RetentionConformance,
    ScalingConformance,
    SessionConformance,
    TenancyConformance,
)
from threadline.testing._support import Conversation, new_conversation
from threadline_postgres import parse_config
from threadline_postgres.schema import MIGRATIONS, migrate
from threadline_postgres.sql import Statements

BEFORE_TENANT_KEYS = MIGRATIONS[: [m.name for m in MIGRATIONS].index("0008_tenant_keys")]
PARTITIONS = 4


class TestPartitionedConformance(
    MessageConformance,
    SessionConformance,
    TenancyConformance,
    CheckpointConformance,
    ContractConformance,
    MessageDeletionConformance,
    RetentionConformance,
    ScalingConformance,
    BranchingConformance,
):
    """The conformance groups that read or write messages and checkpoints, on a schema
    whose messages and checkpoints are partitioned (the groups left out, agent configs,
    bad input, durability and usage, touch only unpartitioned tables or none of the
    statements partitions change; they run in ``test_conformance.py``)."""

    @pytest_asyncio.fixture
    async def store(
        self, make_url: Callable[..., str], fresh_schema: str
    ) -> AsyncIterator[threadline.Store]:
        opened = await threadline.connect(make_url(schema=fresh_schema, partitions=PARTITIONS))
        yield opened
        await opened.close()


async def _fill(store: Store) -> list[Conversation]:
    """Two tenants, three sessions: rounds with tool calls, API calls, checkpoint chains."""
    a = await new_conversation(store)
    b = await new_conversation(store, tenant_id=a.tenant_id)
    c = await new_conversation(store)
    for conv in (a, b, c):
        await conv.add_round(3, tool=True)
        parent = None
        for step in range(12):  # deltas on snapshots: chains of records
            await conv.add("user", f"step {step}")
            parent = await store.create_checkpoint(
                Checkpoint(
                    tenant_id=conv.tenant_id,
                    session_id=conv.id,
                    node_id=f"n{step}",
                    parent_id=None if parent is None else parent.id,
                    state={"step": step},
                    history=await conv.messages(),
                )
            )
        await store.save_api_call(
            ApiCall(tenant_id=conv.tenant_id, session_id=conv.id, model="m", status="success")
        )
    await store.save_agent_config(
        AgentConfig(agent=AgentRecord(tenant_id=a.tenant_id, code="bot", name="Bot"))
    )
    return [a, b, c]


async def _everything(store: Store, convs: list[Conversation]) -> list[Any]:
    out: list[Any] = []
    for conv in convs:
        out.append(await store.get_session(conv.tenant_id, conv.id))
        out.append(await store.get_messages(conv.tenant_id, conv.id))
        out.append(await store.load_window(conv.tenant_id, conv.id, 2))
        out.append(await store.list_api_calls(conv.tenant_id, conv.id))
        out.append(await store.list_checkpoints(conv.tenant_id, session_id=conv.id))
        out.append(await store.get_latest_checkpoint(conv.tenant_id, conv.id))
        out.append(await store.count_messages(conv.tenant_id, conv.id))
    out.append(await store.list_agent_configs(convs[0].tenant_id))
    return out


async def _keys(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    """The primary, unique and foreign keys of the four tables distributed by tenant."""
    rows = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = $1 AND c.contype IN ('p', 'u', 'f') AND t.relname = ANY($2)",
        schema,
        ["entity_session", "entity_message", "entity_api_call", "entity_checkpoint"],
    )
    return {r["conname"]: r["def"] for r in rows}


@pytest.mark.parametrize("partitions", [0, PARTITIONS])
async def test_an_existing_database_upgrades_in_place(
    make_url: Callable[..., str], database_url: str, fresh_schema: str, partitions: int
) -> None:
    old_url = make_url(schema=fresh_schema)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, parse_config(old_url), BEFORE_TENANT_KEYS)
    finally:
        await conn.close()
    store = await threadline.connect(old_url, migrate=False)  # the schema as released
    try:
        convs = await _fill(store)
        before = await _everything(store, convs)
    finally:
        await store.close()

    url = make_url(schema=fresh_schema, **({"partitions": partitions} if partitions else {}))
    upgraded = await threadline.connect(url, migrate=False)
    try:
        assert await upgraded.migrate() == [m.name for m in MIGRATIONS[len(BEFORE_TENANT_KEYS) :]]
        assert await _everything(upgraded, convs) == before  # nothing lost or changed
        for conv in convs:  # seqs and versions go on from where they were
            count = await upgraded.count_messages(conv.tenant_id, conv.id)
            added = await upgraded.save_message(conv.message("user", "after the upgrade"))
            assert added.seq == count + 1
            latest = await upgraded.get_latest_checkpoint(conv.tenant_id, conv.id)
            assert latest is not None
            made = await upgraded.create_checkpoint(
                Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, parent_id=latest.id)
            )
            assert made.version == (latest.version or 0) + 1
        # an id another tenant holds is still refused after the upgrade
        held = (await upgraded.get_messages(convs[0].tenant_id, convs[0].id))[0]
        with pytest.raises(threadline.ConflictError):
            await upgraded.save_message(convs[2].message("user", "x", id=held.id))
    finally:
        await upgraded.close()

    conn = await asyncpg.connect(database_url)
    try:
        keys = await _keys(conn, fresh_schema)
        assert {
            f"entity_{t}_pkey" for t in ("session", "message", "api_call", "checkpoint")
        } <= set(keys)
        for name, definition in keys.items():  # every key of the tenant's tables has it
            assert "tenant_id" in definition, (name, definition)
        assert keys["entity_message_pkey"] == "PRIMARY KEY (id, tenant_id)"
        assert keys["entity_message_session_seq"] == "UNIQUE (session_id, seq, tenant_id)"
        assert "REFERENCES" in keys["entity_checkpoint_history_base_fkey"]
        partitioned = await conn.fetch(
            "SELECT c.relname, p.partstrat::text, p.partnatts FROM pg_partitioned_table p"
            " JOIN pg_class c ON c.oid = p.partrelid JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1",
            fresh_schema,
        )
        if partitions:
            assert [tuple(r) for r in partitioned] == [
                ("entity_checkpoint", "h", 1),
                ("entity_message", "h", 1),
            ]
            leaves = await conn.fetchval(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = 'entity_message'",
                fresh_schema,
            )
            assert leaves == partitions
            per_tenant = await conn.fetch(  # each tenant's rows in one partition
                "SELECT tenant_id::text AS tenant, count(DISTINCT tableoid) AS leaves"
                f' FROM "{fresh_schema}".entity_message GROUP BY tenant_id'
            )
            assert {r["tenant"] for r in per_tenant} == {c.tenant_id for c in convs}
            assert [r["leaves"] for r in per_tenant] == [1] * len(per_tenant)
        else:
            assert partitioned == []
    finally:
        await conn.close()


async def test_partitions_on_an_unpartitioned_schema_are_refused(
    make_url: Callable[..., str], fresh_schema: str
) -> None:
    await (await threadline.connect(make_url(schema=fresh_schema))).close()
    with pytest.raises(ConfigurationError, match="0009_tenant_partitions"):
        await threadline.connect(make_url(schema=fresh_schema, partitions=8))


def _relations_read(node: dict[str, Any]) -> set[str]:
    """The tables and partitions an ``EXPLAIN ANALYZE`` plan node and its children read."""
    read = (
        {node["Relation Name"]} if node.get("Actual Loops") and "Relation Name" in node else set()
    )
    for child in node.get("Plans", ()):
        read |= _relations_read(child)
    return read


async def test_reads_of_one_session_touch_one_partition(
    make_url: Callable[..., str], database_url: str, fresh_schema: str
) -> None:
    """The tenant in every read of one session lets the server prune to its partition."""
    url = make_url(schema=fresh_schema, partitions=PARTITIONS)
    store = await threadline.connect(url)
    try:
        convs = [await new_conversation(store) for _ in range(8)]  # tenants in every partition
        for conv in convs:
            await conv.add_round(3, tool=True)
            await store.create_checkpoint(
                Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id="n")
            )
    finally:
        await store.close()
    sql, conv = Statements(parse_config(url)), convs[-1]
    conn = await asyncpg.connect(database_url)
    try:
        for name, statement, args in (
            ("window", sql.window, (conv.id, conv.tenant_id, 1)),
            ("read", sql.read_messages[True, False], (conv.id, conv.tenant_id, 0, 2**62, 20)),
            ("restore", sql.latest_chain, (conv.id, conv.tenant_id, None)),
            ("callers", sql.window_callers, (conv.id, conv.tenant_id, 99, ["c"])),
        ):
            plan = json.loads(
                await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
            )
            read = _relations_read(plan[0]["Plan"])
            assert read, name
            for table in ("entity_message", "entity_checkpoint"):
                assert len({r for r in read if r.startswith(table + "_p")}) <= 1, (name, read)
    finally:
        await conn.close()
