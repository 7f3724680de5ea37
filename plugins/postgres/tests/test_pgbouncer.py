"""The store through a real PgBouncer, in transaction and in session mode.

Each mode gets a pgbouncer of its own (``TempPgBouncer``: a free port, a temporary folder,
trust auth) in front of the usual server, with few server connections so that client
connections share them. With the default URL (``pooler=auto``) the store finds the pooler
at connect and uses unnamed statements; the conformance kit passes through it. Before, the
default URL failed through a transaction-mode pooler with ``prepared statement
"__asyncpg_stmt_N__" does not exist`` and worse.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

import threadline
from threadline.testing import (
    AgentConfigConformance,
    CheckpointConformance,
    ContractConformance,
    DurabilityConformance,
    MessageConformance,
    MessageDeletionConformance,
    SessionConformance,
    TenancyConformance,
)
from threadline.testing._support import new_conversation
from threadline.urls import StoreURL
from threadline_postgres import PostgresStore
from threadline_postgres.cluster import ClusterUnavailableError, TempPgBouncer
from threadline_postgres.pooler import PoolerModeError


def _bouncer(database_url: str, mode: str, pool_size: int) -> Iterator[TempPgBouncer]:
    port = StoreURL.parse(database_url).port or 5432
    try:
        with TempPgBouncer(port, pool_mode=mode, pool_size=pool_size) as bouncer:
            yield bouncer
    except ClusterUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def transaction_bouncer(database_url: str) -> Iterator[TempPgBouncer]:
    """pgbouncer in transaction mode with 3 server connections for every client."""
    yield from _bouncer(database_url, "transaction", 3)


@pytest.fixture(scope="module")
def session_bouncer(database_url: str) -> Iterator[TempPgBouncer]:
    """pgbouncer in session mode (enough server connections for the stores' pools)."""
    yield from _bouncer(database_url, "session", 30)


def _through(bouncer: TempPgBouncer, database_url: str, **options: object) -> str:
    database = StoreURL.parse(database_url).path.lstrip("/")
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return bouncer.url(database) + (f"?{query}" if query else "")


async def _open_migrated(url: str, database_url: str, schema: str) -> threadline.Store:
    """``url`` opened without migrating, after migrating ``schema`` on the server directly
    (migrations through a pooler are covered by the busy tests below; here they would take
    most of each test's time)."""
    direct = await threadline.connect(f"{database_url}?schema={schema}")
    await direct.close()
    return await threadline.connect(url, migrate=False)


def _plugin(store: threadline.Store) -> PostgresStore:
    plugin = store.primary
    assert isinstance(plugin, PostgresStore)
    return plugin


class TransactionModeKit(
    MessageConformance,
    SessionConformance,
    TenancyConformance,
    CheckpointConformance,
    ContractConformance,
    MessageDeletionConformance,
    AgentConfigConformance,
    DurabilityConformance,
):
    """The conformance kit through a transaction-mode pooler: every group that runs other
    statements (bad input, retention and timings run the same ones as these)."""


@pytest.mark.slow  # about 45 s: run once (py311), not on every Python
class TestTransactionMode(TransactionModeKit):
    @pytest_asyncio.fixture
    async def store(
        self, transaction_bouncer: TempPgBouncer, database_url: str, fresh_schema: str
    ) -> AsyncIterator[threadline.Store]:
        url = _through(transaction_bouncer, database_url, schema=fresh_schema)
        opened = await _open_migrated(url, database_url, fresh_schema)
        assert _plugin(opened).config.statement_cache_size == 0, "the pooler was not detected"
        yield opened
        await opened.close()


@pytest.mark.slow  # run once (py311), not on every Python
class TestSessionMode(MessageConformance, ContractConformance):
    @pytest_asyncio.fixture
    async def store(
        self, session_bouncer: TempPgBouncer, database_url: str, fresh_schema: str
    ) -> AsyncIterator[threadline.Store]:
        url = _through(session_bouncer, database_url, schema=fresh_schema, pooler="session")
        opened = await _open_migrated(url, database_url, fresh_schema)
        assert _plugin(opened).config.statement_cache_size == 256, "session mode keeps the cache"
        yield opened
        await opened.close()


async def _busy(url: str, tasks: int = 24, rounds: int = 4) -> list[BaseException]:
    """Many conversations at once, each running many different statements; their errors."""
    store = await threadline.connect(url)
    errors: list[BaseException] = []

    async def conversation(n: int) -> None:
        try:
            conv = await new_conversation(store)
            for r in range(rounds):
                await conv.add_round(r, tool=r % 2 == 0)
                window = await store.load_window(conv.tenant_id, conv.id, 2)
                assert window and window[-1].content == f"answer {r}"
                assert (
                    await store.count_messages(conv.tenant_id, conv.id)
                    == (r // 2 + 1) * 4 + ((r + 1) // 2) * 2
                )
                await store.list_sessions(conv.tenant_id, limit=5)
        except BaseException as exc:  # collected: the test reports them all
            errors.append(exc)

    try:
        await asyncio.gather(*(conversation(n) for n in range(tasks)))
    finally:
        await store.close()
    return errors


async def test_many_conversations_through_a_transaction_pooler_by_default(
    transaction_bouncer: TempPgBouncer, database_url: str, fresh_schema: str
) -> None:
    """The default URL through a transaction-mode pooler: no statement is lost or mixed up."""
    url = _through(transaction_bouncer, database_url, schema=fresh_schema, max_size=8)
    errors = await _busy(url)
    assert errors == []


async def test_a_pooler_the_url_denies_breaks_with_an_error_naming_it(
    transaction_bouncer: TempPgBouncer, database_url: str, fresh_schema: str
) -> None:
    """``pooler=none`` through a transaction pooler: a typed error that says what to set."""
    url = _through(transaction_bouncer, database_url, schema=fresh_schema, pooler="none")
    errors = await _busy(url, tasks=12, rounds=2)
    assert errors, "named statements went through a transaction pooler unharmed"
    assert all(isinstance(e, PoolerModeError) for e in errors), errors[:3]
    message = str(errors[0])
    assert "pooler=transaction" in message and "pooler=none" in message


async def test_the_direct_server_keeps_named_statements(store: threadline.Store) -> None:
    """No pooler: the check at connect passes and the statement cache stays on."""
    assert _plugin(store).config.statement_cache_size == 256
