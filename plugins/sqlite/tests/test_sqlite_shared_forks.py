"""Forks share their source's stored bytes (migration 0012): the file grows by pointers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from _sqlite_support import query

import threadline
from threadline import Message, Session
from threadline.ids import new_id

MESSAGES, SIZE = 200, 8000


async def test_a_fork_of_big_messages_grows_the_file_by_far_less_than_the_text(
    store: threadline.Store, storage_bytes: Callable[[], int], db_path: Path
) -> None:
    tenant = new_id()
    source = await store.create_session(Session(tenant_id=tenant, user_id=new_id()))
    made = await store.save_messages(
        [
            Message(session_id=source.id, tenant_id=tenant, role="user", content=text)
            for text in (secrets.token_hex(SIZE // 2) for _ in range(MESSAGES))
        ]
    )
    before = storage_bytes()
    fork = await store.fork_session(tenant, source.id, at=made[-1].id)
    last_of_fork = (await store.get_messages(tenant, fork.id))[-1]
    second = await store.fork_session(tenant, fork.id, at=last_of_fork.id)  # a fork of the fork
    grown = storage_bytes() - before
    assert grown < MESSAGES * SIZE * 2 // 10, f"two forks grew the file by {grown:,} bytes"
    for sid in (fork.id, second.id):
        assert [m.content for m in await store.get_messages(tenant, sid)] == [
            m.content for m in made
        ]
    # every row of both forks points at the source's row (a fork of a fork reads one away)
    key = query(db_path, "SELECT key FROM entity_session WHERE id = ?", (source.id,))[0][0]
    shared = query(
        db_path, "SELECT count(*) FROM entity_message WHERE shared_key = ? AND content = ''", (key,)
    )
    assert shared == [(2 * MESSAGES,)]
    # the source goes: its bytes are copied into both forks' rows first
    assert await store.delete_session(tenant, source.id)
    assert query(db_path, "SELECT count(*) FROM entity_message WHERE shared_key IS NOT NULL") == [
        (0,)
    ]
    for sid in (fork.id, second.id):
        assert [m.content for m in await store.get_messages(tenant, sid)] == [
            m.content for m in made
        ]
