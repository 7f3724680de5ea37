"""Every store, opened fresh for a reliability test, with raw snapshots of what it holds.

:func:`open_store` opens one of :data:`KINDS` on empty storage of its own and yields a
:class:`StoreHandle`: the open :class:`threadline.Store`, the URL any other caller (the
CLI, a second connection) can open, and two views of the storage *below* the public API:

* :meth:`StoreHandle.snapshot`: a deterministic dump of every row, file or object the
  store holds (folders and empty lock files aside). Equal snapshots before and after an
  operation mean it changed nothing.
* :meth:`StoreHandle.raw_bytes`: every byte the store keeps, as stored (the SQLite file
  with its WAL and shared-memory files, every file of an fsspec folder, a ``pg_dump`` of
  the PostgreSQL schema), to scan for secrets.

=================  ========================================================================
``memory``         ``memory://NAME``: a named in-process store, shared by every connect
``sqlite``         ``sqlite:////tmp/.../store.db``: a fresh database file
``postgres``       ``postgresql://...?schema=t_...``: a fresh schema in a database created
                   for this test run (dropped when the process ends)
``fsspec-file``    ``file:///tmp/.../folder``: a fresh local folder
``fsspec-memory``  ``fsspec+memory://NAME``: a fresh folder in fsspec's memory file system
=================  ========================================================================

PostgreSQL is the server at ``THREADLINE_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``, used only to create and drop the run's
database). When it cannot be reached the test skips with the reason, except under CI
(``CI`` set), where it fails.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import pickle
import secrets
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
import pytest

import threadline
from threadline.urls import StoreURL

__all__ = [
    "ADMIN_URL",
    "KINDS",
    "StoreHandle",
    "changes",
    "describe_change",
    "open_store",
    "postgres_admin",
    "postgres_database",
    "postgres_url",
    "run_sync",
    "tenant_view",
]

KINDS = ("memory", "sqlite", "postgres", "fsspec-file", "fsspec-memory")
"""Every store the reliability suite runs on."""

ADMIN_URL = os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

T = TypeVar("T")


def run_sync(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh loop in a thread (safe inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_fn())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


# -- PostgreSQL -------------------------------------------------------------------------------

_pg_lock = threading.Lock()
_pg_database: str | None = None
_pg_error: str | None = None


async def postgres_admin(sql: str, database: str | None = None) -> None:
    """Run one statement as the admin user (on ``database`` instead of the admin one)."""
    import asyncpg

    url = ADMIN_URL if database is None else with_database(ADMIN_URL, database)
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_database(
    url: str,
    database: str,
    query: str = "",
    *,
    user: str | None = None,
    password: str | None = None,
) -> str:
    """``url`` pointing at ``database`` (as ``user``:``password`` if given), with ``query``."""
    parsed = StoreURL.parse(url)
    name = user if user is not None else parsed.username or ""
    secret = password if password is not None else parsed.password
    userinfo = quote(name, safe="")
    if secret:
        userinfo += ":" + quote(secret, safe="")
    netloc = (userinfo + "@" if userinfo else "") + (parsed.host or "")
    if parsed.port:
        netloc += f":{parsed.port}"
    return f"postgresql://{netloc}/{database}" + (f"?{query}" if query else "")


def _unreachable(reason: str) -> None:
    message = f"PostgreSQL server not reachable at {StoreURL.parse(ADMIN_URL)}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


def _drop_database(name: str) -> None:
    try:
        run_sync(lambda: postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception as exc:  # pragma: no cover - best effort at exit
        print(f"could not drop {name}: {exc}")


def postgres_database() -> str:
    """The name of this run's database (created on first use, dropped at exit).

    Skips the calling test when the server cannot be reached (fails under CI).
    """
    global _pg_database, _pg_error
    with _pg_lock:
        if _pg_database is None and _pg_error is None:
            import asyncpg

            name = f"threadline_rel_{secrets.token_hex(6)}"
            try:
                run_sync(lambda: postgres_admin(f'CREATE DATABASE "{name}"'))
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
                _pg_error = f"{type(exc).__name__}: {exc}"
            else:
                _pg_database = name
                atexit.register(_drop_database, name)
    if _pg_database is None:
        _unreachable(_pg_error or "unknown error")
        raise AssertionError("unreachable")  # pragma: no cover
    return _pg_database


def postgres_url(
    schema: str | None, *, user: str | None = None, password: str | None = None
) -> str:
    """A store URL on this run's database, tables in ``schema``."""
    query = f"schema={schema}" if schema else ""
    return with_database(ADMIN_URL, postgres_database(), query, user=user, password=password)


