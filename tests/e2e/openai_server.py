"""A small OpenAI-compatible chat completions server on 127.0.0.1, for e2e tests and benchmarks.

It speaks just enough HTTP/1.1 (keep-alive, chunked transfer) over raw ``asyncio``
streams that a test controls every byte: when each chunk leaves, pauses between TCP
writes, error statuses, and a connection dropped in the middle of a stream. Standard
library only, so a benchmark or an example run can start it as a subprocess::

    python tests/e2e/openai_server.py --port 0 --delay 0.002   # prints "PORT 40123"

By default it answers like the core ``echo`` provider, over HTTP: the reply is
``"Server: " + the last user message``, one SSE chunk per word, then a finish chunk, a
usage chunk and ``[DONE]`` (a request without ``"stream": true`` gets the same answer as one
``chat.completion``). A last user message ``tool:NAME {json}`` (with tools offered)
is answered with tool-call deltas instead, and a tool result is echoed back, so the
examples behave the same against this server as offline. Tests queue one-off handlers
with :meth:`OpenAIServer.script` (used in order, then the default again) or replace
:attr:`OpenAIServer.default`; every request is recorded in :attr:`OpenAIServer.requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = [
    "ECHO_PREFIX",
    "Conn",
    "Handler",
    "OpenAIServer",
    "Request",
    "chunk",
    "complete",
    "echo",
    "echo_reply",
    "error",
    "event",
    "main",
    "stream_text",
    "stream_tool_calls",
    "usage_chunk",
]

ECHO_PREFIX = "Server: "
"""What the default handler puts before the echoed text (tells it apart from ``echo``)."""
MODEL = "mock-model"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class Request:
    """One request as the server received it, numbered from 1 in arrival order."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)
    sent: list[tuple[float, str]] = field(default_factory=list)
    """``(monotonic time, text)`` of every content piece written for this request."""

    @property
    def response_id(self) -> str:
        """The completion id the handlers send for this request: ``chatcmpl-<index>``."""
        return f"chatcmpl-{self.index:04d}"

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of the body."""
        messages: list[dict[str, Any]] = self.json().get("messages", [])
        return messages


class Conn:
    """The server side of one connection, as a handler sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.keep_alive = False
        """Set by a handler that ended its response cleanly, to serve the next request."""

    async def send(self, data: bytes) -> None:
        """Write ``data`` as one TCP write and wait until it is handed to the kernel."""
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def chunk(self, data: bytes) -> None:
        """One HTTP chunk of a chunked body."""
        await self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def end(self) -> None:
        """The last chunk: the body is complete and the connection can serve another request."""
        await self.send(b"0\r\n\r\n")
        self.keep_alive = True

    def abort(self) -> None:
        """Drop the connection at once, mid-response (the client sees a broken stream)."""
        self.writer.transport.abort()


Handler = Callable[[Conn, Request], Awaitable[None]]


# -- SSE payloads ---------------------------------------------------------------------------


def event(obj: object) -> bytes:
    """One SSE ``data:`` event (JSON unless a str) with its blank line."""
    text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def chunk(
    response_id: str, content: str | None = None, *, finish: str | None = None, **delta: Any
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice carrying ``content`` and ``delta``."""
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
    }


def usage_chunk(response_id: str, prompt: int, completion: int) -> dict[str, Any]:
    """The last chunk of a stream asked with ``include_usage``: no choices, token counts."""
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _prompt_tokens(req: Request) -> int:
    try:
        return sum(len(str(m.get("content") or "").split()) for m in req.messages)
    except (ValueError, AttributeError):
        return 0


_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "Transfer-Encoding": "chunked",
}


# -- handlers -------------------------------------------------------------------------------


def stream_text(
    pieces: Sequence[str],
    *,
    delay: float = 0.0,
    first_delay: float = 0.0,
    usage: tuple[int, int] | None = None,
    drop_after: int | None = None,
    after_first: asyncio.Event | None = None,
) -> Handler:
    """Stream ``pieces`` as content deltas, one chunk (and one TCP write) each.

    :param delay: seconds between two pieces.
    :param first_delay: seconds before the first piece (the model "thinking").
    :param usage: ``(prompt, completion)`` tokens of the usage chunk; default: counted.
    :param drop_after: send only this many pieces, then drop the connection (no finish
        reason, no ``[DONE]``).
    :param after_first: the rest waits until this is set (a test sets it once the client
        has the first piece: the gaps after it are then the client's to see, however
        loaded the machine; same event loop only).
    """

    async def handle(conn: Conn, req: Request) -> None:
        rid = req.response_id
        await conn.head(200, dict(_SSE_HEADERS))
        await conn.chunk(event(chunk(rid, "", role="assistant")))
        if first_delay:
            await asyncio.sleep(first_delay)
        for i, piece in enumerate(pieces):
            if drop_after is not None and i >= drop_after:
                conn.abort()
                return
            if i == 1 and after_first is not None:
                await after_first.wait()
            if i and delay:
                await asyncio.sleep(delay)
            req.sent.append((time.monotonic(), piece))
            await conn.chunk(event(chunk(rid, piece)))
        if drop_after is not None:
            conn.abort()
            return
        await conn.chunk(event(chunk(rid, finish="stop")))
        prompt, completion = usage or (_prompt_tokens(req), len(pieces))
        await conn.chunk(event(usage_chunk(rid, prompt, completion)))
        await conn.chunk(b"data: [DONE]\n\n")
        await conn.end()

    return handle


def stream_tool_calls(
    calls: Sequence[tuple[str, str, dict[str, Any]]],
    *,
    split: int = 3,
    usage: tuple[int, int] = (20, 10),
) -> Handler:
    """Stream tool calls ``(id, name, arguments)`` as deltas, the arguments cut in ``split``.

    The first delta of a call carries its id and name, the next ones pieces of the JSON
    arguments string, as OpenAI sends them; the stream ends with ``finish_reason``
    ``tool_calls``, a usage chunk and ``[DONE]``.
    """

    async def handle(conn: Conn, req: Request) -> None:
        rid = req.response_id
        await conn.head(200, dict(_SSE_HEADERS))
        await conn.chunk(event(chunk(rid, None, role="assistant")))
        for index, (call_id, name, arguments) in enumerate(calls):
            first = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            await conn.chunk(event(chunk(rid, tool_calls=[first])))
            raw = json.dumps(arguments)
            size = max(1, -(-len(raw) // max(1, split)))
            for start in range(0, len(raw), size):
                part = {"index": index, "function": {"arguments": raw[start : start + size]}}
                await conn.chunk(event(chunk(rid, tool_calls=[part])))
        await conn.chunk(event(chunk(rid, finish="tool_calls")))
        await conn.chunk(event(usage_chunk(rid, *usage)))
        await conn.chunk(b"data: [DONE]\n\n")
        await conn.end()

    return handle


def error(status: int, message: str = "error", *, headers: dict[str, str] | None = None) -> Handler:
    """A whole JSON error response in OpenAI's shape (the connection is closed after it)."""
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    body = json.dumps({"error": {"message": message, "type": kind, "code": kind}}).encode()

    async def handle(conn: Conn, _req: Request) -> None:
        hdrs = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "close",
            **(headers or {}),
        }
        await conn.head(status, hdrs)
        await conn.send(body)

    return handle


