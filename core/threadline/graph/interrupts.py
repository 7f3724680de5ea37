"""Interrupts: a node waits for a person, for as long as it takes, in a checkpoint.

::

    @strategy.node("confirm")
    async def confirm(ctx: GraphContext, draft: str) -> str:
        answer = await ctx.interrupt({"question": "send this?", "draft": draft})
        return draft if answer == "yes" else "cancelled"

    result = await agent.run("...", session_id=s)      # an Interrupted: nothing after it ran
    # ... hours later, in any process:
    result = await agent.resume(s, "yes")   # or agent.resume(result.interrupt_id, "yes")

How it is kept: ``ctx.interrupt`` raises :class:`NodeInterrupt`; the run loop writes a
checkpoint of ``kind`` ``interrupt`` (``properties["waiting"]`` true, the payload and the
node under ``properties["interrupt"]``) whose id is the interrupt id. ``resume`` first
writes a ``resume`` checkpoint right after it (the claim: its version must be the
interrupt's plus one, so of two processes resuming at once exactly one goes on), then
re-enters the node.

Re-entry: the node runs again from its start, with the history and state it started
with. Its *steps* made before the interrupt (``ctx.llm``, ``ctx.llm_stream``,
``ctx.call_tool`` and ``ctx.once``) are not run again: their results and the messages
they appended were saved in the interrupt checkpoint and are replayed in order, so the
model is not asked twice and a tool does not run twice. Plain code before the interrupt
runs again; keep it cheap and idempotent, or wrap it in ``ctx.once``. Each
``ctx.interrupt`` returns the value given for it, the first one not yet answered raises
again (several interrupts in one node work this way).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from threadline.errors import ValidationError
from threadline.models import Checkpoint, Message
from threadline.runtime.waiting import (
    KIND_INTERRUPT,
    MAX_VALUE_BYTES,
    check_value,
    is_waiting,
    kind_of,
)

__all__ = [
    "MAX_VALUE_BYTES",
    "Interrupted",
    "NodeExecution",
    "NodeInterrupt",
    "StepRecord",
    "check_value",
    "is_interrupt",
    "is_waiting",
]


class NodeInterrupt(BaseException):
    """Raised by ``ctx.interrupt`` to stop the node; the run loop turns it into a checkpoint.

    A ``BaseException``, so ``except Exception`` in a node does not swallow it.
    """

    def __init__(self, payload: Any, index: int) -> None:
        super().__init__(f"interrupt #{index}")
        self.payload = payload
        self.index = index


@attrs.define
class StepRecord:
    """One step a node made before an interrupt: its key, JSON result, messages appended."""

    key: str
    result: Any
    messages: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "result": self.result, "messages": self.messages}

    @classmethod
    def from_json(cls, data: Any) -> StepRecord:
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise ValidationError(f"not a step record: {data!r:.80}")
        count = data.get("messages")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValidationError(f"step record {data['key']!r} has a bad message count")
        return cls(data["key"], data.get("result"), count)


@attrs.define(eq=False)
class NodeExecution:
    """One execution of one node: what it started with and the steps it has made."""

    origin: str | None
    """The checkpoint the node's first execution started at (stable across re-entries)."""
    base_history: list[Message]
    base_state: dict[str, Any]
    values: list[Any] = attrs.Factory(list)
    """Resume values, one per interrupt already answered."""
    replay: list[StepRecord] = attrs.Factory(list)
    replay_messages: list[Message] = attrs.Factory(list)
    steps: list[StepRecord] = attrs.Factory(list)
    messages: list[Message] = attrs.Factory(list)
    interrupts: int = 0
    depth: int = 0
    interrupt_id: str | None = None

    def replay_json(self) -> dict[str, Any]:
        """What a checkpoint keeps to re-enter this node (``base`` counts history messages)."""
        return {
            "origin": self.origin,
            "values": list(self.values),
            "steps": [s.to_json() for s in self.steps],
            "base": len(self.base_history),
        }

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, data: Any, state: dict[str, Any]
    ) -> NodeExecution:
        """The execution a ``resume`` (or interrupt) checkpoint re-enters."""
        if not isinstance(data, dict):
            raise ValidationError(f"checkpoint {checkpoint.id} has no replay data")
        base = data.get("base")
        steps = [StepRecord.from_json(s) for s in data.get("steps") or ()]
        history = list(checkpoint.history)
        if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base <= len(history):
            raise ValidationError(f"checkpoint {checkpoint.id} has a bad history base {base!r}")
        if base + sum(s.messages for s in steps) != len(history):
            raise ValidationError(f"checkpoint {checkpoint.id}: steps do not match its history")
        values = data.get("values")
        origin = data.get("origin")
        return cls(
            origin=origin if isinstance(origin, str) else None,
            base_history=history[:base],
            base_state=dict(state),
            values=list(values) if isinstance(values, list) else [],
            replay=steps,
            replay_messages=history[base:],
        )


@attrs.frozen
class Interrupted:
    """What ``GraphAgent.run`` / ``resume`` return when the run waits for a person.

    ``interrupt_id`` is the waiting checkpoint's id: resume with it, or with the session id.
    """

    interrupt_id: str
    session_id: str
    tenant_id: str
    agent_id: str | None
    node: str
    payload: Any
    index: int
    created_at: datetime

    interrupted = True

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> Interrupted:
        info = checkpoint.properties.get("interrupt") or {}
        index = info.get("index") if isinstance(info, dict) else 0
        return cls(
            interrupt_id=checkpoint.id,
            session_id=checkpoint.session_id,
            tenant_id=checkpoint.tenant_id,
            agent_id=checkpoint.agent_id,
            node=checkpoint.node_id or "",
            payload=info.get("payload") if isinstance(info, dict) else None,
            index=index if isinstance(index, int) else 0,
            created_at=checkpoint.created_at,
        )


def is_interrupt(checkpoint: Checkpoint | None) -> bool:
    """Whether ``checkpoint`` is a graph run waiting at ``ctx.interrupt``."""
    return is_waiting(checkpoint) and kind_of(checkpoint) == KIND_INTERRUPT


def step_messages(replay: Sequence[StepRecord], index: int) -> tuple[int, int]:
    """The slice of replay messages step ``index`` appended."""
    start = sum(s.messages for s in replay[:index])
    return start, start + replay[index].messages