# -- snapshots --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able, deterministic form of what the memory store keeps."""
    if isinstance(value, Mapping):
        return sorted(([_plain(k), _plain(v)] for k, v in value.items()), key=repr)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=repr)
    if attrs.has(type(value)):
        to_dict = getattr(value, "to_dict", None)
        if to_dict is not None:
            return {"__type__": type(value).__name__, **_plain_dict(to_dict())}
        return {
            "__type__": type(value).__name__,
            **{a.name: _plain(getattr(value, a.name)) for a in attrs.fields(type(value))},
        }
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _plain_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in data.items()}


def _dump(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr).encode(
        "utf-8", "surrogatepass"
    )


def _memory_rows(plugin: Any) -> dict[str, Any]:
    """The memory store's data: its attributes but locks, flags and bound methods."""
    return {
        k: v
        for k, v in vars(plugin).items()
        if k != "closed"
        and not callable(v)
        and not hasattr(v, "acquire")
        and not (isinstance(v, dict) and v and all(callable(x) for x in v.values()))
    }


@attrs.define
class StoreHandle:
    """An open store of one kind on storage of its own."""

    kind: str
    url: str
    """A URL that opens the same data (for the CLI, or a second connection)."""
    store: threadline.Store
    location: str
    """The SQLite file, the folder, the memory name or the PostgreSQL schema."""
    extra_connections: list[threadline.Store] = attrs.field(factory=list)
    _pg_conn: Any = None
    _file_cache: dict[tuple[Any, ...], bytes] = attrs.field(factory=dict, repr=False)
    """File digests by (path, size, mtime, inode, ctime): unchanged files are not read again."""

    def __repr__(self) -> str:
        return f"<StoreHandle {self.kind} {StoreURL.parse(self.url)}>"

    async def reopen(self) -> threadline.Store:
        """Another connection to the same data (closed with the handle)."""
        other = await threadline.connect(self.url)
        self.extra_connections.append(other)
        return other

    async def snapshot(self) -> bytes:
        """Every row, file or object below the API, in a deterministic order."""
        if self.kind == "memory":
            return pickle.dumps(_memory_rows(self.store.primary))  # exact and fast
        if self.kind == "sqlite":
            return await asyncio.to_thread(self._sqlite_rows)
        if self.kind == "postgres":
            return await self._postgres_rows()
        files = await asyncio.to_thread(self._files, True)
        return _dump([[name, data.decode()] for name, data in files])

    async def raw_bytes(self) -> bytes:
        """Every byte the store keeps, as kept (for secret scans)."""
        if self.kind == "memory":
            return _dump(self._memory_state())
        if self.kind == "sqlite":
            return await asyncio.to_thread(_sqlite_files, self.location)
        if self.kind == "postgres":
            return await self._pg_dump()
        files = await asyncio.to_thread(self._files)
        return b"\n".join(name.encode() + b"\n" + data for name, data in files)

    # -- per kind -------------------------------------------------------------------------

    def _memory_state(self) -> Any:
        return _plain(_memory_rows(self.store.primary))

    def _sqlite_rows(self) -> bytes:
        conn = sqlite3.connect(f"file:{self.location}?mode=ro", uri=True)
        try:
            conn.text_factory = bytes
            tables = [
                r[0].decode()
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            out: list[Any] = []
            for table in tables:
                rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
                out.append([table, sorted(repr(r) for r in rows)])
            return _dump(out)
        finally:
            conn.close()

    async def _postgres_rows(self) -> bytes:
        import asyncpg

        if self._pg_conn is None:
            self._pg_conn = await asyncpg.connect(postgres_url(None), timeout=5)
        conn = self._pg_conn
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = $1 ORDER BY table_name",
                self.location,
            )
            out: list[Any] = []
            for row in tables:
                name = row["table_name"]
                values = await conn.fetch(f'SELECT t::text AS r FROM "{self.location}"."{name}" t')
                out.append([name, sorted(v["r"] for v in values)])
        return _dump(out)

    async def close(self) -> None:
        """Close the extra connections and the store."""
        for other in self.extra_connections:
            await other.close()
        if self._pg_conn is not None:
            await self._pg_conn.close()
        await self.store.close()

    async def _pg_dump(self) -> bytes:
        url = postgres_url(None)
        if shutil.which("pg_dump") is None:  # pragma: no cover - fall back to the rows
            return await self._postgres_rows()
        done = await asyncio.to_thread(
            subprocess.run,
            ["pg_dump", "--data-only", "--inserts", f"--schema={self.location}", url],
            capture_output=True,
            check=True,
        )
        return done.stdout + b"\n" + await self._postgres_rows()

    def _files(self, digests: bool = False) -> list[tuple[str, bytes]]:
        """``(name, bytes)`` of every file; with ``digests``, size and BLAKE2 digest instead."""
        if self.kind == "fsspec-file":
            found = []
            stack = [self.location]
            while stack:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif not _is_lock(entry.name):
                            name = os.path.relpath(entry.path, self.location)
                            if not digests:
                                found.append((name, Path(entry.path).read_bytes()))
                                continue
                            st = entry.stat(follow_symlinks=False)
                            key = (
                                entry.path,
                                st.st_size,
                                st.st_mtime_ns,
                                st.st_ino,
                                st.st_ctime_ns,
                            )
                            digest = self._file_cache.get(key)
                            if digest is None:
                                digest = _digest(Path(entry.path).read_bytes())
                                self._file_cache[key] = digest
                            found.append((name, digest))
            return sorted(found)
        import fsspec

        fs = fsspec.filesystem("memory")
        root = "/" + self.location
        if not fs.exists(root):
            return []
        names = sorted(fs.find(root, detail=False))
        return [
            (n, _digest(fs.cat_file(n)) if digests else fs.cat_file(n))
            for n in names
            if not _is_lock(n.rsplit("/", 1)[-1])
        ]


