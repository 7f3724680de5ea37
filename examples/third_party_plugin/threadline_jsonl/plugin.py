"""Registers ``jsonl://`` with threadline (the module the entry point names)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from threadline.errors import ConfigurationError, StoreNotFoundError
from threadline.hookspecs import hookimpl
from threadline.urls import StoreURL
from threadline_jsonl.store import JsonlStore


async def open_jsonl_store(url: StoreURL, *, create: bool = True) -> JsonlStore:
    """Open ``jsonl:///relative.jsonl`` or ``jsonl:////abs/path.jsonl`` (``?fsync=false``).

    ``create=False`` (reads, exports, deletions) opens only a file that exists.
    """
    if url.host:
        raise ConfigurationError("a jsonl:// URL names a file: jsonl:///relative or jsonl:////abs")
    path = url.path[1:] if url.path.startswith("/") else url.path
    if not path:
        raise ConfigurationError("a jsonl:// URL needs a file path, e.g. jsonl:///chat.jsonl")
    fsync = url.option("fsync", "true").lower()
    if fsync not in ("true", "false"):
        raise ConfigurationError(f"fsync must be true or false, got {fsync!r}")
    _check_file(Path(path), url, create=create)
    return JsonlStore.open(Path(path), fsync=fsync == "true")


def _check_file(path: Path, url: StoreURL, *, create: bool) -> None:
    """Refuse a directory; without ``create``, a file that does not exist."""
    if path.is_dir():
        raise ConfigurationError(f"{url.redacted()} names a directory, not a file")
    if not create and not path.is_file():
        raise StoreNotFoundError(f"no store at {url.redacted()}: {path} does not exist")


@hookimpl
def threadline_register_stores(register: Callable[..., None]) -> None:
    register(
        "jsonl",
        open_jsonl_store,
        "One append-only JSON-lines file, one process: jsonl:////abs/path.jsonl, ?fsync=false",
    )
