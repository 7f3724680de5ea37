"""Opening a store by URL: :func:`connect` (wrapped in a :class:`~threadline.store.Store`)
and :func:`open_plugin` (the plugin object alone, to stack with :meth:`Store.add`).

The scheme picks the store plugin registered for it (:func:`threadline.plugins.store_registry`);
an unknown scheme names the distribution to install (:data:`KNOWN_SCHEMES`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from threadline.errors import ConfigurationError, PluginNotInstalledError
from threadline.plugins import LOAD_PLUGINS_ENV, store_registry
from threadline.store.facade import Store, check_flag
from threadline.urls import StoreURL

__all__ = ["KNOWN_SCHEMES", "connect", "open_plugin"]

# Which distribution serves a scheme, for the error raised when none is installed.
KNOWN_SCHEMES = {
    "sqlite": "threadline-sqlite",
    "memory": "threadline-memory",
    "postgresql": "threadline-postgres",
    "postgres": "threadline-postgres",
    "file": "threadline-fsspec",
    "s3": "threadline-fsspec",
    "gs": "threadline-fsspec",
    "gcs": "threadline-fsspec",
    "az": "threadline-fsspec",
    "abfs": "threadline-fsspec",
    "fsspec+memory": "threadline-fsspec",
    "redis": "threadline-redis",
    "rediss": "threadline-redis",
}


async def open_plugin(url: str | StoreURL, *, create: bool = True) -> object:
    """Open the store plugin object registered for ``url``'s scheme (not wrapped).

    The factory is called as ``factory(url, create=create)``; with ``create=False`` a
    store that does not exist raises :class:`StoreNotFoundError` and nothing is created.
    """
    parsed = StoreURL.parse(url)
    create = check_flag(create, "create")
    registry = store_registry()
    entry = registry.get(parsed.scheme)
    if entry is None:
        dist = KNOWN_SCHEMES.get(parsed.scheme)
        if dist is None and parsed.scheme.startswith(("fsspec+", "agents+")):
            dist = "threadline-fsspec"
        hint = f"; pip install {dist}" if dist else ""
        restricted = ""
        if os.environ.get(LOAD_PLUGINS_ENV) is not None:
            restricted = f" ({LOAD_PLUGINS_ENV} is set and may exclude it)"
        raise PluginNotInstalledError(
            f"no store plugin serves {parsed.scheme}:// URLs{hint}{restricted}. "
            f"Installed schemes: {sorted(registry) or 'none'}"
        )
    if _takes_create(entry.factory):
        return await entry.factory(parsed, create=create)
    if not create:
        # An older factory cannot be told not to create: refuse rather than risk it.
        raise ConfigurationError(
            f"the store plugin {entry.plugin} cannot open {parsed.redacted()} without "
            "creating it (its factory takes no 'create' argument): upgrade the plugin, or "
            "open the store with create=True"
        )
    return await entry.factory(parsed)


def _takes_create(factory: Callable[..., object]) -> bool:
    """True when ``factory`` accepts a ``create`` keyword (or ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == "create" and p.kind != p.POSITIONAL_ONLY) or p.kind == p.VAR_KEYWORD
        for p in parameters
    )


async def connect(url: str | StoreURL, *, migrate: bool = True, create: bool = True) -> Store:
    """Open the store for ``url`` (``sqlite:///chat.db``, ``memory://``, ``postgresql://...``).

    Migrations are applied unless ``migrate=False``. With ``create=False`` (reading,
    exporting, deleting) a store that does not exist yet raises
    :class:`~threadline.errors.StoreNotFoundError` naming the URL, and nothing is created;
    pending migrations of an existing store still apply.
    """
    parsed = StoreURL.parse(url)
    store = Store(await open_plugin(parsed, create=create), url=parsed)
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store
