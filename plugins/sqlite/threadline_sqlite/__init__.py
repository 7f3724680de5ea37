"""threadline-sqlite: the embedded default store, one SQLite file in WAL mode.

``await threadline.connect("sqlite:///chat.db")`` opens (and creates, with its schema)
the file. See :mod:`threadline_sqlite.options` for the URL and its options and
:mod:`threadline_sqlite.store` for how it works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

__all__ = ["SQLiteOptions", "SQLiteStore"]

if TYPE_CHECKING:
    from threadline_sqlite.options import SQLiteOptions
    from threadline_sqlite.store import SQLiteStore


# Lazy, so that loading the plugin (threadline_sqlite.plugin) imports neither.
__getattr__ = lazy_attributes(__name__, {"SQLiteStore": "store", "SQLiteOptions": "options"})
