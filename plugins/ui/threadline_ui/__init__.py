"""threadline-ui: ``threadline ui``, a browser UI over any threadline store.

Sessions, conversations (live while a reply streams), API calls and usage, and the
checkpoint tree of graph runs with diff and rollback, and runs waiting for a person
(resume, approve, reject). :func:`create_app` builds the ASGI
app; :class:`UIConfig` holds what ``threadline ui`` was started with.
"""

from __future__ import annotations

from threadline_ui.app import create_app
from threadline_ui.config import UIConfig
from threadline_ui.server import BackgroundServer, bind, serve

__all__ = ["BackgroundServer", "UIConfig", "bind", "create_app", "serve"]
