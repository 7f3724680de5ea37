"""threadline-fsspec: the store contract on files, locally or on any fsspec file system.

``threadline.connect("file:///var/lib/threadline")``, ``"s3://bucket/prefix"`` or
``"fsspec+memory://name"`` open a :class:`FsspecStore`; :class:`AgentConfigFolder`
serves agent configs from TOML/JSON files kept in version control.
"""

from threadline_fsspec.folder import AgentConfigFolder
from threadline_fsspec.store import FsspecStore

__all__ = ["AgentConfigFolder", "FsspecStore"]
