"""Forks on PostgreSQL: a fork's messages share the stored bytes of the session they came from."""

from __future__ import annotations

__all__ = ["Forks"]


class Forks:
    """Forking a session inside the database (see :mod:`threadline.store.branching`)."""
