"""Registers the fsspec store's URL schemes (entry point ``threadline_fsspec.plugin``).

Kept small: fsspec and the store load when a URL of theirs is first opened, not when
plugins load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL

if TYPE_CHECKING:
    from threadline_fsspec.folder import AgentConfigFolder
    from threadline_fsspec.store import FsspecStore

__all__ = ["open_agent_folder", "open_fsspec_store", "threadline_register_stores"]

# Kept in step with threadline_fsspec.urls (not imported here, to keep loading cheap).
_OBJECT_STORES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
_FSSPEC_PROTOCOLS = (
    "memory", "file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss",
    "hdfs", "webhdfs", "sftp", "ssh", "ftp", "smb", "webdav",
)  # fmt: skip


async def open_fsspec_store(url: StoreURL, *, create: bool = True) -> FsspecStore:
    """Open the folder a ``file://``, ``s3://``, ``fsspec+PROTO://`` ... URL names.

    Refuses a folder written by a newer layout version. With ``create=False`` a folder
    without a store raises :class:`~threadline.errors.StoreNotFoundError`, creating nothing.
    """
    from threadline_fsspec.store import FsspecStore
    from threadline_fsspec.urls import backend_from_url

    backend, options = await asyncio.to_thread(backend_from_url, url, create=create)
    store = FsspecStore(backend, lock_timeout=options.lock_timeout)
    try:
        await store.run_sync("check_format", store.check_format)
    except BaseException:
        await store.threadline_close()
        raise
    return store


async def open_agent_folder(url: StoreURL, *, create: bool = True) -> AgentConfigFolder:
    """Open ``agents+file:///path``: agent configs from TOML/JSON files, read only.

    With ``create=False`` a missing folder raises :class:`~threadline.errors.StoreNotFoundError`.
    """
    from threadline_fsspec.folder import AgentConfigFolder
    from threadline_fsspec.urls import local_path

    path = local_path(url)
    if not create:
        await asyncio.to_thread(_check_folder, path, url)
    return await asyncio.to_thread(AgentConfigFolder, path)


def _check_folder(path: str, url: StoreURL) -> None:
    import os

    from threadline.errors import StoreNotFoundError

    if not os.path.isdir(path):
        raise StoreNotFoundError(f"no store at {url.redacted()}: {path} is not a folder")


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    register(
        "file",
        open_fsspec_store,
        "Local directory of JSON files: file:///abs/dir (?lock_timeout=s&fsync=false)",
    )
    for scheme, package in _OBJECT_STORES.items():
        register(
            scheme, open_fsspec_store, f"{scheme}://bucket/prefix via fsspec (needs {package})"
        )
    for protocol in _FSSPEC_PROTOCOLS:
        register(
            f"fsspec+{protocol}",
            open_fsspec_store,
            f"fsspec {protocol} file system: fsspec+{protocol}://path",
        )
    register(
        "agents+file",
        open_agent_folder,
        "Read-only agent configs from TOML/JSON files: agents+file:///dir",
    )
