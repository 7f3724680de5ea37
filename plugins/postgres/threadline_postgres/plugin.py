"""Registers ``postgresql://`` and ``postgres://`` with threadline."""

from __future__ import annotations

from collections.abc import Callable

from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL
from threadline_postgres.config import parse_config
from threadline_postgres.store import PostgresStore


async def open_postgres_store(url: StoreURL) -> PostgresStore:
    """Open a :class:`PostgresStore` for ``url`` (options: see the README)."""
    return await PostgresStore.open(parse_config(url))


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    """Serve ``postgresql://`` and its ``postgres://`` alias."""
    register("postgresql", open_postgres_store, "PostgreSQL via an asyncpg connection pool")
    register("postgres", open_postgres_store, "PostgreSQL (alias of postgresql://)")
