"""Shared helpers of the reliability suite: a streaming model server, PostgreSQL, SQLite, seeds.

Import what you need from a test module of this package::

    from ._servers import Reply, StreamingServer, postgres_url, reliability_seed

:class:`StreamingServer`
    An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 that runs in a
    daemon thread with its own event loop, so it keeps streaming while the test blocks
    (``time.sleep``, ``subprocess``, ``asyncio.run`` of its own). What it answers is a
    function of the request (``respond``) returning a :class:`Reply`: the text pieces,
    the pause between them, an error status, or a connection dropped mid-stream. Every
    request is kept in :attr:`StreamingServer.requests` with the monotonic time each
    piece was written (``CLOCK_MONOTONIC`` is shared by every process on the machine, so
    a child's ``time.monotonic()`` compares with it). Standard library only.
``postgres_url`` (pytest fixture, module scope)
    A database of its own on the PostgreSQL server (``THREADLINE_TEST_POSTGRES``,
    default ``postgresql://postgres@127.0.0.1:5432/test``), created for the module and
    dropped (``WITH (FORCE)``) afterwards. Unreachable server: the test skips with the
    reason, or fails when ``CI`` is set. Use it by importing it into the test module
    (``from ._servers import postgres_url``) and naming it as an argument; the plain
    context manager :func:`fresh_postgres_database` does the same outside pytest.
``postgres_cluster`` (pytest fixture, function scope)
    A throwaway PostgreSQL server of the test's own (``threadline_postgres.cluster.TempCluster``:
    ``initdb`` into a temporary folder, a free port of 127.0.0.1, deleted afterwards) for
    tests that stop, crash or restart the server; the server above is never touched, and
    its postmaster start time is checked to be unchanged afterwards. No PostgreSQL server
    binaries: skip with the reason, or fail when ``CI`` is set.
:func:`sqlite_integrity`
    ``PRAGMA integrity_check`` of a database file, through ``sqlite3`` directly.
:func:`migrate_store`
    Open a store URL once and close it, so that its migrations are behind a test's timing.
:func:`store_label`
    ``sqlite``, ``postgres``, ``fsspec-file``...: the store of a URL, for ``record(store=...)``.
:func:`reliability_seed`
    The run's seed: ``THREADLINE_RELIABILITY_SEED`` if set, else a random one (printed,
    so a failing run can be replayed with ``THREADLINE_RELIABILITY_SEED=<seed>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from threadline_postgres.cluster import TempCluster

__all__ = [
    "ADMIN_POSTGRES_URL",
    "SEED_ENV",
    "Reply",
    "ServedRequest",
    "StreamingServer",
    "echo_reply",
    "fresh_postgres_database",
    "migrate_store",
    "postgres_cluster",
    "postgres_unreachable",
    "postgres_url",
    "reliability_seed",
    "sqlite_integrity",
    "store_label",
]

SEED_ENV = "THREADLINE_RELIABILITY_SEED"
ADMIN_POSTGRES_URL = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


# -- seeds ------------------------------------------------------------------------------------


def reliability_seed() -> int:
    """``THREADLINE_RELIABILITY_SEED`` as an int, else a fresh random seed; printed either way."""
    raw = os.environ.get(SEED_ENV, "").strip()
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"reliability seed: {seed} (replay with {SEED_ENV}={seed})")
    return seed


# -- SQLite -----------------------------------------------------------------------------------


def sqlite_integrity(path: str | os.PathLike[str]) -> str:
    """The result of ``PRAGMA integrity_check`` on the file (``"ok"`` when it is sound)."""
    connection = sqlite3.connect(os.fspath(path), timeout=30)
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    return "\n".join(str(row[0]) for row in rows)


def store_label(url: str) -> str:
    """A short name of the store behind a URL, for records: sqlite, postgres, fsspec-file..."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgres"
    if scheme in ("sqlite", "memory"):
        return scheme
    return f"fsspec-{scheme.removeprefix('fsspec+')}"


async def migrate_store(url: str) -> None:
    """Open the store at ``url`` once (applying its migrations) and close it."""
    import threadline

    store = await threadline.connect(url)
    await store.close()


# -- PostgreSQL -------------------------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))


def _shown(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.username or ''}@{host}{port}{parts.path}"


def postgres_unreachable(reason: str) -> NoReturn:
    """Skip (or, when ``CI`` is set, fail) because the PostgreSQL server cannot be used."""
    message = f"PostgreSQL server not reachable at {_shown(ADMIN_POSTGRES_URL)}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _create_database(name: str) -> None:
    """``CREATE DATABASE``, retried while another session holds ``template1`` (parallel runs)."""
    import asyncpg

    for attempt in range(20):
        try:
            await _admin(f'CREATE DATABASE "{name}"')
            return
        except asyncpg.ObjectInUseError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.1 + 0.1 * attempt)


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "threadline_rel") -> Iterator[str]:
    """Create ``<prefix>_<random>`` on the server, yield its URL, drop it afterwards.

    Raises ``OSError``/``asyncpg`` errors when the server cannot be reached; the
    :func:`postgres_url` fixture turns those into a skip (or a failure under CI).
    """
    name = f"{prefix}_{secrets.token_hex(5)}"
    asyncio.run(_create_database(name))
    try:
        yield _with_database(ADMIN_POSTGRES_URL, name)
    finally:
        _drop_database(name)


def _drop_database(name: str, attempts: int = 10) -> None:
    """Drop ``name``, retrying a few times while the server is busy or briefly unreachable."""
    for attempt in range(attempts):
        try:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except Exception as exc:  # never hide the test's own outcome
            if attempt == attempts - 1:
                print(f"could not drop database {name}: {exc}")
            else:
                time.sleep(1.0)


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (
        OSError,
        asyncio.TimeoutError,
        asyncpg.CannotConnectNowError,
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidCatalogNameError,
    )


