"""One base for stores on a synchronous driver (SQLite, files): sync methods become hooks.

A store on a blocking driver writes each operation once, as a plain method named after
its hook without the ``threadline_`` prefix (``def save_messages(self, messages)``).
:class:`SyncStore` turns every such method into the async hook implementation
(``threadline_save_messages``) that runs it through :meth:`SyncStore.run_sync`, so no
store writes a one-line shim per hook, and one method decides which thread runs what::

    class FileStore(SyncStore):
        def get_session(self, tenant_id: str, session_id: str) -> Session | None:
            ...  # blocking code

A class that defines the ``threadline_*`` hook itself keeps its own (an async hook that
needs no thread, say).

The core's defaults may run more than the operation in the same :meth:`SyncStore.run_sync`
call: restoring a checkpoint reads its chain and rebuilds the history there, so the
decoding happens in the store's thread with the read, in one hand-off
(:func:`threadline.storekit.log.read_chain`). A store whose operations never block (all in
memory) sets :attr:`SyncStore.blocking` to ``False``: the core then calls its hooks as any
other and decodes a long chain in a worker thread itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from threadline.hookspecs import PERSISTENCE_HOOKS, hookimpl

__all__ = ["SyncStore"]

T = TypeVar("T")

_PREFIX = "threadline_"


class SyncStore:
    """Base class: each method named after a persistence hook becomes that async hook."""

    blocking: bool = True
    """Whether the operations block (I/O): ``run_sync`` then picks a thread for them, and
    the core runs a restore's decoding in the same call."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook in PERSISTENCE_HOOKS:
            operation = cls.__dict__.get(hook.removeprefix(_PREFIX))
            if callable(operation) and hook not in cls.__dict__:
                setattr(cls, hook, _as_hook(hook, operation))

    async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
        """Run one blocking operation for ``hook`` off the event loop.

        The default runs it in the default executor. Override to use a store's own
        thread (one connection per thread), or to run a small indexed read inline where
        that is measured to cost less than the hand-off.
        """
        return await asyncio.to_thread(operation, *args)


def _as_hook(hook: str, operation: Callable[..., Any]) -> Callable[..., Any]:
    """The async hook implementation of ``hook`` that runs ``operation`` via ``run_sync``."""
    name = operation.__name__

    @functools.wraps(operation)
    async def implementation(self: SyncStore, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self, name)
        if kwargs:  # the dispatch passes positionals; a direct call may name them
            bound = functools.partial(bound, **kwargs)
        return await self.run_sync(hook, bound, *args)

    # pluggy reads the argument names through ``__wrapped__`` (set by ``wraps``): the
    # operation's own, so the hook receives exactly what the operation names.
    implementation.sync_operation = name  # type: ignore[attr-defined]  # for storekit.log
    implementation.__name__ = hook
    implementation.__qualname__ = f"{operation.__qualname__.rpartition('.')[0]}.{hook}"
    return hookimpl(implementation)
