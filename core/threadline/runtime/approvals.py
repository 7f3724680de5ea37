"""Tools that wait for a person's approval before they run.

::

    @requires_approval                                  # every call waits
    def pay(to: str, amount: float) -> str: ...

    @requires_approval(when=lambda to, amount: amount > 100)   # only some calls wait
    def refund(to: str, amount: float) -> str: ...

    agent = await (quick_agent("...").with_tools([pay, refund])
                   .with_approval(["delete_account"], policy=lambda call: ...).build())
    async for piece in agent.chat_stream("pay Ada 10"):
        if isinstance(piece, ApprovalRequired):        # the stream's last item
            print(piece.calls)
    async for piece in agent.approve(call_id):         # any process, any time later
        ...

When the model calls such a tool the turn stops before any of that reply's calls run:
the assistant message with its calls is saved (``metadata["approval"]`` lists the held
call ids), a checkpoint records the held turn (see :mod:`threadline.runtime.waiting`), and
``chat_stream`` ends with an :class:`ApprovalRequired` (an empty ``str``, so text loops
print nothing). Approving runs the tool (with edited arguments if given, recorded with
the original ones), rejecting saves ``rejected: REASON`` as the tool's result; once every
held call is decided the other calls of that reply run and the turn goes on, streamed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import attrs

from threadline.errors import ValidationError
from threadline.models import ToolCall
from threadline.runtime.tools import APPROVAL_ATTRIBUTE, Tool
from threadline.runtime.waiting import PendingCall

__all__ = ["ApprovalPolicy", "ApprovalRequired", "requires_approval"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def requires_approval(function: F, /) -> F: ...


@overload
def requires_approval(*, when: Callable[..., Any] | None = None) -> Callable[[F], F]: ...


def requires_approval(
    function: F | None = None, /, *, when: Callable[..., Any] | None = None
) -> F | Callable[[F], F]:
    """Mark a tool as waiting for approval: always, or when ``when(**arguments)`` is true."""

    def mark(target: F) -> F:
        if isinstance(target, Tool):
            raise ValidationError("use Tool.from_function(f, approval=...) for a Tool object")
        try:
            setattr(target, APPROVAL_ATTRIBUTE, when if when is not None else True)
        except (AttributeError, TypeError):
            raise ValidationError(f"cannot mark {target!r}; use with_approval([...])") from None
        return target

    if function is not None:
        return mark(function)
    return mark


@attrs.frozen
class ApprovalPolicy:
    """Which calls wait: tools marked, tools named here, or calls ``when(call)`` accepts."""

    tools: frozenset[str] = frozenset()
    when: Callable[[ToolCall], Any] | None = None

    @classmethod
    def of(
        cls,
        tools: Iterable[str | Callable[..., Any] | Tool] = (),
        when: Callable[[ToolCall], Any] | None = None,
    ) -> ApprovalPolicy:
        names = set()
        for item in tools:
            if isinstance(item, str):
                names.add(item)
            elif isinstance(item, Tool):
                names.add(item.name)
            elif callable(item) and isinstance(getattr(item, "__name__", None), str):
                names.add(item.__name__)
            else:
                raise ValidationError(f"approval tools are tools or tool names, got {item!r}")
        if when is not None and not callable(when):
            raise ValidationError("an approval policy must be callable")
        return cls(frozenset(names), when)

    def active(self, tools: Mapping[str, Tool]) -> bool:
        """Whether any call to ``tools`` can wait."""
        return bool(self.tools or self.when) or any(t.approval for t in tools.values())

    def needs(self, call: ToolCall, tools: Mapping[str, Tool]) -> bool:
        """Whether ``call`` waits. A check that raises counts as yes (fail closed)."""
        tool = tools.get(call.name)
        if tool is None:
            return False  # answered "no tool named ..." without running anything
        if call.name in self.tools or tool.approval is True:
            return True
        try:
            if callable(tool.approval) and tool.approval(**call.arguments):
                return True
            return bool(self.when is not None and self.when(call))
        except Exception:
            return True


class ApprovalRequired(str):
    """The last item of a stream whose turn waits for approval: an empty ``str`` with
    the held ``calls``, the ``session_id`` and the assistant ``message_id``."""

    calls: tuple[PendingCall, ...]
    session_id: str
    message_id: str

    def __new__(
        cls, calls: Iterable[PendingCall], *, session_id: str, message_id: str
    ) -> ApprovalRequired:
        marker = super().__new__(cls, "")
        marker.calls = tuple(calls)
        marker.session_id = session_id
        marker.message_id = message_id
        return marker

    def __repr__(self) -> str:
        names = ", ".join(f"{c.name}({c.id})" for c in self.calls)
        return f"<ApprovalRequired session={self.session_id} calls=[{names}]>"
