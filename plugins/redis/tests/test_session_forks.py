"""Layout 2 (``0002_fork_index``): a store written by layout 1 gets its forks indexed."""

from __future__ import annotations

from collections.abc import Callable

import redis

import threadline
from threadline import Message, Session
from threadline.ids import new_id


async def test_0002_indexes_the_forks_a_layout_1_store_holds(
    make_url: Callable[..., str], server_url: str, prefix: str
) -> None:
    """Forks written without a forks index (layout 1: no ``fk`` field, no index key) are
    listed once ``migrate`` ran; a session whose metadata holds no canonical origin is not;
    a second ``migrate`` applies nothing."""
    url = make_url()
    store = await threadline.connect(url)
    tenant = new_id()
    try:
        source = await store.create_session(Session(tenant_id=tenant))
        made = await store.save_messages(
            [Message(session_id=source.id, tenant_id=tenant, role="user", content=f"m{i}")
             for i in range(3)]
        )  # fmt: skip
        forks = [await store.fork_session(tenant, source.id, at=made[i].id) for i in (0, 2)]
        odd = await store.create_session(
            Session(tenant_id=tenant, metadata={"forked_from": {"session_id": "not-an-id"}})
        )
        plain = await store.create_session(Session(tenant_id=tenant, metadata={"a": [1]}))
    finally:
        await store.close()
    raw = redis.Redis.from_url(server_url, decode_responses=True)
    try:  # back to layout 1
        for session in (*forks, odd, plain):
            raw.hdel(f"{prefix}:s:{session.id}", "fk")
        raw.delete(f"{prefix}:t:{tenant}:f:{source.id}:s")
        raw.hset(f"{prefix}:meta", "schema", "1")
    finally:
        raw.close()

    store = await threadline.connect(url, migrate=False)
    try:
        assert await store.list_branches(tenant, source.id) == []  # not indexed yet
        assert await store.migrate() == ["0002_fork_index"]
        assert await store.migrate() == []
        assert [b.id for b in await store.list_branches(tenant, source.id)] == [f.id for f in forks]
        assert await store.list_sessions(tenant, forked_from=plain.id) == []
        assert len(await store.list_sessions(tenant)) == 5
    finally:
        await store.close()
