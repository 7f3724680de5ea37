"""The provider over real HTTP against the scripted server on 127.0.0.1 (no mocks of httpx)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from threadline.errors import (
    AuthenticationError,
    ModelNotFoundError,
    ProviderError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamError,
)
from threadline.models import MAX_JSON_DEPTH, Message, ToolCall
from threadline.runtime.providers import ChatRequest, StreamEnd, ToolSpec, Usage
from threadline_openai import OpenAIProvider, RetryPolicy
from threadline_openai.sse import DEFAULT_MAX_EVENT_SIZE

KEY = "sk-test-SECRET-key-0123456789"
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05)
SID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"
TID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d5"


@pytest.fixture
async def provider(server: Any) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(
        api_key=KEY,
        base_url=server.base_url,
        model="test-model",
        retry_policy=FAST,
        read_timeout=5.0,
    )
    yield p
    await p.aclose()


def text_of(texts: list[Any]) -> str:
    return "".join(t.text for t in texts)


# -- streams that succeed -----------------------------------------------------------------


async def test_content_deltas_then_stream_end(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse(chunks.text_stream("Hel", "lo, ", "world", "!")))
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None
    assert text_of(texts) == "Hello, world!"
    assert len(texts) >= 2  # pieces arrive as they come, not all at the end
    assert end == StreamEnd(
        finish_reason="stop",
        tool_calls=(),
        usage=Usage(5, 4, 9),
        response_id="chatcmpl-test",
        model="test-model",
    )
    [req] = server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["accept"] == "text/event-stream"
    assert req.headers["content-type"] == "application/json"


async def test_crlf_line_ends_and_keep_alive_comments(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    a = json.dumps(chunks.chunk("one ")).encode()
    b = json.dumps(chunks.chunk("two", finish="stop")).encode()
    server.script(
        server.sse(
            [
                b": keep-alive\r\n\r\n",
                b"data: " + a + b"\r",  # the CR ends this write ...
                b"\n\r\n",  # ... and its LF starts the next: one line end, then the blank line
                b":ping\r\n\r\n:ping\r\n\r\n",
                b"data: " + b + b"\r\n\r\n",
                b"data: [DONE]\r\n\r\n",
            ]
        )
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None
    assert text_of(texts) == "one two"
    assert end is not None and end.finish_reason == "stop"


async def test_multibyte_character_split_across_tcp_writes(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    event = chunks.event(chunks.chunk("caf\u00e9 \U0001f600!"))
    cut = event.index("\U0001f600".encode()) + 2  # in the middle of the emoji's 4 bytes
    server.script(
        server.sse(
            [
                event[:cut],
                0.05,
                event[cut:],
                chunks.event(chunks.chunk(finish="stop")),
                b"data: [DONE]\n\n",
            ]
        )
    )
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None
    assert text_of(texts) == "caf\u00e9 \U0001f600!"
    assert "\ufffd" not in text_of(texts)


async def test_multi_line_data_is_one_event(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    pretty = json.dumps(chunks.chunk("line one\nline two"), indent=1)
    assert "\n" in pretty
    event = "".join(f"data: {line}\n" for line in pretty.split("\n")) + "\n"
    server.script(
        server.sse([event, chunks.event(chunks.chunk(finish="stop")), "data: [DONE]\n\n"])
    )
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None
    assert text_of(texts) == "line one\nline two"


async def test_tool_call_deltas_over_several_chunks_with_usage(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    def tc(index: int, **fields: Any) -> Any:
        return chunks.event(chunks.chunk(tool_calls=[{"index": index, **fields}]))

    server.script(
        server.sse(
            [
                chunks.event(chunks.chunk(role="assistant", content=None)),
                tc(
                    0,
                    id="call_abc",
                    type="function",
                    function={"name": "get_time", "arguments": ""},
                ),
                tc(0, function={"arguments": '{"tz": "Eu'}),
                tc(
                    1, id="call_def", type="function", function={"name": "add", "arguments": '{"a"'}
                ),
                tc(0, function={"arguments": 'rope/Paris"}'}),
                tc(1, function={"arguments": ': 1, "b": 2}'}),
                chunks.event(chunks.chunk(finish="tool_calls")),
                chunks.event(chunks.usage(31, 12)),
                b"data: [DONE]\n\n",
            ]
        )
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None
    assert texts == []
    assert end == StreamEnd(
        finish_reason="tool_calls",
        tool_calls=(
            ToolCall(id="call_abc", name="get_time", arguments={"tz": "Europe/Paris"}),
            ToolCall(id="call_def", name="add", arguments={"a": 1, "b": 2}),
        ),
        usage=Usage(31, 12, 43),
        response_id="chatcmpl-test",
        model="test-model",
    )


async def test_invalid_tool_arguments_raise_stream_error(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.sse(
            [
                chunks.event(
                    chunks.chunk(
                        tool_calls=[
                            {
                                "index": 0,
                                "id": "c",
                                "function": {"name": "f", "arguments": '{"x": '},
                            }
                        ]
                    )
                ),
                chunks.event(chunks.chunk(finish="tool_calls")),
                b"data: [DONE]\n\n",
            ]
        )
    )
    _texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert isinstance(error, StreamError) and "invalid JSON" in str(error)
    assert end is None


async def test_tool_arguments_nested_past_the_limit_raise_stream_error(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    """Valid JSON arguments deeper than MAX_JSON_DEPTH are malformed model output: a
    StreamError, as the echo provider gives, not the ValidationError of ToolCall."""
    arguments = '{"x": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}"
    call = {"index": 0, "id": "c", "function": {"name": "f", "arguments": arguments}}
    server.script(
        server.sse(
            [
                chunks.event(chunks.chunk(tool_calls=[call])),
                chunks.event(chunks.chunk(finish="tool_calls")),
                b"data: [DONE]\n\n",
            ]
        )
    )
    _texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert type(error) is StreamError and f"more than {MAX_JSON_DEPTH} levels" in str(error)
    assert end is None


async def test_clean_end_with_finish_reason_but_no_done_is_accepted(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse([chunks.event(chunks.chunk("ok", finish="stop"))]))
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None and text_of(texts) == "ok"
    assert end is not None and end.finish_reason == "stop"


async def test_json_answer_from_a_server_that_ignores_stream(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(
            200,
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "model": "m2",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "whole"},
                    }
                ],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            },
        )
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None and text_of(texts) == "whole"
    assert end == StreamEnd("stop", (), Usage(2, 1, 3), "cmpl-1", "m2")


# -- the request --------------------------------------------------------------------------


async def test_request_body(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
) -> None:
    server.script(server.sse(chunks.text_stream("x")))
    call = ToolCall(id="call_1", name="lookup", arguments={"q": "caf\u00e9"})
    messages = [
        Message(session_id=SID, tenant_id=TID, role="system", content="sys"),
        Message(session_id=SID, tenant_id=TID, role="user", content="find"),
        Message(session_id=SID, tenant_id=TID, role="assistant", content="", tool_calls=[call]),
        Message(session_id=SID, tenant_id=TID, role="tool", content="found", tool_call_id="call_1"),
    ]
    tool = ToolSpec(
        name="lookup",
        description="search",
        parameters={"type": "object", "properties": {"q": {"type": "string"}}},
    )
    request = ChatRequest(
        model="",
        messages=messages,
        tools=[tool],
        temperature=0.5,
        max_tokens=64,
        response_format={"type": "text"},
        extra={"top_p": 0.9},
    )
    _texts, _end, error = await collect_stream(provider.stream(request))
    assert error is None
    body = server.requests[0].json()
    assert body["model"] == "test-model"  # the provider's default: the request named none
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "find"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "caf\u00e9"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "search",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.5, 64, 0.9)
    assert body["response_format"] == {"type": "text"}


async def test_no_authorization_header_without_a_key(
    server: Any,
    chunks: Any,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse(chunks.text_stream("x")))
    async with OpenAIProvider(base_url=server.base_url) as local:
        _t, _e, error = await collect_stream(local.stream(request_factory()))
    assert error is None
    assert "authorization" not in server.requests[0].headers


# -- errors inside the stream -------------------------------------------------------------


async def test_error_object_mid_stream(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.sse(
            [
                chunks.event(chunks.chunk("partial ")),
                chunks.event(chunks.chunk("text")),
                chunks.event(
                    {"error": {"message": "The server had an error", "type": "server_error"}}
                ),
                b"data: [DONE]\n\n",
            ]
        )
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "partial text"  # yielded before the error
    assert type(error) is StreamError
    assert "The server had an error" in str(error) and error.code == "server_error"
    assert end is None


async def test_rate_limit_error_object_in_the_same_read_as_text(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.sse(
            [
                chunks.event(chunks.chunk("kept"))
                + b"event: error\n"
                + b'data: {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}\n\n'
            ]
        )
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "kept"
    assert isinstance(error, RateLimitError) and "slow down" in str(error)
    assert end is None


async def test_malformed_json_event_is_a_stream_error(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse([chunks.event(chunks.chunk("a")), b"data: {not json\n\n"]))
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "a"
    assert isinstance(error, StreamError) and "malformed JSON" in str(error)


async def test_a_line_past_the_size_cap_is_a_stream_error_after_the_text(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    huge = b"data: " + b"x" * DEFAULT_MAX_EVENT_SIZE  # no line end: never a whole event
    server.script(server.sse([chunks.event(chunks.chunk("kept")), huge, b"\n\n"]))
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "kept" and end is None
    assert isinstance(error, StreamError) and error.code == "malformed_stream"
    assert "longer than" in str(error)


# -- broken streams -----------------------------------------------------------------------


async def test_dropped_connection_without_done(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.sse(
            [chunks.event(chunks.chunk("Hel")), chunks.event(chunks.chunk("lo"))],
            end=False,
            drop=True,
        )
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "Hello"
    assert isinstance(error, StreamError) and "before [DONE]" in str(error)
    assert end is None
    assert len(server.requests) == 1  # never retried mid-stream


async def test_close_delimited_body_ending_early_is_a_stream_error(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse([chunks.event(chunks.chunk("cut")), b'data: {"choi'], chunked=False))
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "cut"
    assert isinstance(error, StreamError) and "truncated" in str(error)
    assert end is None


async def test_stream_ending_without_done_or_finish_reason(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse([chunks.event(chunks.chunk("half"))]))
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert text_of(texts) == "half"
    assert isinstance(error, StreamError) and "before [DONE]" in str(error)


async def test_stall_mid_stream_is_a_timeout_after_the_text(
    server: Any,
    chunks: Any,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse([chunks.event(chunks.chunk("so far")), 30.0]))
    async with OpenAIProvider(base_url=server.base_url, read_timeout=0.3) as p:
        started = time.monotonic()
        texts, _end, error = await collect_stream(p.stream(request_factory()))
    assert time.monotonic() - started < 3
    assert text_of(texts) == "so far"
    assert isinstance(error, ProviderTimeoutError)


# -- HTTP errors and retries --------------------------------------------------------------


async def test_429_with_retry_after_then_success(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(
            429,
            {"error": {"message": "slow", "type": "rate_limit_error"}},
            headers={"Retry-After": "1"},
        ),
        server.sse(chunks.text_stream("after wait")),
    )
    started = time.monotonic()
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    elapsed = time.monotonic() - started
    assert error is None and text_of(texts) == "after wait"
    assert len(server.requests) == 2
    assert elapsed >= 0.9  # the server's Retry-After, not the policy's 10 ms backoff
    assert server.requests[0].body == server.requests[1].body


async def test_429_every_time_raises_rate_limit_error_after_the_retries(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(429, {"error": {"message": "quota"}}, headers={"retry-after-ms": "20"})
    )
    _texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert isinstance(error, RateLimitError)
    assert error.retry_after == pytest.approx(0.02)
    assert len(server.requests) == 3  # the first try and max_retries=2


async def test_retry_after_beyond_the_cap_is_not_slept_through(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(429, {"error": {"message": "later"}}, headers={"Retry-After": "3600"})
    )
    started = time.monotonic()
    _texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert time.monotonic() - started < 2
    assert isinstance(error, RateLimitError) and error.retry_after == 3600
    assert len(server.requests) == 1


async def test_500_twice_then_success(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(500, {"error": {"message": "boom"}}),
        server.respond(502, b"<html>bad gateway</html>", content_type="text/html"),
        server.sse(chunks.text_stream("third time")),
    )
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None and text_of(texts) == "third time"
    assert len(server.requests) == 3


async def test_5xx_every_time_raises_server_error(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.respond(503, {"error": {"message": "overloaded"}}))
    _texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert isinstance(error, ProviderServerError) and error.status_code == 503
    assert "overloaded" in str(error)
    assert len(server.requests) == 3


async def test_each_retry_is_logged_with_its_wait_and_never_the_key(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.script(
        server.respond(503, {"error": {"message": f"busy, key {KEY}"}}),
        server.respond(429, {"error": {"message": "slow"}}, headers={"retry-after-ms": "30"}),
        server.sse(chunks.text_stream("ok")),
    )
    with caplog.at_level(logging.INFO, logger="threadline_openai"):
        texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None and text_of(texts) == "ok"
    lines = [r.getMessage() for r in caplog.records if r.name == "threadline_openai"]
    assert len(lines) == 2
    assert "status 503; retry 1 of 2 in" in lines[0]
    assert lines[1].endswith("status 429; retry 2 of 2 in 0.03 s")
    assert all(KEY not in line for line in lines)


async def test_max_retries_zero_means_one_request(
    server: Any,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.respond(500, {"error": {"message": "boom"}}))
    async with OpenAIProvider(base_url=server.base_url, max_retries=0) as p:
        _t, _e, error = await collect_stream(p.stream(request_factory()))
    assert isinstance(error, ProviderServerError)
    assert len(server.requests) == 1


async def test_401_is_authentication_error_without_the_key(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {KEY}. Header was Bearer {KEY}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    _texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert isinstance(error, AuthenticationError)
    assert error.status_code == 401 and error.code == "invalid_api_key"
    assert "Incorrect API key provided" in str(error)
    for text in (str(error), repr(error), repr(error.args), repr(provider)):
        assert KEY not in text
        assert "SECRET" not in text
    assert len(server.requests) == 1  # not retried


async def test_404_model_not_found(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(
            404,
            {
                "error": {
                    "message": "The model `gpt-nope` does not exist",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            },
        )
    )
    _texts, _end, error = await collect_stream(provider.stream(request_factory(model="gpt-nope")))
    assert isinstance(error, ModelNotFoundError)
    assert "gpt-nope" in str(error) and error.code == "model_not_found"
    assert len(server.requests) == 1


async def test_other_4xx_is_a_provider_error(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(400, {"error": {"message": "temperature too high", "code": "invalid_value"}})
    )
    _texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert type(error) is ProviderError
    assert error.status_code == 400 and "temperature too high" in str(error)
    assert len(server.requests) == 1


async def test_stalled_server_read_timeout(
    server: Any,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.stall())
    async with OpenAIProvider(base_url=server.base_url, read_timeout=0.3) as p:
        started = time.monotonic()
        _texts, _end, error = await collect_stream(p.stream(request_factory()))
    assert time.monotonic() - started < 2
    assert isinstance(error, ProviderTimeoutError) and "read_timeout" in str(error)
    assert len(server.requests) == 1  # a silent server is not asked again


async def test_wrong_content_type(
    server: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.respond(200, b"<html><body>Welcome to nginx</body></html>", content_type="text/html")
    )
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert texts == [] and end is None
    assert isinstance(error, StreamError)
    assert "text/html" in str(error) and "text/event-stream" in str(error)
    assert "Welcome to nginx" in str(error)


async def test_connection_dropped_before_an_answer_is_retried(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.hang_up(), server.sse(chunks.text_stream("ok")))
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None and text_of(texts) == "ok"
    assert len(server.requests) == 2


async def test_connection_refused(
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OpenAIProvider(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, retry_policy=FAST
    ) as p:
        _texts, _end, error = await collect_stream(p.stream(request_factory()))
    assert type(error) is ProviderError and error.code == "connection_error"
    assert KEY not in str(error)


# -- the provider's life ------------------------------------------------------------------


async def test_stopping_early_closes_the_response_and_the_provider_still_works(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(
        server.sse([chunks.event(chunks.chunk("first")), 5.0, b"data: [DONE]\n\n"]),
        server.sse(chunks.text_stream("second")),
    )
    stream = provider.stream(request_factory())
    started = time.monotonic()
    async for event in stream:
        assert event.text == "first"  # type: ignore[union-attr]
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2
    texts, _end, error = await collect_stream(provider.stream(request_factory()))
    assert error is None and text_of(texts) == "second"


async def test_concurrent_streams_share_one_provider(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse(chunks.text_stream("a", "b", "c")))
    results = await asyncio.gather(
        *(collect_stream(provider.stream(request_factory())) for _ in range(8))
    )
    assert [(text_of(t), e) for t, _end, e in results] == [("abc", None)] * 8


async def test_a_given_http_client_is_used_and_left_open(
    server: Any,
    chunks: Any,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse(chunks.text_stream("x")))
    async with httpx.AsyncClient(headers={"X-Test": "yes"}) as client:
        p = OpenAIProvider(base_url=server.base_url, http_client=client, headers={"X-Extra": "1"})
        _t, _e, error = await collect_stream(p.stream(request_factory()))
        await p.aclose()
        assert not client.is_closed
    assert error is None
    assert server.requests[0].headers["x-test"] == "yes"
    assert server.requests[0].headers["x-extra"] == "1"


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_provider_across_two_event_loops(
    server_class: Any, chunks: Any, request_factory: Callable[..., ChatRequest]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", model="m")

    async def once(word: str) -> str:
        srv = server_class()
        await srv.start(port)
        srv.script(srv.sse(chunks.text_stream(word), keep_alive=True))
        try:
            texts = [
                e.text
                async for e in provider.stream(request_factory())
                if not isinstance(e, StreamEnd)
            ]
        finally:
            await srv.stop()
        return "".join(texts)

    assert asyncio.run(once("first")) == "first"
    assert asyncio.run(once("second")) == "second"  # a new loop: the old pool is not reused
    asyncio.run(provider.aclose())
    gc.collect()  # the first loop's dropped connections are reported here, not in a later test


async def test_satisfies_the_provider_protocol(server: Any) -> None:
    from threadline.runtime.providers import Provider

    async with OpenAIProvider(base_url=server.base_url) as p:
        assert isinstance(p, Provider)


async def test_base_url_with_a_query_string(
    server: Any,
    chunks: Any,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse(chunks.text_stream("q")))
    async with OpenAIProvider(base_url=server.base_url + "?api-version=2024-06-01") as p:
        _t, _e, error = await collect_stream(p.stream(request_factory()))
    assert error is None
    assert server.requests[0].path == "/v1/chat/completions?api-version=2024-06-01"


async def test_connections_are_reused_between_requests(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse(chunks.text_stream("k"), keep_alive=True))
    for _ in range(3):
        texts, _end, error = await collect_stream(provider.stream(request_factory()))
        assert error is None and text_of(texts) == "k"
    assert len(server.requests) == 3
    assert len(server.connections) == 1


async def test_a_body_left_open_after_done_does_not_hold_the_reply(
    server: Any,
    chunks: Any,
    provider: OpenAIProvider,
    collect_stream: Any,
    request_factory: Callable[..., ChatRequest],
) -> None:
    server.script(server.sse([*chunks.text_stream("done"), 10.0]))
    started = time.monotonic()
    texts, end, error = await collect_stream(provider.stream(request_factory()))
    assert time.monotonic() - started < 2.5
    assert error is None and text_of(texts) == "done"
    assert end is not None and end.finish_reason == "stop"
