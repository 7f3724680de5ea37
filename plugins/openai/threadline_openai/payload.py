"""A threadline :class:`~threadline.runtime.providers.ChatRequest` as a chat completions body.

Messages keep their roles; an assistant message's tool calls become OpenAI
``tool_calls`` with JSON-string arguments, and a tool result becomes a ``tool`` message
with its ``tool_call_id``. The body always asks for a stream with usage included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from threadline.errors import ValidationError
from threadline.models import Message, ToolCall
from threadline.runtime.providers import ChatRequest, ToolSpec

__all__ = ["build_payload", "message_to_openai", "tool_call_to_openai", "tool_to_openai"]


def tool_call_to_openai(call: ToolCall) -> dict[str, Any]:
    """An assistant tool call in OpenAI's shape: arguments as a JSON string."""
    return {
        "id": call.id,
        "type": "function",
        "function": {
            "name": call.name,
            "arguments": json.dumps(call.arguments, ensure_ascii=False),
        },
    }


def message_to_openai(message: Message) -> dict[str, Any]:
    """One threadline message as an OpenAI chat message."""
    if message.role == "tool":
        if not message.tool_call_id:
            raise ValidationError(
                f"tool message {message.id} has no tool_call_id: the model cannot match it"
            )
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        out["tool_calls"] = [tool_call_to_openai(call) for call in message.tool_calls]
        if not message.content:
            out["content"] = None  # what the API documents for a reply made only of calls
    if message.name:
        out["name"] = message.name
    return out


def tool_to_openai(tool: ToolSpec) -> dict[str, Any]:
    """A tool offered to the model, as an OpenAI ``function`` tool."""
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def build_payload(request: ChatRequest, model: str) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions`` for ``request``, streaming with usage.

    ``request.extra`` is merged last, so it can set any other parameter (``top_p``,
    ``seed``, ``max_completion_tokens``, ...); it cannot turn streaming off.
    """
    messages: Sequence[Message] = request.messages
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_to_openai(m) for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [tool_to_openai(t) for t in request.tools]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.response_format is not None:
        body["response_format"] = dict(request.response_format)
    for key, value in request.extra.items():
        if key == "stream" and value is not True:
            raise ValidationError("extra['stream'] cannot be changed: this provider streams")
        if key == "stream_options" and isinstance(value, Mapping):
            body["stream_options"] = {**body["stream_options"], **value}
        else:
            body[key] = value
    return body
