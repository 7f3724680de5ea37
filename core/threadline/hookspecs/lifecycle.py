"""Lifecycle hooks of a store (schema migration, close) and the operators' tenant list."""

from __future__ import annotations

from collections.abc import Sequence

from threadline.hookspecs.markers import hookspec


@hookspec
def threadline_migrate() -> Sequence[str] | None:
    """Bring the store's schema up to date; safe to call again and from several processes.

    Tier: lifecycle (optional: a store without a schema leaves it out).

    :return: the names of the migrations applied by this call (empty when up to date).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_tenants() -> Sequence[str] | None:
    """List every tenant that owns a session, an agent or a provider in this store.

    Tier: required.

    For operators moving or auditing a whole store (``threadline copy``); an application's
    own reads are always scoped to one tenant.

    :return: the tenant ids, sorted.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_close() -> None:
    """Release connections, threads and files. Called once by ``Store.close()``.

    Tier: lifecycle (optional).
    :raises StoreError: releasing failed; the data is safe and the ``Store`` is closed anyway.
    """
