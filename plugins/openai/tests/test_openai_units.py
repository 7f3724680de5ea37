"""Unit tests of the parts that need no server: retry policy, error mapping, payload, chunks,
configuration and plugin registration."""

from __future__ import annotations

import importlib.metadata
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from threadline.errors import (
    AuthenticationError,
    ConfigurationError,
    ModelNotFoundError,
    ProviderError,
    ProviderServerError,
    RateLimitError,
    StreamError,
    ValidationError,
)
from threadline.models import MAX_JSON_DEPTH, Message, ToolCall
from threadline.runtime.providers import ChatRequest, ToolSpec, Usage
from threadline_openai import OpenAIProvider, plugin
from threadline_openai.chunks import ChunkAccumulator
from threadline_openai.config import display_url, resolve_api_key, resolve_base_url
from threadline_openai.errors import (
    Scrubber,
    error_for_status,
    error_from_stream,
    parse_error_body,
)
from threadline_openai.payload import build_payload
from threadline_openai.retry import Retryable, RetryPolicy, parse_retry_after

SID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"
TID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d5"

# -- retry --------------------------------------------------------------------------------


def test_retry_after_seconds_ms_and_http_date() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after": "-4"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(7.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=5.0, jitter=0.25)
    rng = random.Random(7)
    for attempt, base in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        for _ in range(50):
            delay = policy.backoff(attempt, rng)
            assert 0.75 * base <= delay <= base
    # jitter really varies the delay
    assert len({round(policy.backoff(0, rng), 6) for _ in range(20)}) > 1
    assert RetryPolicy(jitter=0).backoff(1) == 1.0


async def test_retrying_stops_after_max_retries_and_honours_retry_after_up_to_the_cap() -> None:
    slept: list[float] = []
    calls: list[float | None] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def fail(retry_after: float | None) -> None:
        calls.append(retry_after)
        raise Retryable(RateLimitError("slow"), retry_after=retry_after, why="status 429")

    async def run(policy: RetryPolicy, retry_after: float | None) -> list[float]:
        slept.clear()
        calls.clear()
        with pytest.raises(Retryable):
            await policy.retrying(sleep=sleep)(fail, retry_after)
        return list(slept)

    policy = RetryPolicy(max_retries=2, max_retry_after=10, initial_delay=1.0, jitter=0)
    assert await run(policy, 3.0) == [3.0, 3.0] and len(calls) == 3  # the server's wait
    assert await run(policy, None) == [1.0, 2.0]  # else the policy's backoff
    assert await run(policy, 11.0) == [] and len(calls) == 1  # past the cap: give up at once
    assert await run(RetryPolicy(max_retries=0), 1.0) == [] and len(calls) == 1


async def test_retrying_passes_other_errors_through_and_returns_a_success() -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Retryable(ProviderError("refused"), why="ConnectError")
        return "ok"

    async def no_sleep(_seconds: float) -> None:
        return None

    policy = RetryPolicy(max_retries=3)
    assert await policy.retrying(sleep=no_sleep)(flaky) == "ok" and attempts == 2

    async def denied() -> None:
        nonlocal attempts
        attempts += 1
        raise AuthenticationError("no")

    attempts = 0
    with pytest.raises(AuthenticationError):
        await policy.retrying(sleep=no_sleep)(denied)
    assert attempts == 1


def test_retryable_statuses() -> None:
    policy = RetryPolicy()
    assert [
        s
        for s in (400, 401, 404, 408, 409, 422, 429, 500, 502, 503)
        if policy.is_retryable_status(s)
    ] == [408, 409, 429, 500, 502, 503]
    assert policy.is_retryable_status(400, {"x-should-retry": "true"})
    assert not policy.is_retryable_status(503, {"x-should-retry": "false"})


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="initial_delay"):
        RetryPolicy(initial_delay=float("nan"))


# -- errors -------------------------------------------------------------------------------


