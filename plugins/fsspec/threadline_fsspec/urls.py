"""How a store URL names a file system and a folder in it.

=================================  ==================================================
``file:///abs/dir``                a local directory (``file://rel/dir``: relative
                                   to the working directory)
``s3://bucket/prefix``             S3 (``pip install s3fs``); likewise ``gs://`` and
                                   ``gcs://`` (gcsfs), ``az://`` and ``abfs://`` (adlfs)
``fsspec+memory://name``           fsspec's in-memory file system, shared by the
                                   process; ``fsspec+memory://`` is a fresh one
``fsspec+PROTO://rest``            any fsspec protocol registered as a scheme (see
                                   :data:`FSSPEC_PROTOCOLS`), opened with
                                   ``fsspec.url_to_fs("PROTO://rest")``
=================================  ==================================================

Query options: ``lock_timeout`` (seconds a writer waits for a session's lock,
default 30) and ``fsync`` (``false`` skips ``fsync`` on local disks: faster, not
crash-safe) belong to the store; every other option is passed to the fsspec file
system as a storage option (``true``/``false`` become booleans), e.g.
``s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&anon=false``. Credentials
come from the backend's usual sources (environment, config files), never from the
URL shown in logs.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote

from threadline.errors import (
    ConfigurationError,
    PluginNotInstalledError,
    StoreNotFoundError,
    StoreUnavailableError,
    ThreadlineError,
)
from threadline.ids import new_id
from threadline.urls import StoreURL
from threadline_fsspec.backends import Backend, FsspecBackend, LocalBackend, is_network_error
from threadline_fsspec.layout import FORMAT_FILE

__all__ = ["FSSPEC_PROTOCOLS", "OBJECT_STORE_SCHEMES", "StoreOptions", "backend_from_url"]

OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "az", "abfs")
"""Schemes served directly (without the ``fsspec+`` prefix)."""

FSSPEC_PROTOCOLS = (
    "memory",
    "file",
    "local",
    "s3",
    "s3a",
    "gs",
    "gcs",
    "az",
    "abfs",
    "abfss",
    "adl",
    "oss",
    "hdfs",
    "webhdfs",
    "sftp",
    "ssh",
    "ftp",
    "smb",
    "webdav",
)
"""Protocols registered as ``fsspec+PROTO://`` schemes. Any other fsspec file system
object works through :meth:`threadline_fsspec.FsspecStore.from_filesystem`."""

_DRIVE = re.compile(r"/[A-Za-z]:[/\\]")


class StoreOptions:
    """The store's own URL options (everything else goes to fsspec)."""

    def __init__(self, query: dict[str, str]) -> None:
        self.lock_timeout = _positive_float(query.pop("lock_timeout", "30"), "lock_timeout")
        self.fsync = _boolean(query.pop("fsync", "true"), "fsync")


def _positive_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ConfigurationError(f"{name} must be > 0, got {text!r}")
    return value


def _boolean(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {text!r}")


def _storage_options(query: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in query.items():
        lowered = value.lower()
        options[key] = True if lowered == "true" else False if lowered == "false" else value
    return options


def _rest(url: StoreURL) -> str:
    """What follows ``scheme://`` in the raw URL, without query or fragment, unquoted.

    Taken from the raw text because a parsed host is lowercased, and bucket names
    and folders are not.
    """
    rest = url.raw.split("://", 1)[1]
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    return rest


def local_path(url: StoreURL) -> str:
    """The directory a ``file://`` URL names, made absolute."""
    if url.username or url.password:
        raise ConfigurationError(f"{url.scheme}:// URLs take no user or password: {url.redacted()}")
    path = unquote(_rest(url))
    if path.startswith("localhost/"):
        path = path[len("localhost") :]
    if _DRIVE.match(path):  # file:///C:/dir on Windows
        path = path[1:]
    if not path:
        raise ConfigurationError(
            f"{url.scheme}:// needs a directory, e.g. {url.scheme}:///var/lib/threadline"
        )
    return os.path.abspath(os.path.expanduser(path))


def backend_from_url(url: StoreURL, *, create: bool = True) -> tuple[Backend, StoreOptions]:
    """Open the file system and folder that ``url`` names (imports fsspec when needed).

    With ``create=False`` a folder that holds no threadline store (no
    ``threadline-fsspec.json``) raises :class:`StoreNotFoundError` before anything is made.
    """
    query = dict(url.query)
    options = StoreOptions(query)
    scheme = url.scheme
    protocol = scheme[len("fsspec+") :] if scheme.startswith("fsspec+") else scheme
    if protocol in ("file", "local"):
        path = local_path(url)
        if not create and not os.path.isfile(os.path.join(path, FORMAT_FILE)):
            if os.path.exists(path) and not os.path.isdir(path):
                raise ConfigurationError(f"{path} exists and is not a directory")
            raise StoreNotFoundError(f"no store at {url.redacted()}: {_missing(path)}")
        return LocalBackend(path, fsync=options.fsync), options
    import fsspec
    import fsspec.core

    if protocol == "memory":
        name = unquote(_rest(url)).strip("/") or f"threadline-{new_id()}"
        fs, root = fsspec.filesystem("memory"), "/" + name
    else:
        try:
            fs, root = fsspec.core.url_to_fs(
                f"{protocol}://{_rest(url)}", **_storage_options(query)
            )
        except ImportError as exc:
            raise PluginNotInstalledError(
                f"{scheme}:// needs the fsspec implementation for {protocol!r}: {exc}"
            ) from None
        except ValueError as exc:
            raise ConfigurationError(f"cannot open {url.redacted()}: {exc}") from None
        except Exception as exc:  # refused, unknown host, timed out; a login refused
            raise _open_error(url, exc) from None
        if not str(root).strip("/"):
            raise ConfigurationError(
                f"{scheme}:// needs a bucket or folder, e.g. {scheme}://bucket/prefix"
            )
    root = str(root).rstrip("/")
    if not create:
        try:
            found = fs.exists(f"{root}/{FORMAT_FILE}")
        except Exception as exc:
            raise _open_error(url, exc) from None
        if not found:
            raise StoreNotFoundError(
                f"no store at {url.redacted()}: it holds no {FORMAT_FILE} (nothing was created)"
            )
    return FsspecBackend(fs, root), options


def _open_error(url: StoreURL, exc: Exception) -> ThreadlineError:
    """The typed error for a file system that failed to open: :class:`StoreUnavailableError`
    when it cannot be reached (any ``OSError`` or network error of its backend), else
    :class:`ConfigurationError` (a refused login, an unknown option)."""
    if isinstance(exc, ThreadlineError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if url.password:
        text = text.replace(url.password, "***")
    if isinstance(exc, OSError) or is_network_error(exc):
        return StoreUnavailableError(f"cannot reach {url.redacted()}: {text}")
    return ConfigurationError(f"cannot open {url.redacted()}: {text}")


def _missing(path: str) -> str:
    if not os.path.exists(path):
        return f"the folder {path} does not exist (nothing was created)"
    return f"the folder {path} holds no {FORMAT_FILE} (nothing was created)"