def complete(
    reply: str | tuple[str, str, dict[str, Any]], *, usage: tuple[int, int] | None = None
) -> Handler:
    """A whole ``chat.completion`` (no streaming): the text ``reply``, or a tool call
    ``(id, name, arguments)``, for clients that send ``"stream": false``."""

    async def handle(conn: Conn, req: Request) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(reply, tuple):
            call_id, name, arguments = reply
            function = {"name": name, "arguments": json.dumps(arguments)}
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
            finish, completion = "tool_calls", 10
        else:
            message["content"] = reply
            finish, completion = "stop", len(reply.split())
        prompt, completion = usage or (_prompt_tokens(req), completion)
        body = json.dumps(
            {
                "id": req.response_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        await conn.head(200, headers)
        await conn.send(body)
        conn.keep_alive = True

    return handle


def echo_reply(req: Request, prefix: str = ECHO_PREFIX) -> str | tuple[str, str, dict[str, Any]]:
    """What the default handler answers: the reply text, or a tool call ``(id, name, args)``."""
    messages = req.messages
    last = messages[-1] if messages else {}
    content = str(last.get("content") or "")
    if last.get("role") == "user" and content.startswith("tool:") and req.json().get("tools"):
        name, _, raw = content[5:].partition(" ")
        arguments = json.loads(raw) if raw.strip() else {}
        return (f"call_{req.index:04d}", name, arguments)
    return prefix + content


def echo(*, delay: float = 0.0, first_delay: float = 0.0, prefix: str = ECHO_PREFIX) -> Handler:
    """The default handler: echo the last message word by word (see the module docstring)."""

    async def handle(conn: Conn, req: Request) -> None:
        reply = echo_reply(req, prefix)
        if req.json().get("stream") is not True:  # a client that asked for one JSON answer
            await complete(reply)(conn, req)
            return
        if isinstance(reply, tuple):
            await stream_tool_calls([reply])(conn, req)
            return
        words = reply.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        await stream_text(pieces, delay=delay, first_delay=first_delay)(conn, req)

    return handle


# -- the server -----------------------------------------------------------------------------


class OpenAIServer:
    """The server: ``await start()``, point a client at :attr:`base_url`, ``await stop()``.

    Also an async context manager. Handlers given to :meth:`script` answer the next
    requests in order; after them :attr:`default` answers.
    """

    def __init__(self, default: Handler | None = None) -> None:
        self.default: Handler = default or echo()
        self.requests: list[Request] = []
        self._script: list[Handler] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be set to."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *handlers: Handler) -> None:
        """Answer the next requests with ``handlers``, one each, then :attr:`default` again."""
        self._script.extend(handlers)

    async def start(self, port: int = 0) -> OpenAIServer:
        """Listen on 127.0.0.1 (``port`` 0: any free port, see :attr:`port`)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """End every connection and stop listening."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> OpenAIServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Conn(reader, writer)
        try:
            conn.keep_alive = True
            while conn.keep_alive:
                conn.keep_alive = False
                req = await self._read_request(reader)
                handler = self._script.pop(0) if self._script else self.default
                await handler(conn, req)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # stop() ends stalled handlers
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        req = Request(len(self.requests) + 1, method, path, headers, body)
        self.requests.append(req)
        return req


# -- command line ---------------------------------------------------------------------------


async def _run(port: int, delay: float, first_delay: float) -> None:
    server = await OpenAIServer(echo(delay=delay, first_delay=first_delay)).start(port)
    print(f"PORT {server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the echo behaviour until SIGTERM/SIGINT; print ``PORT n`` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between two chunks")
    parser.add_argument(
        "--first-delay", type=float, default=0.0, help="seconds before the first chunk"
    )
    args = parser.parse_args(argv)
    asyncio.run(_run(args.port, args.delay, args.first_delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