def test_parse_error_bodies_of_several_servers() -> None:
    openai = parse_error_body(
        b'{"error": {"message": "The model `x` does not exist", "type": '
        b'"invalid_request_error", "code": "model_not_found"}}'
    )
    assert (openai.message, openai.type, openai.code) == (
        "The model `x` does not exist",
        "invalid_request_error",
        "model_not_found",
    )
    vllm = parse_error_body(b'{"object": "error", "message": "nope", "code": 404}')
    assert (vllm.message, vllm.status, vllm.code) == ("nope", 404, None)
    plain = parse_error_body(b'{"error": "model not loaded"}')
    assert plain.message == "model not loaded"
    html = parse_error_body(b"<html><body><h1>Bad Gateway</h1></body></html>", "text/html")
    assert html.message is not None and "Bad Gateway" in html.message
    assert "<h1>" not in html.message
    assert parse_error_body(b"").message is None


def test_status_mapping() -> None:
    scrub = Scrubber()
    info = parse_error_body(b'{"error": {"message": "m"}}')

    def err(status: int, **kw: Any) -> ProviderError:
        return error_for_status(status, info, context="POST x", scrub=scrub, **kw)

    assert type(err(401)) is AuthenticationError
    assert type(err(403)) is AuthenticationError
    assert type(err(404)) is ModelNotFoundError
    rate = err(429, retry_after=2.0)
    assert type(rate) is RateLimitError and rate.retry_after == 2.0
    assert type(err(500)) is ProviderServerError
    assert type(err(503)) is ProviderServerError
    bad = err(400)
    assert type(bad) is ProviderError and bad.status_code == 400 and "m" in str(bad)
    wrong_path = error_for_status(
        404, parse_error_body(b"404 page not found"), context="x", scrub=scrub
    )
    assert isinstance(wrong_path, ModelNotFoundError)
    assert "page not found" in str(wrong_path) and "base_url" in str(wrong_path)
    coded = parse_error_body(b'{"error": {"message": "m", "code": "model_not_found"}}')
    assert isinstance(error_for_status(400, coded, context="x", scrub=scrub), ModelNotFoundError)


def test_stream_error_objects_map_to_typed_errors() -> None:
    scrub = Scrubber()
    assert (
        type(error_from_stream({"message": "slow", "type": "rate_limit_exceeded"}, scrub=scrub))
        is RateLimitError
    )
    assert type(error_from_stream({"message": "x", "code": 429}, scrub=scrub)) is RateLimitError
    assert (
        type(error_from_stream({"message": "x", "code": "invalid_api_key"}, scrub=scrub))
        is AuthenticationError
    )
    assert (
        type(error_from_stream({"message": "x", "code": "model_not_found"}, scrub=scrub))
        is ModelNotFoundError
    )
    other = error_from_stream({"message": "overloaded", "type": "server_error"}, scrub=scrub)
    assert type(other) is StreamError and other.code == "server_error"
    assert "overloaded" in str(other)
    assert type(error_from_stream("just text", scrub=scrub)) is StreamError


def test_scrubber_removes_keys_bearer_and_sk_tokens() -> None:
    scrub = Scrubber(["my-secret-key-123", None, "ab"])
    text = scrub(
        "key my-secret-key-123 header Bearer abc.def and Incorrect API key provided: "
        "sk-proj-abc*****************wxyz."
    )
    assert "my-secret-key-123" not in text
    assert "abc.def" not in text
    assert "wxyz" not in text
    assert "ab" in scrub("about")  # keys shorter than 4 characters are not scrubbed
    assert "my-secret" not in repr(scrub)


# -- payload ------------------------------------------------------------------------------


def test_payload_converts_messages_tools_and_settings() -> None:
    call = ToolCall(id="call_1", name="get_time", arguments={"tz": "Europe/Paris", "n": "é"})
    messages = [
        Message(session_id=SID, tenant_id=TID, role="system", content="be brief"),
        Message(session_id=SID, tenant_id=TID, role="user", content="time?", name="ann"),
        Message(session_id=SID, tenant_id=TID, role="assistant", content="", tool_calls=[call]),
        Message(
            session_id=SID,
            tenant_id=TID,
            role="tool",
            content="12:00",
            tool_call_id="call_1",
            name="get_time",
        ),
        Message(session_id=SID, tenant_id=TID, role="assistant", content="It is noon."),
    ]
    tool = ToolSpec(
        name="get_time",
        description="the time",
        parameters={"type": "object", "properties": {"tz": {"type": "string"}}},
    )
    request = ChatRequest(
        model="m",
        messages=messages,
        tools=[tool],
        temperature=0.2,
        max_tokens=50,
        response_format={"type": "json_object"},
        extra={"seed": 3, "stream_options": {"x": 1}},
    )
    body = build_payload(request, "m")
    assert body["model"] == "m"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "x": 1}
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "time?", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_time",
                        "arguments": '{"tz": "Europe/Paris", "n": "é"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "assistant", "content": "It is noon."},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "the time",
                "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
            },
        }
    ]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 50, 3)
    assert body["response_format"] == {"type": "json_object"}


