"""URL options, credentials from the environment, and passwords kept out of sight."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import threadline
from threadline import ConfigurationError, StoreUnavailableError, ThreadlineError
from threadline.ids import new_id
from threadline.models import Session
from threadline.urls import StoreURL
from threadline_postgres import PostgresStore, parse_config

SECRET = "s3cr3t-Pa55w0rd"


def test_defaults_and_options() -> None:
    config = parse_config(
        "postgresql://bob@db.example:6543/app?min_size=2&max_size=20&command_timeout=5"
        "&connect_timeout=1.5&acquire_timeout=3&statement_cache_size=50&schema=tl"
        "&sslmode=require&application_name=worker&max_inactive_connection_lifetime=60"
    )
    assert (config.host, config.port, config.user, config.database) == (
        "db.example", 6543, "bob", "app",
    )  # fmt: skip
    assert (config.min_size, config.max_size) == (2, 20)
    assert (config.command_timeout, config.connect_timeout, config.acquire_timeout) == (
        5.0, 1.5, 3.0,
    )  # fmt: skip
    assert config.statement_cache_size == 50
    assert config.schema == "tl" and config.table("entity_message") == '"tl".entity_message'
    kwargs = config.connect_kwargs()
    assert kwargs["ssl"] == "require" and kwargs["timeout"] == 1.5
    assert kwargs["server_settings"] == {"application_name": "worker"}
    plain = parse_config("postgres://localhost/app")
    assert (plain.min_size, plain.max_size, plain.statement_cache_size) == (1, 10, 256)
    assert plain.schema is None and plain.table("entity_message") == "entity_message"


@pytest.mark.parametrize("option", ["pgbouncer=true", "pgbouncer=1", "statement_cache_size=0"])
def test_statement_cache_can_be_disabled_for_poolers(option: str) -> None:
    assert parse_config(f"postgresql://h/db?{option}").statement_cache_size == 0
    assert parse_config("postgresql://h/db?pgbouncer=false").statement_cache_size == 256


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("max_szie=5", "max_szie"),
        ("pool=3&timeout=2", "pool, timeout"),
        ("password=x", "password"),
    ],
)
def test_unknown_options_are_named(query: str, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        parse_config(f"postgresql://h/db?{query}")


@pytest.mark.parametrize(
    "query",
    [
        "max_size=0",
        "min_size=-1",
        "min_size=5&max_size=2",
        "command_timeout=0",
        "command_timeout=soon",
        "connect_timeout=inf",
        "pgbouncer=maybe",
        "pgbouncer=true&statement_cache_size=10",
        "schema=bad-name",
        'schema=x";DROP',
        "sslmode=sometimes",
        "port=0",
    ],
)
def test_bad_values_are_refused(query: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_config(f"postgresql://h/db?{query}")


def test_not_a_postgres_url() -> None:
    with pytest.raises(ConfigurationError):
        parse_config("sqlite:///x.db")


def test_database_url_fills_a_bare_url() -> None:
    env = {"DATABASE_URL": f"postgres://ann:{SECRET}@dbhost:5433/prod?max_size=4"}
    config = parse_config("postgresql://?command_timeout=7", env)
    assert (config.host, config.port, config.user, config.database) == (
        "dbhost", 5433, "ann", "prod",
    )  # fmt: skip
    assert config.password == SECRET and config.source == "DATABASE_URL"
    assert (config.max_size, config.command_timeout) == (4, 7.0)
    assert SECRET not in repr(config) and SECRET not in config.display
    # A URL naming a server ignores DATABASE_URL; a non-postgres DATABASE_URL is ignored.
    assert parse_config("postgresql://other/db", env).host == "other"
    assert parse_config("postgresql://", {"DATABASE_URL": "sqlite:///x"}).host is None


async def test_pg_environment_variables_supply_credentials(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = StoreURL.parse(database_url)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PGHOST", url.host or "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(url.port or 5432))
    monkeypatch.setenv("PGUSER", url.username or "postgres")
    monkeypatch.setenv("PGDATABASE", url.path.lstrip("/"))
    store = await threadline.connect("postgresql://?schema=env_creds")
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        assert await store.get_session(session.tenant_id, session.id) == session
    finally:
        await store.close()


async def test_database_url_environment_is_used(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    store = await threadline.connect("postgres://?schema=env_dburl&max_size=2")
    try:
        assert isinstance(store.primary, PostgresStore)
        assert store.primary.config.max_size == 2
        assert store.primary.config.source == "DATABASE_URL"
        assert await store.count_messages(new_id(), new_id()) == 0
    finally:
        await store.close()


async def test_pgbouncer_mode_works(make_url: Callable[..., str]) -> None:
    store = await threadline.connect(make_url(pgbouncer="true", schema="bouncer"))
    try:
        assert isinstance(store.primary, PostgresStore)
        assert store.primary.config.statement_cache_size == 0
        session = await store.create_session(Session(tenant_id=new_id()))
        for _ in range(3):  # the same statement again and again, unprepared
            assert await store.get_session(session.tenant_id, session.id) == session
    finally:
        await store.close()


async def test_unreachable_server_is_unavailable_fast_and_hides_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await threadline.connect(
            f"postgresql://postgres:{SECRET}@127.0.0.1:1/nowhere?connect_timeout=2"
        )
    assert time.monotonic() - started < 5
    text = str(caught.value)
    assert SECRET not in text and "***" in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_missing_database_is_a_configuration_error_without_the_password(
    database_url: str,
) -> None:
    url = StoreURL.parse(database_url)
    bad = f"postgresql://{url.username}:{SECRET}@{url.host}:{url.port or 5432}/no_such_db_x"
    with pytest.raises(ThreadlineError) as caught:
        await threadline.connect(bad)
    assert isinstance(caught.value, ConfigurationError)
    assert SECRET not in str(caught.value)


async def test_password_not_in_repr(database_url: str) -> None:
    url = StoreURL.parse(database_url)
    with_password = (
        f"postgresql://{url.username}:{SECRET}@{url.host}:{url.port or 5432}{url.path}"
        "?schema=repr_check"
    )
    store = await threadline.connect(with_password)  # trust auth: any password is accepted
    try:
        for shown in (repr(store), str(store), repr(store.primary), repr(store.url)):
            assert SECRET not in shown
    finally:
        await store.close()


async def test_registered_schemes() -> None:
    from threadline.plugins import store_registry

    registry = store_registry()
    assert registry["postgresql"].factory is registry["postgres"].factory