def _sqlite_files(location: str) -> bytes:
    """The database file with its WAL, shared-memory and journal files, as they are."""
    parts = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(location + suffix)
        if path.exists():
            parts.append(path.read_bytes())
    return b"\n".join(parts)


def _digest(data: bytes) -> bytes:
    """A file's size and BLAKE2 digest, standing for its bytes in a snapshot."""
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=16).hexdigest()}".encode()


def _is_lock(name: str) -> bool:
    """Lock files hold no data (empty files writers ``flock``); folders neither."""
    return name == "lock" or name.endswith(".lock")


async def tenant_view(
    store: threadline.Store,
    tenant_id: str,
    *,
    extra_session_ids: Iterable[str] = (),
    extra_checkpoint_ids: Iterable[str] = (),
) -> bytes:
    """Everything ``tenant_id`` can read through the public API, as canonical JSON bytes.

    Sessions come from ``list_sessions``; ``extra_session_ids`` and
    ``extra_checkpoint_ids`` are read directly as well (ids the caller knows).
    """
    sessions = await store.list_sessions(tenant_id, limit=10_000)
    ids = sorted({s.id for s in sessions} | set(extra_session_ids))
    view: dict[str, Any] = {"sessions": [s.to_dict() for s in sessions]}
    per: dict[str, Any] = {}
    for sid in ids:
        session = await store.get_session(tenant_id, sid)
        latest = await store.get_latest_checkpoint(tenant_id, sid)
        per[sid] = {
            "session": None if session is None else session.to_dict(),
            "messages": [m.to_dict() for m in await store.get_messages(tenant_id, sid)],
            "window": [m.to_dict() for m in await store.load_window(tenant_id, sid, None)],
            "count": await store.count_messages(tenant_id, sid),
            "api_calls": [c.to_dict() for c in await store.list_api_calls(tenant_id, sid)],
            "checkpoints": [
                c.to_dict() for c in await store.list_checkpoints(tenant_id, session_id=sid)
            ],
            "latest": None if latest is None else latest.to_dict(),
        }
    view["per_session"] = per
    view["all_checkpoints"] = [c.to_dict() for c in await store.list_checkpoints(tenant_id)]
    got = {}
    for cid in sorted(set(extra_checkpoint_ids)):
        found = await store.get_checkpoint(tenant_id, cid)
        got[cid] = None if found is None else found.to_dict()
    view["checkpoints_by_id"] = got
    configs = await store.list_agent_configs(tenant_id)
    view["agent_configs"] = [c.to_dict() for c in configs]
    view["by_code"] = {
        c.agent.code: _maybe(await store.load_agent_config(tenant_id=tenant_id, code=c.agent.code))
        for c in configs
    }
    view["by_id"] = {
        c.agent.id: _maybe(await store.load_agent_config(tenant_id=tenant_id, agent_id=c.agent.id))
        for c in configs
    }
    return _dump(view)


