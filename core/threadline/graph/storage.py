"""Where checkpoints go: a threadline Store, a custom storage object, or nowhere.

``Persistency(storage=...)`` accepts

* a store URL (``sqlite:///chat.db``, ``memory://``, ``postgresql://...``), opened on
  first use and closed with the agent;
* a :class:`threadline.Store` (the caller closes it);
* an object implementing the checkpoint persistence hooks (stacked in a ``Store``);
* any object with Koog's custom-provider methods (:class:`CheckpointStorageProvider`),
  sync or ``async``: ``get_checkpoints(agent_id)``, ``save_checkpoint(checkpoint)``,
  ``get_latest_checkpoint(agent_id)``;
* ``None``: checkpoints are built but kept nowhere (Koog's no-op provider).

Every backend here is used through one scope (tenant, user, agent, session): reads only
return that tenant's checkpoints of that session and agent. Versions come from the
storage (the Store assigns them atomically); this layer never computes one.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import attrs

from threadline.errors import ConfigurationError, ConflictError
from threadline.graph.messages import MessageMirror
from threadline.models import ApiCall, Checkpoint, Session
from threadline.plugins import dispatch
from threadline.store import Store, connect

__all__ = [
    "CheckpointBackend",
    "CheckpointScope",
    "CheckpointStorageProvider",
    "CustomBackend",
    "NullBackend",
    "StorageLike",
    "StoreBackend",
]


@runtime_checkable
class CheckpointStorageProvider(Protocol):
    """Koog's custom storage contract; each method may be sync or ``async``.

    ``save_checkpoint`` should assign ``version`` (unique, increasing per session, as a
    Store does) and return the stored checkpoint; returning ``None`` keeps it unversioned.
    """

    def get_checkpoints(self, agent_id: str) -> Any:
        """Every checkpoint of the agent (any order; they are filtered and sorted here)."""
        ...

    def save_checkpoint(self, checkpoint: Checkpoint) -> Any:
        """Store ``checkpoint``; return it with its version (or ``None``)."""
        ...

    def get_latest_checkpoint(self, agent_id: str) -> Any:
        """The agent's most recently saved checkpoint, or ``None``."""
        ...


StorageLike = Any
"""What ``Persistency(storage=...)`` takes: ``str | Store | CheckpointStorageProvider | None``
or an object implementing the checkpoint hooks (typed ``Any``: it is checked at runtime)."""


@attrs.frozen
class CheckpointScope:
    """Whose checkpoints: a tenant's session, written as one user and one agent."""

    tenant_id: str
    user_id: str | None
    agent_id: str
    session_id: str
    title: str | None = None


