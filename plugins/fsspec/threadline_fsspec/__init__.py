"""threadline-fsspec: the store contract on files, locally or on any fsspec file system.

``threadline.connect("file:///var/lib/threadline")``, ``"s3://bucket/prefix"`` or
``"fsspec+memory://name"`` open a :class:`FsspecStore`; :class:`AgentConfigFolder`
serves agent configs from TOML/JSON files kept in version control.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from threadline_fsspec.folder import AgentConfigFolder
    from threadline_fsspec.store import FsspecStore

__all__ = ["AgentConfigFolder", "FsspecStore"]

_WHERE = {"AgentConfigFolder": "folder", "FsspecStore": "store"}
"""The module each name lives in: loaded on first use, so that loading the plugin (the
``threadline`` entry point, on every ``threadline`` command) imports none of them."""

__getattr__ = lazy_attributes(__name__, _WHERE)
