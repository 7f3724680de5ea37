"""The pluggy markers of the ``threadline`` project: ``hookspec`` for the specs here,
``hookimpl`` for a plugin's implementations (also ``threadline.hookimpl``)."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("threadline")
hookimpl = pluggy.HookimplMarker("threadline")
