"""Tools: plain Python callables offered to the model, and running the calls it makes.

A tool's name is the function's name, its description the docstring's first paragraph,
and its JSON-schema parameters come from the signature's annotations. Sync tools run in
a worker thread so they never block the event loop. :func:`run_tool` runs one call the
way both the chat agent and a graph node do: a failure becomes a result the model reads.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from threadline.errors import ValidationError
from threadline.models import ToolCall
from threadline.runtime.providers import ToolSpec

__all__ = ["Tool", "ToolOutcome", "as_tools", "run_tool"]

APPROVAL_ATTRIBUTE = "__threadline_approval__"
"""Set on a function by :func:`~threadline.runtime.approvals.requires_approval`."""

UNKNOWN_TOOL = "unknown_tool"
"""The ``error`` metadata of the result of a call to a tool the agent does not have."""

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


def _schema_for(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _schema_for(args[0]) if len(args) == 1 else {}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    base = origin or annotation
    kind = _JSON_TYPES.get(base)
    return {"type": kind} if kind else {}


@attrs.frozen
class Tool:
    """A callable the model may call, with its spec."""

    function: Callable[..., Any]
    spec: ToolSpec
    inverse: Callable[..., Any] | None = None
    """Undoes a call when a graph run rolls back past it (gets the call's arguments)."""
    approval: bool | Callable[..., Any] = False
    """Whether a call waits for a person's approval: ``True``, or ``when(**arguments)``."""

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        name: str | None = None,
        *,
        inverse: Callable[..., Any] | None = None,
        approval: bool | Callable[..., Any] | None = None,
    ) -> Tool:
        """Describe ``function`` from its name, docstring and annotations.

        ``approval`` defaults to what :func:`~threadline.runtime.approvals.requires_approval`
        set on the function (else ``False``).
        """
        if not callable(function):
            raise ValidationError(f"a tool must be callable, got {type(function).__name__}")
        signature = inspect.signature(function)
        try:
            hints = typing.get_type_hints(function)
        except Exception:
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for pname, param in signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            properties[pname] = _schema_for(hints.get(pname, Any))
            if param.default is param.empty:
                required.append(pname)
        doc = inspect.getdoc(function) or ""
        spec = ToolSpec(
            name=name or function.__name__,
            description=doc.split("\n\n")[0].strip(),
            parameters={"type": "object", "properties": properties, "required": required},
        )
        if approval is None:
            approval = getattr(function, APPROVAL_ATTRIBUTE, False)
        return cls(function=function, spec=spec, inverse=inverse, approval=approval or False)

    @property
    def name(self) -> str:
        return self.spec.name

    async def call(self, arguments: Mapping[str, Any]) -> str:
        """Run the tool with the model's arguments; return its result as text."""
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(**arguments)
        else:
            result = await asyncio.to_thread(self.function, **arguments)
            if inspect.isawaitable(result):
                result = await result
        if isinstance(result, str):
            return result
        try:
            return json.dumps(result, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(result)


def as_tools(items: Iterable[Callable[..., Any] | Tool]) -> dict[str, Tool]:
    """Tools by name, refusing two with the same name."""
    tools: dict[str, Tool] = {}
    for item in items:
        tool = item if isinstance(item, Tool) else Tool.from_function(item)
        if tool.name in tools:
            raise ValidationError(f"two tools are named {tool.name!r}")
        tools[tool.name] = tool
    return tools


@attrs.frozen
class ToolOutcome:
    """What one tool call produced: the result text the model reads, and why it failed."""

    content: str
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    """``{"error": ...}`` when the call failed: the exception's type name or ``unknown_tool``."""
    error: Exception | None = None
    """The exception the tool raised, if it raised one."""

    @property
    def unknown_tool(self) -> bool:
        """Whether the call named a tool the agent does not have."""
        return self.metadata.get("error") == UNKNOWN_TOOL


async def run_tool(tools: Mapping[str, Tool], call: ToolCall) -> ToolOutcome:
    """Run ``call`` with the tool of that name; a failure or an unknown name becomes the result.

    Never raises an ``Exception``: the model sees the failure as ``error: ...`` and may recover.
    """
    tool = tools.get(call.name)
    if tool is None:
        return ToolOutcome(f"error: no tool named {call.name!r}", {"error": UNKNOWN_TOOL})
    try:
        return ToolOutcome(await tool.call(call.arguments))
    except Exception as exc:  # the model sees the failure and may recover
        name = type(exc).__name__
        return ToolOutcome(f"error: {name}: {exc}", {"error": name}, exc)
