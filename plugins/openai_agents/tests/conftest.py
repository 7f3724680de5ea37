"""Fixtures: a store URL of each kind installed (memory, SQLite, PostgreSQL, fsspec).

PostgreSQL: a database made for the run on ``THREADLINE_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``, dropped at the end) and a fresh schema per
test; unreachable, its tests skip (fail under ``CI``). Kinds whose plugin is not installed
skip. The local OpenAI-compatible server is ``tests/e2e/openai_server.py`` of this repo.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import pytest_asyncio

_STORES = {
    "memory": "threadline-memory",
    "sqlite": "threadline-sqlite",
    "postgres": "threadline-postgres",
    "fsspec": "threadline-fsspec",
}


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


os.environ["THREADLINE_LOAD_PLUGINS"] = ",".join(d for d in _STORES.values() if _installed(d))
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"  # nothing is sent to OpenAI's trace API

from agents import set_tracing_disabled  # noqa: E402

from threadline import Store, connect  # noqa: E402

set_tracing_disabled(True)

ROOT = Path(__file__).resolve().parents[3]
ADMIN_URL = os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = list(_STORES)


def load_openai_server() -> ModuleType:
    """The repo's local OpenAI-compatible server module (standard library only)."""
    path = ROOT / "tests" / "e2e" / "openai_server.py"
    spec = importlib.util.spec_from_file_location("threadline_test_openai_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _unreachable(reason: str) -> None:
    message = f"PostgreSQL not reachable at {ADMIN_URL}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A URL of a database made for this run (dropped afterwards)."""
    pytest.importorskip("threadline_postgres")
    from threadline_postgres.cluster import ClusterUnavailableError, temp_database

    try:
        with temp_database(ADMIN_URL, "threadline_oa") as url:
            yield url
    except ClusterUnavailableError as exc:
        _unreachable(str(exc))


def make_store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL of a new, empty store of ``kind`` that a second connect (or process) reopens."""
    pytest.importorskip(_STORES[kind].replace("-", "_"))
    if kind == "memory":
        return f"memory://oa-{secrets.token_hex(6)}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'agents.db'}"
    if kind == "fsspec":
        return f"file://{tmp_path / 'agents-store'}"
    database = request.getfixturevalue("postgres_database")
    return f"{database}?schema=t_{secrets.token_hex(5)}"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return make_store_url(kind, tmp_path, request)


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await connect(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def deletes(store: Store) -> Callable[[], None]:
    """Call to skip a test that pops or clears on a store without ``delete_messages``."""

    def check() -> None:
        if not store.pm.hook.threadline_delete_messages.get_hookimpls():
            pytest.skip(f"{store!r} does not implement threadline_delete_messages yet")

    return check
