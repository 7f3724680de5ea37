"""Errors and warnings of :mod:`threadline.graph`, all under :class:`~threadline.ThreadlineError`.

::

    GraphError                      a strategy cannot be built or run as given
    ├── DuplicateNodeNameError      two nodes share a name while Persistency is installed
    ├── CheckpointSerializationError  an input or state value cannot be written to a checkpoint
    ├── RollbackError               inverse tools failed while rolling back (the rest was undone)
    ├── InterruptError              nothing waits to be resumed (wrong id, resumed, moved on)
    ├── ToolRejectedError           a person rejected a tool call ``ctx.call_tool`` asked about
    └── NondeterministicNodeError   a re-entered node made other steps than before
    CheckpointWarning               lenient mode skipped something it could not serialise
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from threadline.errors import ThreadlineError, ValidationError
from threadline.runtime.waiting import NotWaitingError

if TYPE_CHECKING:
    from threadline.models import Checkpoint

__all__ = [
    "CheckpointSerializationError",
    "CheckpointWarning",
    "DuplicateNodeNameError",
    "GraphError",
    "InterruptError",
    "NondeterministicNodeError",
    "RollbackError",
    "ToolRejectedError",
]


class GraphError(ThreadlineError):
    """A strategy is malformed, or a run cannot go on (no edge matches, unknown node)."""


class DuplicateNodeNameError(GraphError, ValidationError):
    """Checkpoints name nodes, so a strategy under Persistency needs unique node names."""

    def __init__(self, strategy: str, duplicates: Mapping[str, int]) -> None:
        self.strategy = strategy
        self.duplicates = dict(duplicates)
        listed = ", ".join(
            f"{name!r} ({count} nodes)" for name, count in sorted(duplicates.items())
        )
        super().__init__(
            f"strategy {strategy!r} has nodes sharing a name: {listed}. Checkpoints identify "
            "the node to resume by its name, so node names must be unique when Persistency "
            "is installed"
        )


class CheckpointSerializationError(GraphError, ValidationError):
    """A node's input or a state value has no JSON encoding; nothing was written.

    ``node`` is the node the checkpoint concerns, ``type_name`` the offending value's type
    and ``path`` where it sits (``input``, ``input.items[2]``, ``state['conn']``).
    """

    def __init__(self, message: str, *, node: str | None, type_name: str, path: str) -> None:
        super().__init__(message)
        self.node = node
        self.type_name = type_name
        self.path = path


class RollbackError(GraphError):
    """Some inverse tools raised; the others ran and the rollback checkpoint was written.

    ``failures`` lists ``(tool name, tool call id, exception)``; ``checkpoint`` is the
    checkpoint the rollback wrote (``None`` when no storage keeps checkpoints).
    """

    def __init__(
        self,
        failures: Sequence[tuple[str, str, BaseException]],
        checkpoint: Checkpoint | None,
    ) -> None:
        self.failures = list(failures)
        self.checkpoint = checkpoint
        shown = "; ".join(f"{name} ({call_id}): {exc!r}" for name, call_id, exc in failures)
        super().__init__(f"{len(failures)} inverse tool call(s) failed during rollback: {shown}")


class InterruptError(GraphError, NotWaitingError):
    """A resume or decision names no waiting run: unknown id, already resumed, or moved on.

    Nothing was written. ``session_id`` and ``interrupt_id`` are what the caller named.
    """

    def __init__(
        self, message: str, *, session_id: str | None = None, interrupt_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.interrupt_id = interrupt_id


class ToolRejectedError(GraphError):
    """``ctx.call_tool`` asked a person about a call and they rejected it (``reason``)."""

    def __init__(self, tool: str, call_id: str, reason: str) -> None:
        super().__init__(f"tool call {call_id} ({tool}) was rejected: {reason}")
        self.tool = tool
        self.call_id = call_id
        self.reason = reason


class NondeterministicNodeError(GraphError):
    """A node re-entered after an interrupt asked for other steps than the first time.

    Steps (``ctx.llm``, ``ctx.call_tool``, ``ctx.once``) before an interrupt are replayed
    from the checkpoint in order, so a node must make the same ones up to its interrupt.
    """


class CheckpointWarning(UserWarning):
    """Lenient Persistency skipped a value (or a whole checkpoint) it could not serialise."""