def _maybe(config: threadline.AgentConfig | None) -> Any:
    return None if config is None else config.to_dict()


async def changes(handle: StoreHandle, before: bytes) -> str:
    """``""`` when ``handle`` still holds ``before`` (a snapshot), else what changed."""
    after = await handle.snapshot()
    return "" if after == before else describe_change(before, after)


def describe_change(before: bytes, after: bytes, limit: int = 6) -> str:
    """What differs between two snapshots, for an assertion message."""
    if before == after:
        return "no change"

    def entries(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in json.loads(raw):
            if isinstance(item, list) and len(item) == 2 and isinstance(item[1], list):
                for row in item[1]:  # tables: [name, rows]
                    out[f"{item[0]}: {row if isinstance(row, str) else json.dumps(row)}"] = ""
            elif isinstance(item, list) and len(item) == 2:
                out[str(item[0])] = json.dumps(item[1])[:300]  # files: [name, content]
            else:
                out[json.dumps(item)[:300]] = ""
        return out

    if before[:1] == b"\x80":  # the memory store's pickled state
        before, after = (_dump(_plain(pickle.loads(x))) for x in (before, after))
    try:
        old, new = entries(before), entries(after)
    except (ValueError, TypeError):
        return f"{len(before)} bytes became {len(after)} bytes"
    lines = [f"+ {k[:300]} {new[k]}" for k in sorted(set(new) - set(old))]
    lines += [f"- {k[:300]} {old[k]}" for k in sorted(set(old) - set(new))]
    lines += [
        f"~ {k}: {old[k]} -> {new[k]}" for k in sorted(set(old) & set(new)) if old[k] != new[k]
    ]
    shown = lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])
    return "\n".join(shown)


# -- opening ----------------------------------------------------------------------------------


def store_url(kind: str, directory: Path, name: str, *, fast: bool = False) -> tuple[str, str]:
    """The URL and location of a fresh store of ``kind`` (no PostgreSQL schema created yet).

    ``fast`` skips ``fsync`` in a local folder (the same code paths, not crash-safe): for
    tests of what is stored, not of durability.
    """
    if kind == "memory":
        return f"memory://{name}", name
    if kind == "sqlite":
        path = directory / f"{name}.db"
        return f"sqlite:///{path}", str(path)
    if kind == "postgres":
        return postgres_url(name), name
    if kind == "fsspec-file":
        folder = directory / name
        return f"file://{folder}" + ("?fsync=false" if fast else ""), str(folder)
    if kind == "fsspec-memory":
        return f"fsspec+memory://{name}", name
    raise ValueError(f"unknown store kind {kind!r}")


@asynccontextmanager
async def open_store(
    kind: str,
    directory: Path,
    *,
    url: str | None = None,
    location: str | None = None,
    fast: bool = False,
) -> AsyncIterator[StoreHandle]:
    """Open a fresh, empty store of ``kind``; remove its data afterwards.

    :param directory: where file-based stores put their files (a ``tmp_path``).
    :param url: open this URL instead of the default one (with ``location`` naming the
        schema, file or folder it uses), e.g. a PostgreSQL URL with a password.
    :param fast: see :func:`store_url`.
    """
    name = f"t_{secrets.token_hex(5)}"
    if url is None:
        url, location = store_url(kind, directory, name, fast=fast)
    assert location is not None
    store = await threadline.connect(url)
    handle = StoreHandle(kind=kind, url=url, store=store, location=location)
    try:
        yield handle
    finally:
        await handle.close()
        await _remove(kind, location)


async def _remove(kind: str, location: str) -> None:
    if kind == "memory":
        from threadline_memory import plugin

        plugin._named.pop(location, None)
    elif kind == "postgres":
        await postgres_admin(f'DROP SCHEMA IF EXISTS "{location}" CASCADE', postgres_database())
    elif kind == "fsspec-memory":
        import fsspec

        # The entries are filtered directly: fsspec's recursive rm on its memory file
        # system walks every file of the process for each one it removes.
        fs = fsspec.filesystem("memory")
        folder = "/" + location
        for path in [p for p in fs.store if (p + "/").startswith(folder + "/")]:
            del fs.store[path]
        fs.pseudo_dirs[:] = [d for d in fs.pseudo_dirs if not (d + "/").startswith(folder + "/")]
    elif kind == "fsspec-file":
        shutil.rmtree(location, ignore_errors=True)
    elif kind == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            await asyncio.to_thread(Path(location + suffix).unlink, missing_ok=True)
