"""The ``openai`` provider: streamed chat completions from any OpenAI-compatible server.

One ``POST {base_url}/chat/completions`` per request, with ``stream: true`` and usage
included. Failures before the body starts (connection errors, 408, 409, 429, 5xx) are
retried with backoff; once text has been handed to the caller nothing is retried, and
a stream that breaks off raises :class:`~threadline.errors.StreamError` after the text
already yielded, so the caller keeps the partial reply.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import aclosing
from importlib import metadata
from types import TracebackType
from typing import Any

import attrs
import httpx
import tenacity

from threadline.errors import ConfigurationError, ProviderError, ProviderTimeoutError, StreamError
from threadline.runtime.providers import ChatRequest, StreamEvent, TextDelta
from threadline_openai.chunks import ChunkAccumulator, completion_to_chunk
from threadline_openai.config import (
    API_KEY_ENV,
    Secret,
    display_url,
    endpoint_url,
    resolve_api_key,
    resolve_base_url,
    resolve_model,
)
from threadline_openai.errors import (
    Scrubber,
    error_for_status,
    error_from_stream,
    parse_error_body,
)
from threadline_openai.payload import build_payload
from threadline_openai.retry import Retryable, RetryPolicy, parse_retry_after
from threadline_openai.sse import EventStream, ServerSentEvent

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_READ_TIMEOUT", "OpenAIProvider"]

logger = logging.getLogger("threadline_openai")


@functools.cache
def _load_transport() -> None:
    """Import what httpx imports lazily on the first request (httpcore, anyio's asyncio
    backend, h11: 60-400 ms with a cold bytecode cache) while the provider is built, so
    the first turn's event loop is not blocked by imports while other sessions wait."""
    import anyio._backends._asyncio  # noqa: F401
    import h11  # noqa: F401
    import httpcore  # noqa: F401


class _RedactURLs(logging.Filter):
    """httpx logs each request's URL in full; a key in its query or user info must not show."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                display_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactURLs) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactURLs())

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds allowed to open a connection."""
DEFAULT_READ_TIMEOUT = 120.0
"""Seconds of silence allowed while waiting for the answer or between two reads of it."""

_MAX_ERROR_BODY = 64 * 1024
_MAX_JSON_BODY = 16 * 1024 * 1024
_DRAIN_SECONDS = 0.5  # after [DONE], how long to wait for the body's end (to reuse the connection)
_DRAIN_BYTES = 64 * 1024

try:
    _VERSION = metadata.version("threadline-openai")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"