@pytest.fixture(scope="module")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``postgresql://`` URL to a database created for this module (dropped afterwards).

    The database is named ``threadline_rel_<module>_<random>``, so a leftover is easy to
    trace. Only a server that cannot be reached skips (fails under CI); any other error
    while creating the database fails the tests.
    """
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")[:24]
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(fresh_postgres_database(f"threadline_rel_{module}"))
    except _unreachable_errors() as exc:
        postgres_unreachable(f"{type(exc).__name__}: {exc}")
    with stack:
        yield url


@pytest.fixture
def postgres_cluster() -> Iterator[TempCluster]:
    """A throwaway server to stop and start (``TempCluster``); the shared one is left alone."""
    from threadline_postgres.cluster import ClusterUnavailableError, temp_cluster

    try:
        with temp_cluster(watch=ADMIN_POSTGRES_URL) as cluster:
            yield cluster
    except ClusterUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: failing instead of skipping)", pytrace=False)
        pytest.skip(str(exc))


# -- an OpenAI-compatible streaming server ----------------------------------------------------


@dataclass
class Reply:
    """How the server answers one request.

    :param pieces: content deltas, one SSE event (and one TCP write) each.
    :param delay: seconds between two pieces.
    :param first_delay: seconds before the first piece.
    :param status: not 200: a JSON error body in OpenAI's shape, then the connection closes.
    :param drop_after: send this many pieces, then drop the connection (no ``[DONE]``).
    :param delays: seconds to wait before each piece, instead of ``delay`` (a model that
        stops to think in the middle of a reply); pieces beyond it use ``delay``.
    """

    pieces: Sequence[str] = ()
    delay: float = 0.0
    first_delay: float = 0.0
    status: int = 200
    drop_after: int | None = None
    delays: Sequence[float] = ()


@dataclass
class ServedRequest:
    """One request as the server saw it, numbered from 1."""

    index: int
    path: str
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)
    sent: list[tuple[float, str]] = field(default_factory=list)
    """``(time.monotonic(), piece)`` for every piece written, just before it was written."""
    finished: bool = False
    """True once the whole reply, ``[DONE]`` included, was written."""

    @property
    def last_user_text(self) -> str:
        """The content of the last ``user`` message of the request ("" if none)."""
        messages = self.body.get("messages") or []
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content") or "")
        return ""


Respond = Callable[[ServedRequest], Reply]


def echo_reply(request: ServedRequest) -> Reply:
    """The default answer: ``"Echo: " + the last user message``, one piece per word."""
    words = ("Echo: " + request.last_user_text).split(" ")
    return Reply([w if i == 0 else " " + w for i, w in enumerate(words)])


_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}


class StreamingServer:
    """An OpenAI-compatible streaming server in a thread: ``with StreamingServer(f) as s: ...``.

    Point the ``openai`` provider at :attr:`base_url` (no API key needed). ``respond``
    may be replaced at any time (:attr:`respond`); it runs on the server's thread.
    """

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond: Respond = respond or echo_reply
        self.requests: list[ServedRequest] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the provider's ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StreamingServer:
        """Start the thread and listen on a free port."""
        self._thread = threading.Thread(target=self._main, name="streaming-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("the streaming server did not start")
        return self

    def stop(self) -> None:
        """Stop listening, end the connections and the thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> StreamingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def request_for(self, user_text: str) -> ServedRequest | None:
        """The last request whose last user message is ``user_text``."""
        with self._lock:
            found = [r for r in self.requests if r.last_user_text == user_text]
        return found[-1] if found else None

    # -- the thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            loop.run_forever()
            self._server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                _method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                with self._lock:
                    request = ServedRequest(len(self.requests) + 1, path, body)
                    self.requests.append(request)
                if not await self._answer(writer, request, self.respond(request)):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client went away (or was killed)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, request: ServedRequest, reply: Reply
    ) -> bool:
        """Write the response; True when the connection can serve another request."""

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        async def chunk(data: bytes) -> None:
            await send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        def event(obj: object) -> bytes:
            text = obj if isinstance(obj, str) else json.dumps(obj)
            return f"data: {text}\n\n".encode()

        rid = f"chatcmpl-{request.index:05d}"

        def delta(content: str | None, finish: str | None = None) -> dict[str, Any]:
            d: dict[str, Any] = {} if content is None else {"content": content}
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": "reliability-model",
                "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
            }

        if reply.status != 200:
            body = json.dumps({"error": {"message": "injected", "type": "server_error"}}).encode()
            reason = _REASONS.get(reply.status, "Status")
            await send(
                f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return False
        await send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await chunk(event({**delta(""), "choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        for i, piece in enumerate(reply.pieces):
            if reply.drop_after is not None and i >= reply.drop_after:
                writer.transport.abort()
                return False
            wait = reply.delays[i] if i < len(reply.delays) else (reply.delay if i else 0.0)
            if wait:
                await asyncio.sleep(wait)
            request.sent.append((time.monotonic(), piece))
            await chunk(event(delta(piece)))
        if reply.drop_after is not None:
            writer.transport.abort()
            return False
        await chunk(event(delta(None, "stop")))
        usage = {
            "prompt_tokens": len(request.last_user_text.split()),
            "completion_tokens": len(reply.pieces),
            "total_tokens": len(request.last_user_text.split()) + len(reply.pieces),
        }
        await chunk(event({**delta(None), "choices": [], "usage": usage}))
        await chunk(b"data: [DONE]\n\n")
        await send(b"0\r\n\r\n")
        request.finished = True
        return True