def test_payload_omits_unset_settings_and_refuses_to_stop_streaming() -> None:
    msg = Message(session_id=SID, tenant_id=TID, role="user", content="x")
    body = build_payload(ChatRequest(model="m", messages=[msg]), "m")
    assert set(body) == {"model", "messages", "stream", "stream_options"}
    with pytest.raises(ValidationError, match="stream"):
        build_payload(ChatRequest(model="m", messages=[msg], extra={"stream": False}), "m")


# -- chunks -------------------------------------------------------------------------------


def _tc(index: int | None = None, **fields: Any) -> dict[str, Any]:
    delta: dict[str, Any] = {
        "tool_calls": [{**({} if index is None else {"index": index}), **fields}]
    }
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def test_tool_call_deltas_merge_by_index() -> None:
    acc = ChunkAccumulator("m")
    acc.add(_tc(0, id="call_a", type="function", function={"name": "f", "arguments": ""}))
    acc.add(_tc(1, id="call_b", type="function", function={"name": "g", "arguments": '{"y"'}))
    acc.add(_tc(0, function={"arguments": '{"x": '}))
    acc.add(_tc(0, function={"arguments": "1}"}))
    acc.add(_tc(1, function={"arguments": ": [1, 2]}"}))
    acc.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    acc.add({"id": "r1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    end = acc.finish()
    assert end.tool_calls == (
        ToolCall(id="call_a", name="f", arguments={"x": 1}),
        ToolCall(id="call_b", name="g", arguments={"y": [1, 2]}),
    )
    assert end.finish_reason == "tool_calls"
    assert end.usage == Usage(3, 4, 7)
    assert end.model == "m"  # no model in the chunks: the request's


def test_tool_calls_without_index_and_empty_arguments() -> None:
    acc = ChunkAccumulator()
    acc.add(_tc(id="c1", function={"name": "f", "arguments": '{"a":'}))
    acc.add(_tc(function={"arguments": " 1}"}))
    acc.add(_tc(id="c2", function={"name": "g", "arguments": ""}))
    calls = acc.tool_calls()
    assert calls == (
        ToolCall(id="c1", name="f", arguments={"a": 1}),
        ToolCall(id="c2", name="g", arguments={}),
    )


def _nested_arguments(depth: int) -> str:
    """A JSON object ``depth`` containers deep: ``{"x": [[]]}`` is 3."""
    return '{"x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('{"x": 1', "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ("nul", "invalid JSON"),
        # valid JSON the models refuse: deeper than MAX_JSON_DEPTH (malformed model output)
        (_nested_arguments(MAX_JSON_DEPTH + 1), f"nested more than {MAX_JSON_DEPTH}"),
        (_nested_arguments(10_000), "nested"),
    ],
)
def test_bad_tool_arguments_are_stream_errors(arguments: str, message: str) -> None:
    acc = ChunkAccumulator()
    acc.add(_tc(0, id="c", function={"name": "f", "arguments": arguments}))
    with pytest.raises(StreamError, match=message):
        acc.finish()


def test_tool_arguments_at_the_depth_limit_are_accepted() -> None:
    acc = ChunkAccumulator()
    acc.add(_tc(0, id="c", function={"name": "f", "arguments": _nested_arguments(MAX_JSON_DEPTH)}))
    [call] = acc.finish().tool_calls
    assert call.name == "f" and json.loads(_nested_arguments(MAX_JSON_DEPTH)) == call.arguments


def test_chunks_ignore_other_choices_and_odd_values() -> None:
    acc = ChunkAccumulator()
    assert acc.add({"choices": [{"index": 1, "delta": {"content": "other"}}]}) == ""
    assert acc.add({"choices": "junk"}) == ""
    assert acc.add({"choices": [{"index": 0, "delta": {"content": None}}]}) == ""
    assert (
        acc.add(
            {
                "choices": [
                    {"index": 0, "delta": {"content": "a"}},
                    {"index": 0, "delta": {"content": "b"}},
                ]
            }
        )
        == "ab"
    )
    assert acc.add({"usage": {"prompt_tokens": True}}) == ""
    assert acc.usage is None


# -- configuration ------------------------------------------------------------------------


def test_api_key_sources() -> None:
    env = {"OPENAI_API_KEY": "sk-env", "MY_KEY": "sk-mine"}
    assert resolve_api_key("sk-arg", None, env).reveal() == "sk-arg"  # type: ignore[union-attr]
    assert resolve_api_key(None, "env:MY_KEY", env).reveal() == "sk-mine"  # type: ignore[union-attr]
    assert resolve_api_key(None, None, env).reveal() == "sk-env"  # type: ignore[union-attr]
    assert resolve_api_key(None, "sk-literal", env).reveal() == "sk-literal"  # type: ignore[union-attr]
    assert resolve_api_key(None, None, {}) is None
    assert resolve_api_key(None, None, {"OPENAI_API_KEY": "  "}) is None
    with pytest.raises(ConfigurationError, match="not both"):
        resolve_api_key("a", "env:B", env)


def test_missing_env_reference_names_the_variable_not_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TL_MISSING_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="TL_MISSING_KEY") as info:
        OpenAIProvider(api_key_ref="env:TL_MISSING_KEY", base_url="http://127.0.0.1:1/v1")
    assert "not set" in str(info.value)
    monkeypatch.setenv("TL_SET_KEY", "sk-from-env-value-1234")
    provider = OpenAIProvider(api_key_ref="env:TL_SET_KEY")
    assert "sk-from-env-value-1234" not in repr(provider)
    assert "sk-from-env-value-1234" not in repr(vars(provider))


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1/")
    monkeypatch.setenv("OPENAI_MODEL", "llama3.2")
    provider = OpenAIProvider()  # no key: fine with a chosen base URL
    assert provider.base_url == "http://localhost:11434/v1"
    assert provider.default_model == "llama3.2"
    assert provider.name == "openai"


