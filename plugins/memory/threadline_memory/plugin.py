"""Registers ``memory://`` with threadline."""

from __future__ import annotations

from collections.abc import Callable

from threadline.errors import StoreNotFoundError
from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL
from threadline_memory.store import MemoryStore

_named: dict[str, MemoryStore] = {}


async def open_memory_store(url: StoreURL, *, create: bool = True) -> MemoryStore:
    """``memory://`` is a fresh store; ``memory://NAME`` is shared within the process.

    A named store keeps its data until the process ends, across ``close()`` and reopening.
    With ``create=False`` a name never opened in this process (or a fresh ``memory://``)
    raises :class:`~threadline.errors.StoreNotFoundError`.
    """
    name = (url.host or "") + url.path.strip("/")
    if not name:
        if not create:
            raise StoreNotFoundError(
                "no store at memory://: it names a new, empty store each time (use memory://NAME)"
            )
        return MemoryStore()
    store = _named.get(name)
    if store is None:
        if not create:
            raise StoreNotFoundError(
                f"no store at {url.redacted()}: no memory store of that name was opened "
                "in this process"
            )
        store = _named[name] = MemoryStore()
    store.closed = False  # a named store outlives the Store objects that open it
    return store


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    register("memory", open_memory_store, "In-process memory; memory://NAME is shared")
