"""threadline-langgraph: LangGraph checkpoints in any threadline store.

``ThreadlineSaver`` is a LangGraph ``BaseCheckpointSaver``: threads are threadline
sessions, checkpoints are threadline checkpoint records (message lists stored as deltas,
so a long chat stores each message once), pending writes folded into their checkpoint's
record where the store has the append shortcut, else records of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from threadline_langgraph.ids import DEFAULT_TENANT_ID, session_id_for
    from threadline_langgraph.saver import ThreadlineSaver

__all__ = ["DEFAULT_TENANT_ID", "ThreadlineSaver", "session_id_for"]

_WHERE = {"DEFAULT_TENANT_ID": "ids", "session_id_for": "ids", "ThreadlineSaver": "saver"}
"""The module each name lives in: loaded on first use, so that loading the plugin (the
``threadline`` entry point, on every ``threadline`` command) imports none of them."""

__getattr__ = lazy_attributes(__name__, _WHERE)
