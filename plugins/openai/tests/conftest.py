"""A scriptable HTTP/1.1 server on 127.0.0.1 for testing the provider over real sockets.

Built on ``asyncio.start_server`` so a test controls every byte: status line, headers,
chunk boundaries, pauses between TCP writes, and dropping the connection. Each request
is answered by the next handler of the script (the last one repeats) and recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import pytest

from threadline.runtime.providers import ChatRequest, StreamEnd, StreamEvent, TextDelta

PAUSE = 0.02  # between two TCP writes, so the client reads them separately


@attrs.define
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """The server side of one connection, given to a handler."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.keep_alive = False  # a handler sets it to serve another request on this connection

    async def send(self, data: bytes, pause: float = 0.0) -> None:
        self.writer.write(data)
        await self.writer.drain()
        if pause:
            await asyncio.sleep(pause)

    async def head(self, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def chunk(self, data: bytes, pause: float = PAUSE) -> None:
        await self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n", pause)

    def abort(self) -> None:
        self.writer.transport.abort()


_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}
Handler = Callable[[Conn, Recorded], Awaitable[None]]
Part = bytes | str | float


class Chunks:
    """Builders of SSE events and completion chunks (the ``chunks`` fixture)."""

    @staticmethod
    def event(obj: object) -> bytes:
        """One ``data:`` event (JSON unless bytes/str) with its blank line."""
        if isinstance(obj, bytes):
            return b"data: " + obj + b"\n\n"
        text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        return f"data: {text}\n\n".encode()

    @staticmethod
    def chunk(
        content: str | None = None, *, finish: str | None = None, **delta: Any
    ) -> dict[str, Any]:
        """A ``chat.completion.chunk`` with one choice."""
        d: dict[str, Any] = dict(delta)
        if content is not None:
            d["content"] = content
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": "test-model",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
        }

    @staticmethod
    def usage(prompt: int, completion: int) -> dict[str, Any]:
        """The last chunk of a stream with ``include_usage``: no choices, token counts."""
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": "test-model",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    @classmethod
    def text_stream(cls, *pieces: str) -> list[Part]:
        """A complete stream: a role chunk, one chunk per piece, stop, usage, [DONE]."""
        parts: list[Part] = [cls.event(cls.chunk(role="assistant", content=""))]
        parts += [cls.event(cls.chunk(p)) for p in pieces]
        parts.append(cls.event(cls.chunk(finish="stop")))
        parts.append(cls.event(cls.usage(5, len(pieces))))
        parts.append(b"data: [DONE]\n\n")
        return parts


@pytest.fixture
def chunks() -> type[Chunks]:
    return Chunks


class ScriptedServer:
    """The test server: ``script(...)`` sets the handlers, ``requests`` records what came."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.connections: set[int] = set()  # ids of the connections that carried requests
        self._script: list[Handler] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def script(self, *handlers: Handler) -> None:
        self._script = list(handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            conn = Conn(reader, writer)
            conn.keep_alive = True
            while conn.keep_alive:
                conn.keep_alive = False
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                recorded = Recorded(method, path, headers, body)
                self.requests.append(recorded)
                self.connections.add(id(writer))
                handler = self._script.pop(0) if len(self._script) > 1 else self._script[0]
                await handler(conn, recorded)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ends stalled handlers; a cancelled task here upsets asyncio 3.11
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- handlers --------------------------------------------------------------------------

    @staticmethod
    def sse(
        parts: Sequence[Part],
        *,
        status: int = 200,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
        end: bool = True,
        drop: bool = False,
        chunked: bool = True,
        keep_alive: bool = False,
    ) -> Handler:
        """Send ``parts`` as separate TCP writes (floats are pauses).

        ``end=False`` leaves out the last chunk marker; ``drop`` then closes the connection.
        ``chunked=False`` sends a body delimited by the connection closing; ``keep_alive``
        leaves the connection open for the client's next request.
        """

        async def handle(conn: Conn, _req: Recorded) -> None:
            hdrs = {"Content-Type": content_type, "Cache-Control": "no-cache"}
            if not keep_alive:
                hdrs["Connection"] = "close"
            if chunked:
                hdrs["Transfer-Encoding"] = "chunked"
            hdrs.update(headers or {})
            await conn.head(status, hdrs)
            for part in parts:
                if isinstance(part, float):
                    await asyncio.sleep(part)
                    continue
                data = part.encode() if isinstance(part, str) else part
                if chunked:
                    await conn.chunk(data)
                else:
                    await conn.send(data, PAUSE)
            if drop:
                conn.abort()
                return
            if chunked and end:
                await conn.send(b"0\r\n\r\n")
                conn.keep_alive = keep_alive

        return handle

    @staticmethod
    def respond(
        status: int,
        body: object = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Handler:
        """A whole response with a Content-Length (JSON unless ``body`` is bytes)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()

        async def handle(conn: Conn, _req: Recorded) -> None:
            hdrs = {
                "Content-Type": content_type,
                "Content-Length": str(len(data)),
                "Connection": "close",
            }
            hdrs.update(headers or {})
            await conn.head(status, hdrs)
            await conn.send(data)

        return handle

    @staticmethod
    def stall() -> Handler:
        """Read the request and never answer."""

        async def handle(_conn: Conn, _req: Recorded) -> None:
            await asyncio.sleep(3600)

        return handle

    @staticmethod
    def hang_up() -> Handler:
        """Read the request and close the connection without a word."""

        async def handle(conn: Conn, _req: Recorded) -> None:
            conn.abort()

        return handle


@pytest.fixture
def server_class() -> type[ScriptedServer]:
    return ScriptedServer


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    srv = ScriptedServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OPENAI_* variable of the developer's shell may leak into a test."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


async def collect(
    stream: AsyncIterator[StreamEvent],
) -> tuple[list[TextDelta], StreamEnd | None, BaseException | None]:
    """Drain a stream: its text deltas, its end event, and the error that stopped it."""
    texts: list[TextDelta] = []
    end: StreamEnd | None = None
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                texts.append(event)
            else:
                assert end is None, "more than one StreamEnd"
                end = event
    except Exception as exc:
        return texts, end, exc
    return texts, end, None


@pytest.fixture
def collect_stream() -> Callable[..., Awaitable[Any]]:
    return collect


def make_request(**kw: Any) -> ChatRequest:
    """A request of one user message (ids made up for the test)."""
    from threadline.models import Message

    sid = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"
    tid = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d5"
    messages = kw.pop("messages", None) or [
        Message(session_id=sid, tenant_id=tid, role="user", content="hi")
    ]
    return ChatRequest(model=kw.pop("model", "test-model"), messages=messages, **kw)


@pytest.fixture
def request_factory() -> Callable[..., ChatRequest]:
    return make_request


# Only this plugin loads in its tests, whatever else is installed in the environment.
os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-openai"
