"""Forks share their source's stored bytes (migration 0012): the table grows by pointers."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import asyncpg

import threadline
from threadline import Message, Session
from threadline.ids import new_id
from threadline_postgres.rows import SHARED_KEY

MESSAGES, SIZE = 200, 8000


async def test_a_fork_of_big_messages_grows_the_tables_by_far_less_than_the_text(
    store: threadline.Store,
    storage_bytes: Callable[[], Awaitable[int]],
    database_url: str,
    fresh_schema: str,
) -> None:
    tenant = new_id()
    source = await store.create_session(Session(tenant_id=tenant, user_id=new_id()))
    made = await store.save_messages(
        [
            Message(session_id=source.id, tenant_id=tenant, role="user", content=text)
            for text in (secrets.token_hex(SIZE // 2) for _ in range(MESSAGES))
        ]
    )
    before = await storage_bytes()
    fork = await store.fork_session(tenant, source.id, at=made[-1].id)
    last_of_fork = (await store.get_messages(tenant, fork.id))[-1]
    second = await store.fork_session(tenant, fork.id, at=last_of_fork.id)  # a fork of the fork
    grown = await storage_bytes() - before
    assert grown < MESSAGES * SIZE * 2 // 10, f"two forks grew the tables by {grown:,} bytes"
    for sid in (fork.id, second.id):
        assert [m.content for m in await store.get_messages(tenant, sid)] == [
            m.content for m in made
        ]
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        table = f'"{fresh_schema}".entity_message'
        sharing = f"SELECT count(*) FROM {table} WHERE metadata ? '{SHARED_KEY}' AND content = ''"
        shared = await conn.fetchval(sharing)
        assert shared == 2 * MESSAGES  # both forks point at the source's rows
        assert await store.delete_session(tenant, source.id)  # the bytes are copied first
        assert await conn.fetchval(sharing) == 0
    finally:
        await conn.close()
    for sid in (fork.id, second.id):
        assert [m.content for m in await store.get_messages(tenant, sid)] == [
            m.content for m in made
        ]
