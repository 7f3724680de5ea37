"""Parallel branches: a node fans out to several nodes that run at once, then a join.

::

    strategy.parallel(plan, [flights, hotels, cars], join=summarise)  # each gets plan's output

    @strategy.node("plan")
    async def plan(ctx, trip):                       # or choose the branches at run time:
        return FanOut([Send(flights, trip.a), Send(hotels, trip.b)], join=summarise)

The join node's input is the list of the branches' outputs, in the order given. Each
branch runs on its own copy of the history and state; at the join, the messages each
branch appended are added in branch order and the state keys each branch set are applied
in branch order.

Persisted as checkpoints: a ``fanout`` checkpoint when the branches start (the branches
and their inputs), one ``branch`` checkpoint as each branch finishes (its output,
history and state; written concurrently, the store's atomic versions keep them apart),
then the usual checkpoint at the join. A run resumed after a crash, or after an
interrupt inside a branch, runs only the branches that have no ``branch`` checkpoint, and
the join sees each branch's output exactly once. When several branches interrupt at once,
the first (by position) is the run's interrupt; the others run again on resume (their
steps before the interrupt too) and interrupt again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from threadline.graph.interrupts import NodeExecution
from threadline.graph.strategy import Node
from threadline.models import Message

__all__ = ["BranchResult", "FanOut", "PendingFanOut", "Send"]

KIND_FANOUT = "fanout"
KIND_BRANCH = "branch"


@attrs.frozen
class Send:
    """One branch of a fan-out: run ``node`` (a Node or its name) with ``input``."""

    node: Node | str
    input: Any = None


@attrs.frozen
class FanOut:
    """What a node returns to run ``sends`` at once and then ``join`` with their outputs."""

    sends: Sequence[Send] = attrs.field(converter=tuple)
    join: Node | str


@attrs.define
class BranchResult:
    """A finished branch: its output, the messages it appended, the state keys it set."""

    output: Any
    messages: list[Message]
    state: dict[str, Any]
    checkpoint_id: str | None = None


@attrs.define(eq=False)
class PendingFanOut:
    """A fan-out under way: its branches, what they started from, and those finished."""

    id: str
    after: str | None
    join: Node
    branches: list[tuple[Node, Any]]
    base_history: list[Message]
    base_state: dict[str, Any]
    done: dict[int, BranchResult] = attrs.Factory(dict)
    replay: dict[int, NodeExecution] = attrs.Factory(dict)

    def merged(self) -> tuple[list[Message], dict[str, Any], list[Any]]:
        """The join's history, state and input, branches taken in order."""
        history = list(self.base_history)
        state = dict(self.base_state)
        outputs = []
        for index in range(len(self.branches)):
            result = self.done[index]
            history.extend(result.messages)
            state.update(result.state)
            outputs.append(result.output)
        return history, state, outputs


def changed_state(base: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The keys a branch set (or replaced) compared with the state it started with."""
    return {k: v for k, v in after.items() if k not in base or base[k] is not v}
