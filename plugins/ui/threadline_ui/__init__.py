"""threadline-ui: ``threadline ui``, a browser UI over any threadline store.

Sessions, conversations (live while a reply streams), API calls and usage, and the
checkpoint tree of graph runs with diff and rollback, and runs waiting for a person
(resume, approve, reject). :func:`create_app` builds the ASGI
app; :class:`UIConfig` holds what ``threadline ui`` was started with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from threadline_ui.app import create_app
    from threadline_ui.config import UIConfig
    from threadline_ui.server import BackgroundServer, bind, serve

__all__ = ["BackgroundServer", "UIConfig", "bind", "create_app", "serve"]

_WHERE = {
    "create_app": "app",
    "UIConfig": "config",
    "BackgroundServer": "server",
    "bind": "server",
    "serve": "server",
}
"""The module each name lives in: loaded on first use, so that loading the plugin (the
``threadline`` entry point, on every ``threadline`` command) imports none of them."""

__getattr__ = lazy_attributes(__name__, _WHERE)
