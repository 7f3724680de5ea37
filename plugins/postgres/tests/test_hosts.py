"""Multi-host URLs, ``target_session_attrs``, ``pooler`` and ``replica`` options: parsed,
validated and shown without the password."""

from __future__ import annotations

import pytest

from threadline.errors import ConfigurationError
from threadline.urls import StoreURL
from threadline_postgres.config import parse_config

SECRET = "s3cr3t-pw"


def test_a_host_list_reaches_asyncpg_in_order() -> None:
    config = parse_config(
        f"postgresql://app:{SECRET}@db1:5432,db2:5433,[::1]/chat?target_session_attrs=read-write"
    )
    kwargs = config.connect_kwargs()
    assert kwargs["host"] == ["db1", "db2", "::1"]
    assert kwargs["port"] == [5432, 5433, 5432]
    assert kwargs["target_session_attrs"] == "read-write"
    assert config.display == "postgresql://app:***@db1:5432,db2:5433,[::1]/chat"
    assert SECRET not in repr(config) and SECRET not in str(StoreURL.parse(config.display))


@pytest.mark.parametrize(
    "bad",
    ["db1:5432,db2:x", "db1,,db2", "db1:99999,db2"],
)
def test_a_bad_host_list_is_refused_without_the_password(bad: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_config(f"postgresql://app:{SECRET}@{bad}/chat")
    assert SECRET not in str(raised.value)


def test_replicas_and_options() -> None:
    config = parse_config(
        f"postgresql://app:{SECRET}@db1/chat?replica=r1:6000,r2&replica_window=2.5"
    )
    assert config.replicas == (("r1", 6000), ("r2", None))
    assert config.replica_window == 2.5
    assert config.replica_kwargs()["host"] == ["r1", "r2"]
    assert config.replica_display == "postgresql://app:***@r1:6000,r2/chat"
    assert parse_config("postgresql://db1/chat").replicas == ()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("replica=r1/x", "replica must be host"),
        ("replica=r1,,r2", "replica must be host"),
        ("target_session_attrs=master", "target_session_attrs must be one of"),
        ("pooler=pgbouncer", "pooler must be one of"),
        ("pgbouncer=true&pooler=session", "contradict"),
        ("pooler=transaction&statement_cache_size=100", "statement_cache_size=0"),
        ("replica_window=0", "replica_window must be > 0"),
    ],
)
def test_bad_options_are_refused_naming_them(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_config(f"postgresql://db1/chat?{query}")


def test_pooler_modes() -> None:
    assert parse_config("postgresql://db1/chat").pooler == "auto"
    assert parse_config("postgresql://db1/chat").statement_cache_size == 256
    for query in ("pooler=transaction", "pgbouncer=true"):
        config = parse_config(f"postgresql://db1/chat?{query}")
        assert (config.pooler, config.statement_cache_size) == ("transaction", 0)
    assert parse_config("postgresql://db1/chat?pgbouncer=false").pooler == "none"
    assert parse_config("postgresql://db1/chat?pooler=session").statement_cache_size == 256
