"""Plugin loading and the registries of store schemes and providers.

Plugins are distributions that declare an entry point in the ``threadline`` group.
They load lazily, the first time a registry is consulted, and once per process.

``THREADLINE_LOAD_PLUGINS`` restricts what loads: a comma-separated list of
distribution or entry-point names (``threadline-sqlite,threadline-openai``); set it
to an empty string to load none. Unset, every installed plugin loads. Tests set
it so a stray plugin installed in the environment cannot change their outcome.
A name that no installed plugin has (a typo, a plugin not installed here) is a
:class:`PluginWarning` on stderr listing the installed ones, not an error: a list
shared between environments may name optional plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pluggy

from threadline import hookspecs
from threadline.errors import ConfigurationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "PluginWarning",
    "ProviderEntry",
    "StoreEntry",
    "get_plugins",
    "load_plugins",
    "new_plugin_manager",
    "pm",
    "provider_registry",
    "store_registry",
]

ENTRY_POINT_GROUP = "threadline"
LOAD_PLUGINS_ENV = "THREADLINE_LOAD_PLUGINS"
BUILTIN_PLUGINS = ("threadline.runtime.builtins",)

StoreFactory = Callable[..., Awaitable[object]]


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows threadline's hook specs."""
    manager = pluggy.PluginManager("threadline")
    manager.add_hookspecs(hookspecs)
    return manager


pm = new_plugin_manager()
"""The process-wide plugin manager: registration hooks and CLI commands."""

_lock = threading.RLock()
_loaded = False


@attrs.frozen
class StoreEntry:
    """A registered URL scheme: the factory that opens a store for it."""

    scheme: str
    factory: StoreFactory
    plugin: str
    description: str = ""


@attrs.frozen
class ProviderEntry:
    """A registered provider name: the factory that builds it."""

    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""


class PluginWarning(UserWarning):
    """``THREADLINE_LOAD_PLUGINS`` names a plugin that is not installed."""


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _normalise(name: str) -> str:
    """A distribution name as pip compares it (PEP 503): ``Threadline_SQLite`` is
    ``threadline-sqlite``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _warn_unknown(allowed: set[str], installed: dict[str, str]) -> None:
    """Warn about names in ``allowed`` that match no installed distribution or entry point
    (``installed``: entry-point name -> distribution name)."""
    known = set(installed) | {_normalise(d) for d in installed.values()}
    unknown = sorted(n for n in allowed if n not in known and _normalise(n) not in known)
    if unknown:
        warnings.warn(
            f"{LOAD_PLUGINS_ENV} names {', '.join(unknown)}, which no installed plugin "
            f"provides; installed: {', '.join(sorted(set(installed.values()))) or 'none'}",
            PluginWarning,
            stacklevel=3,
        )


def load_plugins() -> None:
    """Load the built-in plugins and the allowed entry points; only the first call works."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        for name in BUILTIN_PLUGINS:
            if pm.get_plugin(name) is None:
                pm.register(importlib.import_module(name), name=name)
        allowed = _allowed_names()
        wanted = None if allowed is None else {_normalise(n) for n in allowed} | allowed
        installed: dict[str, str] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else ep.name
            installed[ep.name] = dist
            if wanted is not None and _normalise(dist) not in wanted and ep.name not in wanted:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise ConfigurationError(
                    f"plugin {ep.name!r} from {dist} failed to load: {exc}"
                ) from exc
            pm.register(plugin, name=ep.name)
            _dist_of[ep.name] = ep.dist
        if allowed:
            _warn_unknown(allowed, installed)


_dist_of: dict[str, Any] = {}


def _registry(hook: str, make: Callable[..., Any]) -> dict[str, Any]:
    load_plugins()
    entries: dict[str, Any] = {}
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

        def register(
            key: str, factory: Callable[..., Any], description: str = "", *, _p: str = plugin_name
        ) -> None:
            key = key.lower()
            if key in entries:
                raise ConfigurationError(
                    f"{key!r} registered twice: by {entries[key].plugin} and by {_p}"
                )
            entries[key] = make(key, factory, _p, description)

        impl.function(register)
    return entries


_cache: dict[str, dict[str, Any]] = {}


def store_registry() -> dict[str, StoreEntry]:
    """URL scheme → :class:`StoreEntry`, from every loaded plugin."""
    with _lock:
        if "stores" not in _cache:
            _cache["stores"] = _registry("threadline_register_stores", StoreEntry)
        return _cache["stores"]


def provider_registry() -> dict[str, ProviderEntry]:
    """Provider name → :class:`ProviderEntry`, from every loaded plugin."""
    with _lock:
        if "providers" not in _cache:
            _cache["providers"] = _registry("threadline_register_providers", ProviderEntry)
        return _cache["providers"]


def register(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module in this process (e.g. from a test or an app)."""
    load_plugins()
    with _lock:
        _cache.clear()
        return pm.register(plugin, name=name)


def unregister(name: str) -> None:
    """Remove a plugin registered under ``name``."""
    with _lock:
        _cache.clear()
        pm.unregister(name=name)


def get_plugins() -> list[dict[str, Any]]:
    """Describe the loaded plugins: name, hooks, and version when a distribution ships it."""
    load_plugins()
    described = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        info: dict[str, Any] = {"name": name, "hooks": hooks}
        dist = _dist_of.get(name)
        if dist is not None:
            info["name"] = dist.name
            info["version"] = dist.version
        described.append(info)
    return described
