"""Fixtures: the machine's Redis with a key prefix of its own per test, deleted afterwards.

The server is ``THREADLINE_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``). Nothing is
flushed: each test's keys live under ``tl-test-<random>`` and are deleted (``SCAN`` +
``UNLINK``) after it. When the server cannot be reached the tests skip with the reason,
except under CI (``CI`` set), where they fail. Tests that stop a server get one of their
own (``redis_server``, :mod:`_servers`) on a free port.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-redis"

import pytest_asyncio
import redis
from _servers import RedisServer, ServerUnavailableError, start_server

import threadline
from threadline.testing import reopen_by_url

SERVER = os.environ.get("THREADLINE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    """The machine's Redis keeps nothing on disk and every connect says so: not shown
    (the tests of the warning itself catch it)."""
    config.addinivalue_line("filterwarnings", "ignore::threadline_redis.PersistenceWarning")


def _unreachable(reason: str) -> None:
    message = f"Redis not reachable at {SERVER}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` (never the rest of the server)."""
    client = redis.Redis.from_url(url)
    try:
        gone = 0
        for batch in _batches(client.scan_iter(match=f"{prefix}:*", count=1000)):
            gone += client.unlink(*batch)
        return gone
    finally:
        client.close()


def _batches(keys: Iterator[bytes], size: int = 500) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@pytest.fixture(scope="session")
def server_url() -> str:
    """The machine's Redis (checked once)."""
    try:
        client = redis.Redis.from_url(SERVER, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        _unreachable(f"{type(exc).__name__}: {exc}")
    return SERVER


@pytest.fixture
def prefix(server_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    name = f"tl-test-{secrets.token_hex(6)}"
    yield name
    delete_prefix(server_url, name)


@pytest.fixture
def make_url(server_url: str, prefix: str) -> Callable[..., str]:
    """``make_url(ttl="7d")``: the test's store URL with those options."""

    def make(**options: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items())
        return f"{server_url}?{query}"

    return make


@pytest_asyncio.fixture
async def store(make_url: Callable[..., str]) -> AsyncIterator[threadline.Store]:
    """An open, empty store under the test's own prefix."""
    opened = await threadline.connect(make_url())
    yield opened
    await opened.close()


@pytest.fixture
def reopen() -> Callable[[threadline.Store], object]:
    """The conformance kit's durability tests: close the store, connect to the prefix again."""
    return reopen_by_url


@pytest.fixture
def storage_bytes(server_url: str, prefix: str) -> Callable[[], int]:
    """The bytes Redis uses for the test's keys (``MEMORY USAGE`` summed over its prefix)."""

    def size() -> int:
        client = redis.Redis.from_url(server_url)
        try:
            return sum(
                int(client.memory_usage(key, samples=0) or 0)
                for key in client.scan_iter(match=f"{prefix}:*", count=1000)
            )
        finally:
            client.close()

    return size


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` (AOF, fsync always) a test may kill and restart."""
    try:
        with start_server(tmp_path_factory.mktemp("redis")) as server:
            yield server
    except ServerUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(str(exc))
