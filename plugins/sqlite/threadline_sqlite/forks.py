"""Forks on SQLite: a fork's messages share the stored bytes of the session they came from."""

from __future__ import annotations

from threadline.storekit.sync import SyncStore

__all__ = ["ForkHooks"]


class ForkHooks(SyncStore):
    """Forking a session inside the database (see :mod:`threadline.store.branching`)."""
