"""The store facade and how to open one.

``await threadline.connect(url)`` opens the store registered for the URL's scheme
and wraps it in a :class:`Store`. :mod:`threadline.store.facade` holds the
:class:`Store` class (one typed API over a stack of store plugins);
:mod:`threadline.store.opening` holds :func:`connect`, :func:`open_plugin` and
:data:`KNOWN_SCHEMES`. Every name is importable from ``threadline.store``.
"""

from __future__ import annotations

from threadline.store.facade import ERASE_KINDS, Store
from threadline.store.opening import KNOWN_SCHEMES, connect, open_plugin

__all__ = ["ERASE_KINDS", "KNOWN_SCHEMES", "Store", "connect", "open_plugin"]
