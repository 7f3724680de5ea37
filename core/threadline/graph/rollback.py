"""Rollback tools: undo the side effects of tool calls made after a checkpoint.

A tool registers its inverse with the decorator, or in ``Persistency(rollback_tools=...)``
(Koog's ``RollbackToolRegistry``)::

    def book_room(room: str) -> str: ...

    @inverse_of(book_room)
    def cancel_room(room: str) -> None: ...

The inverse is called with the original call's arguments (plus ``tool_result=`` the
recorded result text, if it takes that keyword). Tool calls are read from the message
history each checkpoint carries (an assistant message's ``tool_calls`` answered by a
``tool`` message), so a rollback in another process finds them too. Rolling back to a
checkpoint undoes, newest first, the calls in the current history that the
checkpoint's history does not have; calls that failed, or whose result was never
recorded, are skipped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from threadline.errors import ValidationError
from threadline.models import Message, ToolCall
from threadline.runtime.tools import Tool

__all__ = ["INVERSE_ATTRIBUTE", "Inverse", "UndoReport", "inverse_of"]

log = logging.getLogger("threadline.graph")

F = TypeVar("F", bound=Callable[..., Any])
INVERSE_ATTRIBUTE = "__threadline_inverse__"
"""The attribute :func:`inverse_of` sets on a tool's function."""
RESULT_KEYWORD = "tool_result"


def inverse_of(tool: Callable[..., Any] | Tool) -> Callable[[F], F]:
    """Decorator registering the decorated function as ``tool``'s inverse."""

    def register(inverse: F) -> F:
        target = tool.function if isinstance(tool, Tool) else tool
        try:
            setattr(target, INVERSE_ATTRIBUTE, inverse)
        except (AttributeError, TypeError):
            raise ValidationError(
                f"cannot attach an inverse to {target!r}; pass it in "
                "Persistency(rollback_tools={tool: inverse}) instead"
            ) from None
        return inverse

    return register


@attrs.frozen
class Inverse:
    """How to undo calls of one tool."""

    tool_name: str
    function: Callable[..., Any]
    wants_result: bool

    @classmethod
    def of(cls, tool_name: str, function: Callable[..., Any]) -> Inverse:
        if not callable(function):
            raise ValidationError(f"the inverse of {tool_name!r} must be callable")
        return cls(tool_name, function, _accepts_keyword(function, RESULT_KEYWORD))

    async def undo(self, call: ToolCall, result: str) -> None:
        arguments = dict(call.arguments)
        if self.wants_result:
            arguments[RESULT_KEYWORD] = result
        await Tool.from_function(self.function, name=f"undo_{self.tool_name}").call(arguments)


def collect_inverses(
    tools: Mapping[str, Tool], explicit: Mapping[Any, Callable[..., Any]] | None
) -> dict[str, Inverse]:
    """Inverses by tool name: from ``inverse_of`` on the tools, then ``rollback_tools``."""
    found: dict[str, Inverse] = {}
    for name, tool in tools.items():
        inverse = tool.inverse or getattr(tool.function, INVERSE_ATTRIBUTE, None)
        if inverse is not None:
            found[name] = Inverse.of(name, inverse)
    for key, inverse in (explicit or {}).items():
        name = _tool_name(key)
        if name not in tools:
            raise ValidationError(
                f"rollback_tools names {name!r}, which is not a tool of this agent "
                f"(tools: {sorted(tools)})"
            )
        found[name] = Inverse.of(name, inverse)
    return found


def _tool_name(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, Tool):
        return key.name
    name = getattr(key, "__name__", None)
    if not isinstance(name, str):
        raise ValidationError(f"rollback_tools keys are tools or tool names, got {key!r}")
    return name


@attrs.frozen
class UndoReport:
    """What a rollback did to the tool calls made after its target."""

    undone: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failures: tuple[tuple[str, str, BaseException], ...] = ()

    def properties(self) -> dict[str, Any]:
        """The report as checkpoint properties (JSON)."""
        return {
            "undone_tool_calls": list(self.undone),
            "skipped_tool_calls": list(self.skipped),
            "failed_inverses": [
                {"tool": name, "call_id": call_id, "error": f"{type(exc).__name__}: {exc}"}
                for name, call_id, exc in self.failures
            ],
        }


def calls_after(
    current: Sequence[Message], target: Sequence[Message]
) -> list[tuple[ToolCall, Message | None]]:
    """Tool calls in ``current`` absent from ``target``, newest first, with their results."""
    kept = {call.id for m in target for call in m.tool_calls}
    results = {m.tool_call_id: m for m in current if m.role == "tool" and m.tool_call_id}
    made = [
        call
        for m in current
        if m.role == "assistant"
        for call in m.tool_calls
        if call.id not in kept
    ]
    return [(call, results.get(call.id)) for call in reversed(made)]


async def undo_calls(
    calls: Iterable[tuple[ToolCall, Message | None]], inverses: Mapping[str, Inverse]
) -> UndoReport:
    """Run the inverses of ``calls`` in the order given; collect what failed."""
    undone: list[str] = []
    skipped: list[str] = []
    failures: list[tuple[str, str, BaseException]] = []
    for call, result in calls:
        inverse = inverses.get(call.name)
        if inverse is None or result is None or result.metadata.get("error"):
            if inverse is not None and result is None:
                log.warning(
                    "not undoing %s call %s: its result was never recorded", call.name, call.id
                )
            skipped.append(call.id)
            continue
        try:
            await inverse.undo(call, result.content)
        except Exception as exc:
            log.error("inverse of %s call %s failed: %r", call.name, call.id, exc)
            failures.append((call.name, call.id, exc))
        else:
            undone.append(call.id)
    return UndoReport(tuple(undone), tuple(skipped), tuple(failures))


def _accepts_keyword(function: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    param = parameters.get(name)
    if param is not None:
        return param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    return False
