"""Fixtures: stores of every kind the saver is tested on, each fresh per use.

``store_urls`` yields a factory ``make(kind)`` → URL of an empty store: ``memory`` (a fresh
in-process store), ``sqlite`` (a real file in a temporary folder), ``postgres`` (a schema of
its own in a database created for the run on the machine's server; skipped when the
threadline-postgres plugin or the server is absent, failing under ``CI``) and ``fsspec``
(``file://`` in a temporary folder). Kinds whose plugin is not installed skip.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

KINDS = ["memory", "sqlite", "postgres", "fsspec"]
_PLUGINS = {
    "memory": "threadline_memory",
    "sqlite": "threadline_sqlite",
    "postgres": "threadline_postgres",
    "fsspec": "threadline_fsspec",
}
ADMIN_URL = os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def require(kind: str) -> None:
    """Skip the test when the plugin of store ``kind`` is not installed."""
    if importlib.util.find_spec(_PLUGINS[kind]) is None:
        pytest.skip(f"{_PLUGINS[kind]} is not installed in this environment")


def _admin(sql: str) -> None:
    """Run ``sql`` on the admin database (in a thread: callers may be on an event loop)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database created for this test run on the machine's server (dropped afterwards)."""
    require("postgres")
    name = f"threadline_lg_{secrets.token_hex(5)}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        message = f"PostgreSQL server not reachable at {ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(message)
    base, _, _ = ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        try:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # never hide the tests' own outcome
            print(f"could not drop {name}: {exc}")


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``store_url(kind)``: the URL of a new, empty store of that kind."""
    counter = iter(range(1_000_000))

    def make(kind: str) -> str:
        require(kind)
        n = next(counter)
        if kind == "memory":
            return f"memory://lg-{secrets.token_hex(6)}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{n}.db'}"
        if kind == "fsspec":
            folder = tmp_path / f"files-{n}"
            folder.mkdir()
            return f"file://{folder}"
        database = request.getfixturevalue("postgres_database")
        return f"{database}?schema=lg_{secrets.token_hex(5)}"

    return make