def _timeout(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a number of seconds > 0 (or None), got {value!r}")
    return float(value)


@attrs.define
class _Batch:
    """What one event gave: text to yield, whether it was ``[DONE]``, an error."""

    text: str = ""
    done: bool = False
    error: ProviderError | None = None


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one takes 20-40 ms."""
    return httpx.create_ssl_context()


class OpenAIProvider:
    """Streams chat completions from OpenAI or any OpenAI-compatible server (Ollama, vLLM, ...).

    :param api_key: the key; default ``OPENAI_API_KEY``. A server at a chosen base URL may
        need none.
    :param api_key_ref: instead of ``api_key``, a reference ``env:NAME`` (or a stored key).
    :param base_url: e.g. ``http://localhost:11434/v1``; default ``OPENAI_BASE_URL``, else
        ``https://api.openai.com/v1``.
    :param model: the model used when a request names none; default ``OPENAI_MODEL``.
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds of silence allowed before and while the reply streams.
    :param max_retries: retries of a request that failed before its body started.
    :param retry_policy: backoff settings; ``max_retries`` overrides its own when given.
    :param http_client: an ``httpx.AsyncClient`` to use (and not close); default: own one.
    :param headers: extra HTTP headers sent with every request.
    """

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_key_ref: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._key: Secret | None = resolve_api_key(api_key, api_key_ref)
        self.base_url, chosen = resolve_base_url(base_url)
        if self._key is None and not chosen:
            raise ConfigurationError(
                f"no API key for {self.base_url}: set {API_KEY_ENV}, pass api_key= or "
                "api_key_ref='env:NAME', or give base_url= for a server that needs no key"
            )
        self.default_model: str | None = resolve_model(model)
        self.connect_timeout = _timeout(connect_timeout, "connect_timeout")
        self.read_timeout = _timeout(read_timeout, "read_timeout")
        policy = retry_policy or RetryPolicy()
        try:
            self.retry_policy = (
                policy if max_retries is None else attrs.evolve(policy, max_retries=max_retries)
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._tls = _tls_context()  # built here, not in the first request's time to token
        _load_transport()  # likewise the modules httpx imports on its first request
        self._timeout = httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.read_timeout,
            pool=self.connect_timeout,
        )
        self._url = endpoint_url(self.base_url, "chat/completions")
        self._where = f"POST {display_url(self._url)}"
        self._extra_headers = dict(headers or {})
        self._scrub = Scrubber(self._secrets())
        self._own_client = http_client is None
        self._client = http_client
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()

    def _secrets(self) -> Iterable[str]:
        if self._key is not None:
            yield self._key.reveal()
        url = httpx.URL(self.base_url)
        if url.password:
            yield url.password
        sensitive = ("key", "token", "secret", "sig", "auth", "password")
        for key, value in url.params.multi_items():
            if any(word in key.lower() for word in sensitive):
                yield value
        for name, value in self._extra_headers.items():
            if any(word in name.lower() for word in sensitive):
                yield value.split()[-1] if value.split() else value

    def __repr__(self) -> str:
        key = "None" if self._key is None else "'***'"
        return (
            f"OpenAIProvider(base_url={display_url(self.base_url)!r}, "
            f"model={self.default_model!r}, api_key={key})"
        )

    async def __aenter__(self) -> OpenAIProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client this provider created (a client passed in is left open)."""
        client, self._client = self._client, (None if self._own_client else self._client)
        if self._own_client and client is not None:
            if self._client_loop is not asyncio.get_running_loop():
                return  # its connections belong to another (likely closed) loop: drop them
            await client.aclose()

    # -- streaming --------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the reply to ``request``: :class:`TextDelta` pieces, then one :class:`StreamEnd`.

        :raises ConfigurationError: no model named by the request or the provider.
        :raises ProviderError: a subclass saying what failed; text already yielded stays valid.
        """
        model = request.model or self.default_model
        if not model:
            raise ConfigurationError(
                "no model: set ChatRequest.model, pass model= to OpenAIProvider or set OPENAI_MODEL"
            )
        body = json.dumps(build_payload(request, model), ensure_ascii=False).encode("utf-8")
        response = await self._open(body)
        try:
            async for event in self._read(response, model):
                yield event
        finally:
            await response.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
            "User-Agent": f"threadline-openai/{_VERSION}",
        }
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        headers.update(self._extra_headers)
        return headers

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._own_client and self._client is not None and self._client_loop is not loop:
            # pooled connections belong to the loop that opened them (e.g. a second
            # asyncio.run()): start afresh rather than fail on a closed loop's sockets
            self._client = None
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, verify=self._tls
            )
            self._client_loop = loop
        return self._client

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        """Say, with any key scrubbed, why a request is retried and after how long."""
        exc = state.outcome.exception() if state.outcome is not None else None
        why = exc.why if isinstance(exc, Retryable) else type(exc).__name__
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.info(
            "%s: %s; retry %d of %d in %.2f s",
            self._where,
            self._scrub(why),
            state.attempt_number,
            self.retry_policy.max_retries,
            delay,
        )

    async def _open(self, body: bytes) -> httpx.Response:
        """Send the request, retrying what failed before the body began; a 2xx response."""
        client = self._http()
        retrying = self.retry_policy.retrying(rng=self._rng, before_sleep=self._log_retry)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send(client, body)
        except Retryable as exc:
            raise exc.error from exc.__cause__
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    async def _send(self, client: httpx.AsyncClient, body: bytes) -> httpx.Response:
        """One attempt: a 2xx response, or a typed error (wrapped in :class:`Retryable` when
        the policy may retry it)."""
        http_request = client.build_request(
            "POST", self._url, content=body, headers=self._headers(), timeout=self._timeout
        )
        try:
            response = await client.send(http_request, stream=True)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            late = ProviderTimeoutError(
                self._scrub(
                    f"{self._where}: no connection within {self.connect_timeout} s "
                    f"({type(exc).__name__})"
                ),
                code="connect_timeout",
            )
            raise Retryable(late, why=type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            # the server took the request and went silent: not retried, as a retry
            # could run the whole generation a second time
            raise ProviderTimeoutError(
                self._scrub(
                    f"{self._where}: no answer within read_timeout={self.read_timeout} s "
                    f"({type(exc).__name__})"
                ),
                code="read_timeout",
            ) from exc
        except httpx.TransportError as exc:
            why = f"{type(exc).__name__}: {exc}"
            unreachable = ProviderError(
                self._scrub(f"{self._where}: cannot reach the server ({why})"),
                code="connection_error",
            )
            raise Retryable(unreachable, why=why) from exc

        status = response.status_code
        if 200 <= status < 300:
            return response
        try:
            raw = await self._read_some(response, _MAX_ERROR_BODY)
        except httpx.HTTPError:
            raw = b""
        finally:
            await response.aclose()
        info = parse_error_body(raw, response.headers.get("content-type", ""))
        retry_after = parse_retry_after(response.headers)
        error = error_for_status(
            status, info, context=self._where, scrub=self._scrub, retry_after=retry_after
        )
        if self.retry_policy.is_retryable_status(status, response.headers):
            raise Retryable(error, retry_after=retry_after, why=f"status {status}")
        raise error

    @staticmethod
    async def _read_some(response: httpx.Response, limit: int) -> bytes:
        """Up to about ``limit`` bytes of the body (error pages can be large)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(parts)

    async def _read(self, response: httpx.Response, model: str) -> AsyncIterator[StreamEvent]:
        """Turn a 2xx response into events; raise what broke the stream after the text it gave."""
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";")[0].strip().lower()
        acc = ChunkAccumulator(model)
        try:
            if mime == "application/json":
                # a server that ignored "stream": read the one JSON answer
                batch = self._whole(await self._read_some(response, _MAX_JSON_BODY), acc)
                if batch.error is not None:
                    raise batch.error
                batch.text += acc.flush()
                if batch.text:
                    yield TextDelta(batch.text)
                yield self._finish(acc)
                return
            if mime and mime != "text/event-stream":
                start = (await self._read_some(response, 512))[:200]
                raise StreamError(
                    self._scrub(
                        f"{self._where} answered {response.status_code} with {content_type!r}, "
                        "not an event stream (text/event-stream): is base_url the API root "
                        f"(often ending in /v1)? The body starts {start!r}"
                    ),
                    status_code=response.status_code,
                    code="bad_content_type",
                )
            stream = EventStream(response.aiter_bytes())
            batch = _Batch()
            async with aclosing(stream.events()) as events:
                async for event in events:
                    batch = self._event(event, acc, at_end=stream.ended)
                    if batch.text:
                        yield TextDelta(batch.text)
                    if batch.error is not None:
                        raise batch.error
                    if batch.done:
                        break
            tail = acc.flush()
            if tail:
                yield TextDelta(tail)
            if batch.done:
                await stream.drain(_DRAIN_SECONDS, _DRAIN_BYTES)
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(
                self._scrub(
                    f"{self._where}: the stream stalled for read_timeout={self.read_timeout} s "
                    "before [DONE]"
                ),
                code="read_timeout",
            ) from exc
        except httpx.TransportError as exc:
            raise StreamError(
                self._scrub(
                    f"{self._where}: the connection broke off mid-stream, before [DONE] "
                    f"({type(exc).__name__}: {exc})"
                ),
                code="stream_interrupted",
            ) from exc
        except httpx.DecodingError as exc:
            raise StreamError(
                self._scrub(f"{self._where}: the body cannot be decoded ({exc})"),
                code="malformed_stream",
            ) from exc
        if not batch.done and acc.finish_reason is None:
            raise StreamError(
                self._scrub(
                    f"{self._where}: the stream ended before [DONE] and before a finish reason"
                ),
                code="stream_interrupted",
            )
        yield self._finish(acc)

    def _finish(self, acc: ChunkAccumulator) -> StreamEvent:
        """The final event; its errors (tool-call arguments quoted) scrubbed like the others."""
        try:
            return acc.finish()
        except StreamError as exc:
            raise StreamError(
                self._scrub(str(exc)), status_code=exc.status_code, code=exc.code
            ) from None

    def _whole(self, raw: bytes, acc: ChunkAccumulator) -> _Batch:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            return _Batch(
                error=StreamError(self._scrub(f"{self._where}: invalid JSON answer {raw[:200]!r}"))
            )
        if not isinstance(obj, dict):
            return _Batch(error=StreamError(f"{self._where}: the JSON answer is not an object"))
        if obj.get("error"):
            return _Batch(error=error_from_stream(obj["error"], scrub=self._scrub))
        return _Batch(text=acc.add(completion_to_chunk(obj)), done=True)

    def _event(self, event: ServerSentEvent, acc: ChunkAccumulator, *, at_end: bool) -> _Batch:
        """Read one event: its text, whether it is ``[DONE]``, or the error it carries."""
        data = event.data.strip()
        if data == "[DONE]":
            return _Batch(done=True)
        if event.event == "error":
            try:
                obj: Any = json.loads(data)
            except (ValueError, RecursionError):
                obj = data
            if isinstance(obj, dict) and obj.get("error"):
                obj = obj["error"]
            return _Batch(error=error_from_stream(obj, scrub=self._scrub))
        if not data:
            return _Batch()
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            what = "a truncated event at the end" if at_end else "malformed JSON"
            return _Batch(
                error=StreamError(
                    self._scrub(f"{self._where}: {what} in the event stream: {data[:200]!r}"),
                    code="malformed_stream",
                )
            )
        if not isinstance(chunk, dict):
            return _Batch(
                error=StreamError(
                    self._scrub(f"{self._where}: an event is not a JSON object: {data[:200]!r}"),
                    code="malformed_stream",
                )
            )
        if chunk.get("error"):
            return _Batch(error=error_from_stream(chunk["error"], scrub=self._scrub))
        return _Batch(text=acc.add(chunk))
