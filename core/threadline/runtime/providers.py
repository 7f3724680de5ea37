"""The model-provider contract and the built-in ``echo`` provider.

A provider turns a :class:`ChatRequest` into an async stream of events:
:class:`TextDelta` pieces of the reply, then exactly one :class:`StreamEnd` with the
tool calls, token usage and response id. Errors are raised as
:class:`~threadline.errors.ProviderError` subclasses. Providers are registered by
name through ``threadline_register_providers``; ``threadline-openai`` registers
``openai``, and the core registers ``echo`` so demos and tests run offline.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, Union, runtime_checkable

import attrs

from threadline.errors import PluginNotInstalledError, StreamError, ValidationError
from threadline.models import Message, ToolCall

__all__ = [
    "ChatRequest",
    "EchoProvider",
    "Provider",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "ToolSpec",
    "Usage",
    "default_provider_name",
    "get_provider",
    "resolve_provider",
]


@attrs.frozen
class ToolSpec:
    """A tool offered to the model: name, description and JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )


@attrs.frozen
class ChatRequest:
    """One model request: the messages to send and the sampling settings."""

    model: str
    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Usage:
    """Token counts reported by the provider."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@attrs.frozen
class TextDelta:
    """A piece of the reply's text, in order."""

    text: str


@attrs.frozen
class StreamEnd:
    """The last event of a stream: how it finished and what it cost."""

    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    response_id: str | None = None
    model: str | None = None


StreamEvent = Union[TextDelta, StreamEnd]


@runtime_checkable
class Provider(Protocol):
    """What the agent runtime needs from a model provider."""

    name: str
    default_model: str | None

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the reply to ``request``: text deltas, then one :class:`StreamEnd`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class EchoProvider:
    """Replies with the last user message, word by word (like ``llm-echo``): offline demos.

    A user message of the form ``tool:NAME {json args}`` makes it call tool NAME once;
    after the tool result it echoes the result. Malformed arguments raise
    :class:`~threadline.errors.StreamError`, as a real model's malformed call does.
    """

    name = "echo"
    default_model: str | None = "echo"

    def __init__(self, *, delay: float = 0.0, prefix: str = "Echo: ") -> None:
        self.delay = delay
        self.prefix = prefix

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        last = request.messages[-1] if request.messages else None
        prompt_tokens = sum(_approx_tokens(m.content) for m in request.messages)
        if last is not None and last.role == "user" and last.content.startswith("tool:"):
            call = _echo_tool_call(last)
            yield StreamEnd(
                finish_reason="tool_calls",
                tool_calls=(call,),
                usage=Usage(prompt_tokens, 0, prompt_tokens),
                model=request.model,
            )
            return
        if last is not None and last.role == "tool":
            reply = f"{self.prefix}{last.content}"
        else:
            reply = f"{self.prefix}{last.content if last is not None else ''}"
        words = reply.split(" ")
        for i, word in enumerate(words):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(word if i == 0 else " " + word)
        completion = _approx_tokens(reply)
        yield StreamEnd(
            finish_reason="stop",
            usage=Usage(prompt_tokens, completion, prompt_tokens + completion),
            model=request.model,
        )

    async def aclose(self) -> None:
        return None


def _echo_tool_call(message: Message) -> ToolCall:
    """The call a ``tool:NAME {json args}`` message asks for.

    :raises StreamError: no name, or arguments that are not a JSON object (as a real
        provider reports a model's malformed tool call).
    """
    name, _, raw = message.content[5:].partition(" ")
    if not name.strip():
        raise StreamError('echo: \'tool:\' needs a tool name, e.g. tool:get_time {"zone": "CET"}')
    try:
        args = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise StreamError(
            f"echo: tool {name!r} has invalid JSON arguments ({exc.msg} at position "
            f"{exc.pos}): {raw[:200]!r}"
        ) from None
    except RecursionError:
        raise StreamError(f"echo: tool {name!r} has arguments nested too deeply") from None
    if not isinstance(args, dict):
        raise StreamError(
            f"echo: tool {name!r} arguments must be a JSON object, got {type(args).__name__}"
        )
    try:
        return ToolCall(id=f"call_{message.id[-12:]}", name=name, arguments=args)
    except ValidationError as exc:
        raise StreamError(f"echo: tool {name!r}: {exc}") from None


def default_provider_name() -> str:
    """``openai`` when ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set, else ``echo``."""
    configured = os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")
    return "openai" if configured else "echo"


def resolve_provider(
    provider: Provider | str | None,
    options: Mapping[str, Any] | None = None,
    model: str | None = None,
) -> Provider:
    """A provider object as given, or built by name (default: :func:`default_provider_name`)."""
    if provider is None:
        provider = default_provider_name()
    if isinstance(provider, str):
        opts = dict(options or {})
        if model and provider != "echo":
            opts.setdefault("model", model)
        return get_provider(provider, **opts)
    return provider


def get_provider(name: str, **options: Any) -> Provider:
    """Build the provider registered as ``name`` (``openai``, ``echo``, ...)."""
    from threadline.plugins import provider_registry

    registry = provider_registry()
    entry = registry.get(name.lower())
    if entry is None:
        hint = f" (pip install threadline-{name.lower()})" if name.lower() == "openai" else ""
        raise PluginNotInstalledError(
            f"no provider named {name!r}{hint}; installed: {sorted(registry)}"
        )
    provider: Provider = entry.factory(**options)
    return provider