def test_no_key_for_the_default_openai_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIProvider()


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        OpenAIProvider(base_url="localhost:8000")
    with pytest.raises(ConfigurationError, match="read_timeout"):
        OpenAIProvider(base_url="http://h/v1", read_timeout=0)
    with pytest.raises(ConfigurationError, match="max_retries"):
        OpenAIProvider(base_url="http://h/v1", max_retries=-1)


def test_repr_and_urls_hide_secrets() -> None:
    provider = OpenAIProvider(
        api_key="sk-super-secret-999", base_url="https://user:pw1234@h.example/v1?api-key=qk-5678"
    )
    text = repr(provider)
    assert "sk-super-secret-999" not in text
    assert "pw1234" not in text and "qk-5678" not in text
    assert "api_key='***'" in text
    azure = OpenAIProvider(base_url="https://h/v1", headers={"api-key": "az-0123456789"})
    assert azure._scrub("echo az-0123456789") == "echo ***"
    assert display_url("https://u:p@h/v1?key=s") == "https://h/v1"
    assert resolve_base_url("http://x:1/v1/", {}) == ("http://x:1/v1", True)
    assert resolve_base_url(None, {}) == ("https://api.openai.com/v1", False)


# -- plugin -------------------------------------------------------------------------------


def test_hook_registers_the_openai_provider() -> None:
    registered: dict[str, tuple[Callable[..., Any], str]] = {}

    def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
        registered[name] = (factory, description)

    plugin.threadline_register_providers(register)
    factory, description = registered["openai"]
    provider = factory(base_url="http://127.0.0.1:9/v1", model="m")
    assert isinstance(provider, OpenAIProvider)
    assert provider.default_model == "m"
    assert description


def test_entry_point_is_declared() -> None:
    try:
        dist = importlib.metadata.distribution("threadline-openai")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout only
        pytest.skip("threadline-openai is not installed")
    eps = [ep for ep in dist.entry_points if ep.group == "threadline"]
    assert [(ep.name, ep.value) for ep in eps] == [("openai", "threadline_openai.plugin")]
    assert eps[0].load() is plugin
