"""What the Redis store adds to the contract: TTLs, persistence reports, URL options,
``create=False``, typed failures, cleanup of every key a session had."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis
from _servers import RedisServer, free_port

import threadline
from threadline import Message, Session, ToolCall
from threadline.errors import ConfigurationError, StoreNotFoundError, StoreUnavailableError
from threadline.ids import new_id
from threadline_redis import PersistenceWarning, RedisStore, parse_config
from threadline_redis.config import parse_duration


def _keys(url: str, prefix: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*"))
    finally:
        client.close()


def _plugin(store: threadline.Store) -> RedisStore:
    plugin = store.primary
    assert isinstance(plugin, RedisStore)
    return plugin


async def _conversation(store: threadline.Store, n: int = 4) -> Session:
    tenant = new_id()
    session = await store.create_session(Session(tenant_id=tenant, user_id=new_id()))
    await store.save_messages(
        [Message(session_id=session.id, tenant_id=tenant, role="user", content=f"m{i}")
         for i in range(n)]
    )  # fmt: skip
    return session


async def test_ttl_refreshed_by_activity_then_expires(
    make_url: Callable[..., str], server_url: str, prefix: str
) -> None:
    """With ?ttl a session lives that long after its last write: a write restarts the
    clock; afterwards it reads as gone everywhere and a later connect removes its keys."""
    store = await threadline.connect(make_url(ttl="1s"))
    session = await _conversation(store)
    t = session.tenant_id
    first = await _plugin(store).expires_at(t, session.id)
    assert first is not None
    assert timedelta(0) < first - datetime.now(timezone.utc) <= timedelta(seconds=1)
    expires = first
    # 1.25 s in all, a write every 0.25 s: a loaded machine has 0.75 s to spare per write
    for _ in range(5):
        await asyncio.sleep(0.25)
        await store.save_message(Message(session_id=session.id, tenant_id=t, role="user"))
        later = await _plugin(store).expires_at(t, session.id)
        assert later is not None and later > expires, "a write did not restart the clock"
        expires = later
    assert datetime.now(timezone.utc) > first  # alive past the first write's TTL
    assert await store.get_session(t, session.id) is not None
    assert await store.count_messages(t, session.id) == 9
    # No more writes: gone once the TTL has passed (polled, however slow the machine).
    while await store.get_session(t, session.id) is not None:
        assert datetime.now(timezone.utc) < expires + timedelta(seconds=30), "never expired"
        await asyncio.sleep(0.05)
    assert datetime.now(timezone.utc) >= expires - timedelta(milliseconds=50), "gone early"
    assert await store.list_sessions(t) == []
    assert await store.get_messages(t, session.id) == []
    assert await _plugin(store).expires_at(t, session.id) is None
    await store.close()
    again = await threadline.connect(make_url())  # opening sweeps expired sessions
    await again.close()
    assert _keys(server_url, prefix) == [f"{prefix}:meta"]


async def test_ttl_keys_carry_a_redis_expiry(
    make_url: Callable[..., str], server_url: str, prefix: str
) -> None:
    """Every key of a TTL session carries a Redis expiry past the TTL, so memory is freed
    even if no client ever sweeps; sessions without ?ttl never expire."""
    store = await threadline.connect(make_url(ttl="7d"))
    session = await _conversation(store)
    plain = await threadline.connect(make_url())
    other = await _conversation(plain)
    client = redis.Redis.from_url(server_url, decode_responses=True)
    try:
        for key in client.scan_iter(match=f"{prefix}:*{session.id}*"):
            assert client.pttl(key) > 7 * 86400 * 1000, key
        for key in client.scan_iter(match=f"{prefix}:*{other.id}*"):
            assert client.pttl(key) == -1, key
    finally:
        client.close()
    # the TTL belongs to the session: a client without ?ttl keeps refreshing it
    await plain.save_message(Message(session_id=session.id, tenant_id=session.tenant_id,
                                     role="user"))  # fmt: skip
    assert await _plugin(plain).expires_at(session.tenant_id, session.id) is not None
    await store.close()
    await plain.close()


async def test_delete_removes_every_key_and_index_entry(
    make_url: Callable[..., str], server_url: str, prefix: str
) -> None:
    """Deleting a session leaves no key and no id-index entry of it behind."""
    store = await threadline.connect(make_url())
    session = await _conversation(store)
    await store.save_api_call(
        threadline.ApiCall(tenant_id=session.tenant_id, session_id=session.id, model="m",
                           status="success")
    )  # fmt: skip
    await store.create_checkpoint(
        threadline.Checkpoint(tenant_id=session.tenant_id, session_id=session.id)
    )
    before = _keys(server_url, prefix)
    assert any(session.id in k for k in before)
    assert await store.delete_session(session.tenant_id, session.id)
    await store.close()
    client = redis.Redis.from_url(server_url, decode_responses=True)
    try:
        for key in _keys(server_url, prefix):
            assert session.id not in key
            kind = client.type(key)
            if kind == "hash":
                assert not any(session.id in v for v in client.hvals(key)), key
            elif kind == "zset":
                assert not any(session.id in v for v in client.zrange(key, 0, -1)), key
    finally:
        client.close()


async def test_persistence_reported(
    make_url: Callable[..., str], redis_server: RedisServer
) -> None:
    """connect warns when the server keeps nothing on disk and is quiet with an AOF."""
    with pytest.warns(PersistenceWarning, match="keeps nothing on disk"):
        store = await threadline.connect(make_url())
    assert _plugin(store).persistence == 'nothing on disk (appendonly no, save "")'
    await store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = await threadline.connect(redis_server.url)
    assert _plugin(store).persistence == "appendonly yes, appendfsync always"
    await store.close()


def test_cli_migrate_shows_one_warning_line(make_url: Callable[..., str]) -> None:
    """``threadline migrate`` prints the migration and the persistence warning (one line)."""
    done = subprocess.run(
        [sys.executable, "-m", "threadline.cli", "migrate", make_url()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "applied 0001_redis_layout" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "keeps nothing on disk" in lines[0], done.stderr


async def test_create_false_refuses_an_empty_prefix(
    make_url: Callable[..., str], server_url: str, prefix: str
) -> None:
    """create=False on a prefix without threadline data: StoreNotFoundError, no key made."""
    with pytest.raises(StoreNotFoundError, match="no store at"):
        await threadline.connect(make_url(), create=False)
    assert _keys(server_url, prefix) == []
    store = await threadline.connect(make_url())
    await store.close()
    reopened = await threadline.connect(make_url(), create=False)
    await reopened.close()


async def test_unreachable_server_is_typed() -> None:
    """Nothing listening: StoreUnavailableError within the timeout, password never shown."""
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0?timeout=0.5&retries=1"
    with pytest.raises(StoreUnavailableError) as caught:
        await asyncio.wait_for(threadline.connect(url), 10)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("?prefx=a", "unknown option"),
        ("?ttl=soon", "not a duration"),
        ("?timeout=-1", "at least"),
        ("?prefix=a b", "without spaces"),
    ],
)
async def test_bad_options_are_refused(query: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        await threadline.connect("redis://127.0.0.1:6379/0" + query)


def test_url_parsing() -> None:
    config = parse_config("rediss://u:pw@example.com:6380/3?prefix=app&ttl=2w&timeout=2")
    assert (config.host, config.port, config.db, config.ssl) == ("example.com", 6380, 3, True)
    assert (config.prefix, config.ttl, config.timeout) == ("app", 14 * 86400, 2.0)
    assert "pw" not in repr(config) and "pw" not in config.display
    assert [parse_duration(t) for t in ("90", "90s", "30m", "12h", "7d")] == [
        90, 90, 1800, 43200, 604800,
    ]  # fmt: skip
    with pytest.raises(ConfigurationError, match="database number"):
        parse_config("redis://127.0.0.1/zero")


async def test_window_override_answers_as_the_core_default(store: threadline.Store) -> None:
    """load_window (kept for speed) gives exactly the core default's window: system
    messages anywhere, tool calls whose results lie rounds apart, every size."""
    rng = random.Random(18)
    plugin = _plugin(store)
    for _ in range(12):
        session = await store.create_session(Session(tenant_id=new_id()))
        t, sid = session.tenant_id, session.id
        batch: list[Message] = []
        for i in range(rng.randrange(1, 120)):
            kind = rng.random()
            if kind < 0.05:
                batch.append(Message(session_id=sid, tenant_id=t, role="system", content=f"s{i}"))
            elif kind < 0.45:
                batch.append(Message(session_id=sid, tenant_id=t, role="user", content=f"u{i}"))
            elif kind < 0.6:
                call = ToolCall(id=f"c{i}", name="f", arguments={"i": i})
                batch.append(
                    Message(session_id=sid, tenant_id=t, role="assistant", tool_calls=[call])
                )
                for _ in range(rng.randrange(0, 12)):  # rounds between a call and its result
                    batch.append(Message(session_id=sid, tenant_id=t, role="user"))
                batch.append(
                    Message(session_id=sid, tenant_id=t, role="tool", tool_call_id=f"c{i}")
                )
            else:
                batch.append(Message(session_id=sid, tenant_id=t, role="assistant", content="a"))
        await store.save_messages(batch)
        for rounds in (None, 0, 1, 2, 3, 5, 10, 64, 65, 1000):
            expected = await plugin._default_window(t, sid, rounds)
            assert await store.load_window(t, sid, rounds) == expected, rounds
