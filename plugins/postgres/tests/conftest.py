"""Fixtures: a throwaway database per test run on the real PostgreSQL server.

The server is ``THREADLINE_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
used only to create and drop the run's database). Each run creates
``threadline_test_<random>`` and drops it at the end, so runs cannot see each other;
each conformance test gets a fresh schema in it. When the server cannot be reached
the tests skip with the reason, except under CI (``CI`` set), where they fail.

Tests that stop the server get ``cluster``: a throwaway one of their own on another port.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-postgres"

import asyncpg
import pytest_asyncio

import threadline
from threadline.testing import reopen_by_url
from threadline.urls import StoreURL
from threadline_postgres.cluster import (
    ClusterUnavailableError,
    TempCluster,
    temp_cluster,
    temp_database,
)

ADMIN_URL = os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def with_database(url: str, database: str, query: str = "") -> str:
    """``url`` pointing at ``database`` instead, with ``query`` options."""
    parsed = StoreURL.parse(url)
    userinfo = parsed.username or ""
    if parsed.password:
        userinfo += ":" + parsed.password
    netloc = (userinfo + "@" if userinfo else "") + (parsed.host or "")
    if parsed.port:
        netloc += f":{parsed.port}"
    return f"postgresql://{netloc}/{database}" + (f"?{query}" if query else "")


def _unreachable(reason: str) -> None:
    message = f"PostgreSQL server not reachable at {StoreURL.parse(ADMIN_URL)}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A URL to a database created for this test run (dropped afterwards)."""
    try:
        with temp_database(ADMIN_URL) as url:
            yield url
    except ClusterUnavailableError as exc:
        _unreachable(str(exc))


@pytest.fixture
def cluster() -> Iterator[TempCluster]:
    """A throwaway server (``TempCluster``) a test may stop and start; deleted afterwards.

    The server at ``THREADLINE_TEST_POSTGRES`` must be left running: its postmaster
    start time is compared before and after. No PostgreSQL server binaries here: skip,
    or fail when ``CI`` is set.
    """
    try:
        with temp_cluster(watch=ADMIN_URL) as made:
            yield made
    except ClusterUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(str(exc))


def store_url(database_url: str, **options: object) -> str:
    """``database_url`` with query options."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return database_url + (f"?{query}" if query else "")


@pytest.fixture
def make_url(database_url: str) -> Callable[..., str]:
    """``make_url(schema="x", max_size=2)``: the run's database URL with those options."""
    return functools.partial(store_url, database_url)


@pytest_asyncio.fixture
async def fresh_schema(database_url: str) -> AsyncIterator[str]:
    """The name of a schema of its own for one test (dropped afterwards)."""
    name = f"t_{secrets.token_hex(5)}"
    yield name
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def store(database_url: str, fresh_schema: str) -> AsyncIterator[threadline.Store]:
    """An open, empty store: migrated into a schema of its own."""
    opened = await threadline.connect(store_url(database_url, schema=fresh_schema))
    yield opened
    await opened.close()


@pytest.fixture
def reopen() -> Callable[[threadline.Store], object]:
    """The conformance kit's durability tests: close the store, open the same schema again."""
    return reopen_by_url


@pytest.fixture
def storage_bytes(database_url: str, fresh_schema: str) -> Callable[[], Awaitable[int]]:
    """The bytes of the test schema's tables with their indexes and TOAST."""

    async def size() -> int:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            total = await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relkind = 'r'",
                fresh_schema,
            )
            return int(total)
        finally:
            await conn.close()

    return size
