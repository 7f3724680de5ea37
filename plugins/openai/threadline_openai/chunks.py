"""Assembly of ``chat.completion.chunk`` objects into text pieces and one final :class:`StreamEnd`.

Text is handed out as it comes. Tool calls arrive as deltas keyed by ``index``: the
id and name come with the first delta and the arguments are a JSON string cut in
pieces, concatenated and parsed once at the end. The usage chunk (empty ``choices``)
fills :attr:`StreamEnd.usage`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from threadline.errors import StreamError, ValidationError
from threadline.models import ToolCall
from threadline.runtime.providers import StreamEnd, Usage

__all__ = ["ChunkAccumulator", "completion_to_chunk", "parse_usage"]


@attrs.define
class _PartialCall:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: list[str] = attrs.field(factory=list)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_usage(obj: object) -> Usage | None:
    """A :class:`Usage` from an OpenAI ``usage`` object, or ``None`` when there is none."""
    if not isinstance(obj, Mapping):
        return None
    prompt = _int(obj.get("prompt_tokens"))
    completion = _int(obj.get("completion_tokens"))
    total = _int(obj.get("total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    if prompt is None and completion is None and total is None:
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def completion_to_chunk(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` as one chunk, for servers that ignore ``stream``."""
    choices = []
    for choice in obj.get("choices") or ():
        if isinstance(choice, Mapping):
            message = choice.get("message") or {}
            calls = message.get("tool_calls") if isinstance(message, Mapping) else None
            delta: dict[str, Any] = {
                "content": message.get("content") if isinstance(message, Mapping) else None
            }
            if isinstance(calls, list):
                delta["tool_calls"] = [
                    {**call, "index": i}
                    for i, call in enumerate(calls)
                    if isinstance(call, Mapping)
                ]
            choices.append(
                {
                    "index": choice.get("index", 0),
                    "delta": delta,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
    return {**obj, "choices": choices}


class ChunkAccumulator:
    """Reads the chunks of one response; :meth:`add` returns text, :meth:`finish` the end."""

    def __init__(self, model: str | None = None) -> None:
        self.response_id: str | None = None
        self.model: str | None = None
        self._fallback_model = model
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._calls: dict[int, _PartialCall] = {}
        self._high = ""  # a high surrogate ending the last piece, waiting for its pair

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Take one chunk; return the reply text it carries (possibly empty)."""
        if self.response_id is None and isinstance(chunk.get("id"), str) and chunk["id"]:
            self.response_id = chunk["id"]
        if self.model is None and isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return ""
        text = []
        for choice in choices:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue  # only the first choice is the reply (n > 1 is not supported)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                text.append(content)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, Mapping):
                        self._add_call(call)
        return self._valid("".join(text))

    def _valid(self, piece: str) -> str:
        """Join surrogate pairs (JSON ``\\ud83d\\ude00`` escapes) split across chunks; a lone
        surrogate becomes U+FFFD, so the text is always valid Unicode."""
        text, self._high = self._high + piece, ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._high = text[:-1], text[-1]
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text

    def flush(self) -> str:
        """Text held back at the end of the stream (a high surrogate with no pair: U+FFFD)."""
        held, self._high = self._high, ""
        return "\ufffd" if held else ""

    def _add_call(self, delta: Mapping[str, Any]) -> None:
        index = _int(delta.get("index"))
        call_id = delta.get("id") if isinstance(delta.get("id"), str) else None
        if index is None:  # some servers omit the index: a new id starts a new call
            last = max(self._calls, default=-1)
            known = self._calls.get(last)
            new = known is None or (call_id and known.id and call_id != known.id)
            index = last + 1 if new else last
        partial = self._calls.get(index)
        if partial is None:
            partial = self._calls[index] = _PartialCall(index)
        if call_id and partial.id is None:
            partial.id = call_id
        function = delta.get("function")
        if isinstance(function, Mapping):
            name = function.get("name")
            if isinstance(name, str) and name and partial.name is None:
                partial.name = name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                partial.arguments.append(arguments)
            elif isinstance(arguments, Mapping):  # a server that sends an object
                partial.arguments.append(json.dumps(arguments))

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls, ordered by index, their arguments parsed.

        :raises StreamError: a call has no name, arguments that are not a JSON object, or
            a call the models refuse (arguments nested past ``MAX_JSON_DEPTH``, a bad id):
            malformed model output, as every provider reports it.
        """
        calls = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise StreamError(f"tool call #{index} in the stream has no function name")
            raw = "".join(partial.arguments)
            try:
                arguments = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise StreamError(
                    f"tool call {partial.name!r} has invalid JSON arguments ({exc.msg} at "
                    f"position {exc.pos}): {raw[:200]!r}"
                ) from None
            except RecursionError:
                raise StreamError(
                    f"tool call {partial.name!r} has arguments nested too deeply"
                ) from None
            if not isinstance(arguments, dict):
                raise StreamError(
                    f"tool call {partial.name!r} arguments must be a JSON object, "
                    f"got {type(arguments).__name__}"
                )
            call_id = partial.id or f"call_{uuid.uuid4().hex[:24]}"
            try:
                calls.append(ToolCall(id=call_id, name=partial.name, arguments=arguments))
            except ValidationError as exc:  # e.g. arguments nested past MAX_JSON_DEPTH
                raise StreamError(f"tool call {partial.name!r}: {exc}") from None
        return tuple(calls)

    def finish(self) -> StreamEnd:
        """The final event: finish reason, tool calls, usage, response id and model."""
        return StreamEnd(
            finish_reason=self.finish_reason,
            tool_calls=self.tool_calls(),
            usage=self.usage,
            response_id=self.response_id,
            model=self.model or self._fallback_model,
        )