class CheckpointBackend:
    """The operations the graph layer needs, always within one :class:`CheckpointScope`."""

    persistent = True
    """Whether checkpoints outlive the call (``False`` for the no-op backend)."""

    async def open_session(self, scope: CheckpointScope) -> None:
        """Make sure the session can take checkpoints (create it if the storage needs one)."""

    async def save(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store ``checkpoint``; return it as stored, with the version the storage gave it."""
        raise NotImplementedError

    async def get(self, scope: CheckpointScope, checkpoint_id: str) -> Checkpoint | None:
        """The checkpoint with this id in the scope's session, or ``None``."""
        raise NotImplementedError

    async def list(self, scope: CheckpointScope) -> list[Checkpoint]:
        """The scope's checkpoints, oldest first."""
        raise NotImplementedError

    async def latest(self, scope: CheckpointScope) -> Checkpoint | None:
        """The scope's latest checkpoint (a tombstone included), or ``None``."""
        raise NotImplementedError

    async def save_api_call(self, api_call: ApiCall) -> None:
        """Record one model request where the storage can (a Store); others ignore it."""

    async def close(self) -> None:
        """Release what this backend opened itself."""


class StoreBackend(CheckpointBackend):
    """Checkpoints in a :class:`threadline.Store`, scoped by tenant; sessions created on demand."""

    def __init__(self, store: Store, *, owned: bool = False) -> None:
        self.store = store
        self.owned = owned
        self.mirror = MessageMirror(store)

    def __repr__(self) -> str:
        return f"<StoreBackend {self.store!r}>"

    def _has(self, hook: str) -> bool:
        return bool(dispatch.implementations(self.store.pm, hook))

    async def open_session(self, scope: CheckpointScope) -> None:
        if not self._has("threadline_create_session"):
            return  # a checkpoint-only store keeps no session rows
        session = await self.store.get_session(scope.tenant_id, scope.session_id)
        if session is None:
            session = await self.store.create_session(
                Session(
                    id=scope.session_id,
                    tenant_id=scope.tenant_id,
                    user_id=scope.user_id,
                    agent_id=scope.agent_id,
                    title=scope.title,
                )
            )
        if scope.user_id is not None and session.user_id not in (None, scope.user_id):
            raise ConflictError(f"session {scope.session_id} belongs to another user")

    async def save(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store the checkpoint, then bring the session's messages to its history
        (:mod:`threadline.graph.messages`; stores without messages keep checkpoints only)."""
        stored = await self.store.create_checkpoint(checkpoint)
        if all(self._has(f"threadline_{h}") for h in ("create_session", "delete_messages")):
            await self.mirror.sync(checkpoint)
        return stored

    async def get(self, scope: CheckpointScope, checkpoint_id: str) -> Checkpoint | None:
        found = await self.store.get_checkpoint(scope.tenant_id, checkpoint_id)
        return found if found is not None and _in_scope(found, scope) else None

    async def list(self, scope: CheckpointScope) -> list[Checkpoint]:
        return await self.store.list_checkpoints(
            scope.tenant_id, session_id=scope.session_id, agent_id=scope.agent_id
        )

    async def latest(self, scope: CheckpointScope) -> Checkpoint | None:
        return await self.store.get_latest_checkpoint(
            scope.tenant_id, scope.session_id, agent_id=scope.agent_id
        )

    async def save_api_call(self, api_call: ApiCall) -> None:
        if self._has("threadline_save_api_call"):
            await self.store.save_api_call(api_call)

    async def close(self) -> None:
        if self.owned:
            await self.store.close()


class CustomBackend(CheckpointBackend):
    """Adapts an object with Koog's three methods; reads are filtered to the scope here."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def __repr__(self) -> str:
        return f"<CustomBackend {type(self.provider).__name__}>"

    async def save(self, checkpoint: Checkpoint) -> Checkpoint:
        stored = await _maybe_await(self.provider.save_checkpoint(checkpoint))
        if stored is None:
            return checkpoint
        if not isinstance(stored, Checkpoint):
            raise ConfigurationError(
                f"{type(self.provider).__name__}.save_checkpoint returned a "
                f"{type(stored).__name__}; expected the stored Checkpoint or None"
            )
        return stored

    async def _all(self, scope: CheckpointScope) -> list[Checkpoint]:
        found = await _maybe_await(self.provider.get_checkpoints(scope.agent_id))
        mine = [c for c in found or () if _in_scope(c, scope)]
        return sorted(mine, key=_order)

    async def get(self, scope: CheckpointScope, checkpoint_id: str) -> Checkpoint | None:
        return next((c for c in await self._all(scope) if c.id == checkpoint_id), None)

    async def list(self, scope: CheckpointScope) -> list[Checkpoint]:
        return await self._all(scope)

    async def latest(self, scope: CheckpointScope) -> Checkpoint | None:
        # The agent's latest is also its session's latest when it is in this session.
        newest = await _maybe_await(self.provider.get_latest_checkpoint(scope.agent_id))
        if isinstance(newest, Checkpoint) and _in_scope(newest, scope):
            return newest
        mine = await self._all(scope)
        return mine[-1] if mine else None


class NullBackend(CheckpointBackend):
    """Keeps nothing: checkpoints are built (and validated) but not stored."""

    persistent = False

    def __repr__(self) -> str:
        return "<NullBackend>"

    async def save(self, checkpoint: Checkpoint) -> Checkpoint:
        return checkpoint

    async def get(self, scope: CheckpointScope, checkpoint_id: str) -> Checkpoint | None:
        return None

    async def list(self, scope: CheckpointScope) -> list[Checkpoint]:
        return []

    async def latest(self, scope: CheckpointScope) -> Checkpoint | None:
        return None


async def open_backend(storage: StorageLike) -> CheckpointBackend:
    """The backend for what ``Persistency(storage=...)`` was given (a URL is connected here)."""
    if storage is None:
        return NullBackend()
    if isinstance(storage, str):
        return StoreBackend(await connect(storage), owned=True)
    if isinstance(storage, Store):
        return StoreBackend(storage)
    if _is_store_plugin(storage):
        return StoreBackend(Store(storage))
    return CustomBackend(storage)


def _is_store_plugin(storage: object) -> bool:
    """An object implementing the checkpoint hooks (its own, or the record hooks under the
    core's defaults), which a :class:`Store` can wrap."""
    hooks = ("threadline_create_checkpoint", "threadline_insert_checkpoint_record")
    return any(callable(getattr(storage, hook, None)) for hook in hooks)


def check_storage(storage: StorageLike) -> None:
    """Refuse at configuration time what :func:`open_backend` could not use."""
    if storage is None or isinstance(storage, (str, Store)):
        return
    if _is_store_plugin(storage):
        return
    missing = [
        name
        for name in ("get_checkpoints", "save_checkpoint", "get_latest_checkpoint")
        if not callable(getattr(storage, name, None))
    ]
    if missing:
        raise ConfigurationError(
            f"storage {type(storage).__name__} lacks {', '.join(missing)}: give a store URL, "
            "a threadline.Store, None, or an object with get_checkpoints(agent_id), "
            "save_checkpoint(checkpoint) and get_latest_checkpoint(agent_id)"
        )


def _in_scope(checkpoint: Checkpoint, scope: CheckpointScope) -> bool:
    return (
        checkpoint.tenant_id == scope.tenant_id
        and checkpoint.session_id == scope.session_id
        and checkpoint.agent_id in (None, scope.agent_id)
    )


def _order(checkpoint: Checkpoint) -> tuple[int, float, str]:
    return (checkpoint.version or 0, checkpoint.created_at.timestamp(), checkpoint.id)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
