"""The ``threadline`` entry point of threadline-langgraph.

The package adds no store, provider or command: it registers so that ``threadline
plugins`` lists it beside the stores its saver runs on.
"""

from __future__ import annotations

__all__: list[str] = []
