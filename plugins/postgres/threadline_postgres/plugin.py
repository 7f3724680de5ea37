"""Registers ``postgresql://`` and ``postgres://`` with threadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from threadline.errors import StoreNotFoundError
from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL

if TYPE_CHECKING:
    from threadline_postgres.store import PostgresStore


async def open_postgres_store(url: StoreURL, *, create: bool = True) -> PostgresStore:
    """Open a :class:`PostgresStore` for ``url`` (options: see the README).

    With ``create=False`` a database (or ``?schema=``) without threadline's tables raises
    :class:`~threadline.errors.StoreNotFoundError`: no schema, table or ledger is made.
    """
    # Imported here: loading the plugin (every ``threadline`` command) must not import asyncpg.
    from threadline_postgres.config import parse_config
    from threadline_postgres.errors import translate
    from threadline_postgres.schema import MIGRATIONS_TABLE
    from threadline_postgres.store import PostgresStore

    config = parse_config(url)
    store = await PostgresStore.open(config)
    if not create:
        try:
            try:
                async with store._pool.acquire() as conn:
                    found = await conn.fetchval(
                        "SELECT to_regclass($1) IS NOT NULL", config.table(MIGRATIONS_TABLE)
                    )
            except Exception as exc:
                raise translate(
                    exc, where=config.display, what="open", secret=config.password
                ) from None
            if not found:
                where = f" (schema {config.schema})" if config.schema else ""
                raise StoreNotFoundError(
                    f"no store at {url.redacted()}{where}: the database holds no threadline "
                    "tables (nothing was created)"
                )
        except BaseException:
            await store.threadline_close()
            raise
    return store


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    """Serve ``postgresql://`` and its ``postgres://`` alias."""
    register("postgresql", open_postgres_store, "PostgreSQL via an asyncpg connection pool")
    register("postgres", open_postgres_store, "PostgreSQL (alias of postgresql://)")
