"""Persistency: checkpoints of a graph agent's runs (Koog's ``Persistency`` feature).

::

    agent = GraphAgent(strategy, features=[Persistency(storage="sqlite:///chat.db")])
    await agent.run(text, session_id=s)      # after a crash: resumes at the saved node
    p = agent.persistency(s)                 # or ctx.persistency() inside a node
    await p.rollback_to_checkpoint(checkpoint_id)

A checkpoint holds the node to run next and its input (with the input's type name),
the whole message history, the key/value state, its parent and properties
(``kind``: ``auto``, ``manual``, ``rollback``, ``execution_point`` or ``tombstone``;
``strategy``; ``after``: the node that had just run). With ``automatic=True`` one is
written after every node; a finished run writes a tombstone, so the next run of the
session starts fresh. The storage assigns versions; this module never computes one.

Values that cannot be serialised (see :mod:`threadline.graph.serialization`) raise
:class:`~threadline.graph.errors.CheckpointSerializationError` naming the node and the
value's type. With ``strict=False`` a state key that cannot be serialised is left out,
and a checkpoint whose input cannot be is skipped, each with a
:class:`~threadline.graph.errors.CheckpointWarning` (and a log record).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from threadline.errors import ConfigurationError
from threadline.graph.errors import DuplicateNodeNameError
from threadline.graph.features import Feature
from threadline.graph.serialization import Serializer
from threadline.graph.storage import CheckpointBackend, StorageLike, check_storage, open_backend
from threadline.graph.strategy import Strategy
from threadline.urls import StoreURL

__all__ = ["Persistency"]


class Persistency(Feature):
    """Install on a GraphAgent to checkpoint its runs in ``storage``.

    :param storage: a store URL, a :class:`threadline.Store`, an object with Koog's
        ``get_checkpoints`` / ``save_checkpoint`` / ``get_latest_checkpoint`` (sync or
        async), an object implementing the checkpoint hooks, or ``None`` (keep nothing).
    :param automatic: write a checkpoint after every node (else only those nodes create).
    :param strict: raise on values that cannot be serialised (else skip them with a warning).
    :param serializer: encodes inputs and state; extend one to support more types.
    :param rollback_tools: ``{tool or tool name: inverse}``, run when rolling back.
    """

    def __init__(
        self,
        storage: StorageLike,
        *,
        automatic: bool = True,
        strict: bool = True,
        serializer: Serializer | None = None,
        rollback_tools: Mapping[Any, Callable[..., Any]] | None = None,
    ) -> None:
        check_storage(storage)
        self.storage = storage
        self.automatic = automatic
        self.strict = strict
        self.serializer = serializer or Serializer()
        self.rollback_tools = dict(rollback_tools or {})
        self._backend: CheckpointBackend | None = None
        self._opening: asyncio.Lock | None = None

    def __repr__(self) -> str:
        shown: object = type(self.storage)
        if self.storage is None:
            shown = None
        elif isinstance(self.storage, str):
            try:
                shown = StoreURL.parse(self.storage).redacted()
            except ConfigurationError:
                shown = "<invalid store URL>"
        return f"<Persistency storage={shown!r} automatic={self.automatic} strict={self.strict}>"

    def check_strategy(self, strategy: Strategy) -> None:
        """Refuse node names used twice: a checkpoint names the node to resume."""
        duplicates = strategy.duplicate_names()
        if duplicates:
            raise DuplicateNodeNameError(strategy.name, duplicates)

    async def backend(self) -> CheckpointBackend:
        """The storage backend, opened (a URL connected) on first use."""
        if self._backend is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._backend is None:
                    self._backend = await open_backend(self.storage)
        return self._backend

    async def close(self) -> None:
        """Close the store this feature opened from a URL (a Store given to it stays open)."""
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()
