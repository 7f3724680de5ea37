"""Runs waiting for a person: graph interrupts and tool calls held for approval.

Both are checkpoints, so they work on every store as it is and survive any restart:

* a graph run stopped at ``ctx.interrupt`` is a checkpoint of ``kind`` ``interrupt``
  with ``properties["waiting"]`` true, the payload under ``properties["interrupt"]``;
  resuming it first writes a ``resume`` checkpoint (the claim, holding the value);
* a chat turn whose model called a tool that needs approval is a checkpoint of ``kind``
  ``approval`` naming the assistant message and its calls; each decision is a checkpoint
  of ``kind`` ``approval_decision``; a tombstone of ``kind`` ``approval_done`` ends it.

Claims are atomic on every store because checkpoint versions are: a write whose version
is not the one right after the checkpoint it answers lost a race, and says so with a
typed error; the first decision written for a call is the one that counts.

:func:`list_waiting` finds the waiting runs of a tenant (optionally of a user, agent or
session) by reading the tenant's checkpoints (``Store.list_checkpoints``): one read, but
it loads every checkpoint of the tenant. An indexed listing of waiting checkpoints is a
follow-up for the store contract.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import attrs

from threadline.errors import ConflictError, ValidationError
from threadline.ids import IdLike, check_id, new_id, optional_id
from threadline.models import MAX_JSON_DEPTH, Checkpoint, ToolCall
from threadline.store import Store

__all__ = [
    "MAX_VALUE_BYTES",
    "ApprovalPendingError",
    "ApprovalState",
    "NotWaitingError",
    "PendingCall",
    "WaitingRun",
    "approval_state",
    "check_value",
    "find_pending_call",
    "is_waiting",
    "list_waiting",
    "record_decision",
    "record_resume",
]

MAX_VALUE_BYTES = 1_000_000
"""The largest interrupt payload, resume value or edited arguments, as JSON (1 MB)."""

KIND_INTERRUPT = "interrupt"
KIND_RESUME = "resume"
KIND_APPROVAL = "approval"
KIND_DECISION = "approval_decision"
KIND_DONE = "approval_done"


class NotWaitingError(ConflictError):
    """Nothing waits under this id: unknown, already resumed or decided, or moved on.

    Nothing was written (or what was written lost a race and is ignored).
    """


class ApprovalPendingError(ConflictError):
    """A new chat turn was started while the session's last turn waits for approval."""


def check_value(value: Any, field: str) -> Any:
    """``value`` if it is plain JSON every store keeps; else :class:`ValidationError`.

    Plain JSON: ``None``, bool, int within 64 bits, finite float, str, list, dict with
    str keys, at most :data:`~threadline.models.MAX_JSON_DEPTH` deep, no NUL character
    and no lone surrogate in any string (PostgreSQL refuses both), and at most
    :data:`MAX_VALUE_BYTES` as JSON.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationError(f"{field} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, str):
            _check_string(item, field)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > 2**63 - 1:
                raise ValidationError(f"{field} holds an int beyond 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValidationError(f"{field} holds {item!r}, which JSON cannot carry")
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValidationError(
                        f"{field} has a key that is not a str ({type(key).__name__})"
                    )
                _check_string(key, field)
                stack.append((child, depth + 1))
        else:
            raise ValidationError(
                f"{field} must be plain JSON (None, bool, number, str, list, dict); "
                f"got a {type(item).__name__}"
            )
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise ValidationError(f"{field} is {size} bytes as JSON; at most {MAX_VALUE_BYTES}")
    return value


def _check_string(text: str, field: str) -> None:
    if "\x00" in text:
        raise ValidationError(f"{field} holds a NUL character, which stores cannot keep")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{field} holds a lone surrogate (not valid Unicode)") from None


def is_waiting(checkpoint: Checkpoint | None) -> bool:
    """Whether ``checkpoint`` marks a run waiting for a person (an interrupt or approval)."""
    return (
        checkpoint is not None
        and not checkpoint.tombstone
        and checkpoint.properties.get("waiting") is True
    )


def kind_of(checkpoint: Checkpoint | None) -> str | None:
    """A checkpoint's ``kind`` property."""
    kind = checkpoint.properties.get("kind") if checkpoint is not None else None
    return kind if isinstance(kind, str) else None


@attrs.frozen
class PendingCall:
    """A tool call held for approval: its id, tool name and arguments as the model gave them."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@attrs.frozen
class WaitingRun:
    """A run waiting for a person, as :func:`list_waiting` reports it.

    ``kind`` is ``interrupt`` (a graph node at ``ctx.interrupt``; ``id`` is the interrupt
    id) or ``approval`` (a chat turn holding tool calls; ``id`` is the held turn's
    checkpoint). ``calls`` are the calls still to be decided (a graph approval's too).
    """

    kind: Literal["interrupt", "approval"]
    id: str
    tenant_id: str
    session_id: str
    agent_id: str | None
    user_id: str | None
    node: str | None
    payload: Any
    calls: tuple[PendingCall, ...]
    created_at: datetime
    strategy: str | None = None

    @property
    def age(self) -> timedelta:
        """How long the run has been waiting."""
        return datetime.now(timezone.utc) - self.created_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "tenant_id": self.tenant_id,
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "user_id": self.user_id,
            "node": self.node,
            "strategy": self.strategy,
            "payload": self.payload,
            "calls": [c.to_dict() for c in self.calls],
            "created_at": self.created_at.isoformat(),
            "age_seconds": round(self.age.total_seconds(), 3),
        }


@attrs.frozen
class ApprovalState:
    """A held chat turn folded from its checkpoints: the calls, decisions and whether done."""

    root: Checkpoint
    message_id: str
    calls: tuple[PendingCall, ...]
    needs: frozenset[str]
    decisions: dict[str, dict[str, Any]]
    """First decision per call id, in version order."""
    decided_by: dict[str, str]
    """The checkpoint id whose decision counts, per call id."""
    completed_by: str | None
    """The decision checkpoint after which every call needing approval was decided."""
    done: bool
    latest: Checkpoint

    @property
    def pending(self) -> tuple[PendingCall, ...]:
        return tuple(c for c in self.calls if c.id in self.needs and c.id not in self.decisions)


def approval_state(checkpoints: Sequence[Checkpoint]) -> ApprovalState | None:
    """The latest held turn among a session's checkpoints (oldest first), or ``None``."""
    roots = [i for i, c in enumerate(checkpoints) if kind_of(c) == KIND_APPROVAL]
    if not roots:
        return None
    root = checkpoints[roots[-1]]
    info = root.properties.get("approval")
    if not isinstance(info, dict) or not isinstance(info.get("message_id"), str):
        return None
    calls = tuple(
        PendingCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
        for c in info.get("calls") or ()
        if isinstance(c, dict)
    )
    needs = frozenset(str(c) for c in info.get("needs") or ())
    decisions: dict[str, dict[str, Any]] = {}
    decided_by: dict[str, str] = {}
    completed_by: str | None = None
    done = False
    for c in checkpoints[roots[-1] + 1 :]:
        if c.properties.get("approval_of") != root.id:
            continue
        if kind_of(c) == KIND_DONE:
            done = True
            continue
        decision = c.properties.get("decision")
        if kind_of(c) != KIND_DECISION or not isinstance(decision, dict):
            continue
        call_id = decision.get("call_id")
        if isinstance(call_id, str) and call_id in needs and call_id not in decisions:
            decisions[call_id] = decision
            decided_by[call_id] = c.id
            if completed_by is None and needs <= decisions.keys():
                completed_by = c.id
    return ApprovalState(
        root=root,
        message_id=info["message_id"],
        calls=calls,
        needs=needs,
        decisions=decisions,
        decided_by=decided_by,
        completed_by=completed_by,
        done=done,
        latest=checkpoints[-1],
    )


def _waiting_run(session: Sequence[Checkpoint]) -> WaitingRun | None:
    latest = session[-1]
    if not is_waiting(latest):
        return None
    user = latest.properties.get("user_id")
    user_id = user if isinstance(user, str) else None
    strategy = latest.properties.get("strategy")
    common: dict[str, Any] = {
        "tenant_id": latest.tenant_id,
        "session_id": latest.session_id,
        "agent_id": latest.agent_id,
        "user_id": user_id,
        "strategy": strategy if isinstance(strategy, str) else None,
    }
    if kind_of(latest) == KIND_INTERRUPT:
        info = latest.properties.get("interrupt")
        payload = info.get("payload") if isinstance(info, dict) else None
        calls: tuple[PendingCall, ...] = ()
        if isinstance(payload, dict) and payload.get("type") == "approval":
            calls = tuple(
                PendingCall(str(c["id"]), str(c["name"]), dict(c.get("arguments") or {}))
                for c in payload.get("calls") or ()
                if isinstance(c, dict) and "id" in c and "name" in c
            )
        return WaitingRun(
            kind="interrupt",
            id=latest.id,
            node=latest.node_id,
            payload=payload,
            calls=calls,
            created_at=latest.created_at,
            **common,
        )
    state = approval_state(session)
    if state is None or state.done:
        return None
    return WaitingRun(
        kind="approval",
        id=state.root.id,
        node=None,
        payload={"message_id": state.message_id},
        calls=state.pending,
        created_at=state.root.created_at,
        **common,
    )


async def list_waiting(
    store: Store,
    tenant_id: IdLike,
    *,
    user_id: IdLike | None = None,
    agent_id: IdLike | None = None,
    session_id: IdLike | None = None,
) -> list[WaitingRun]:
    """The runs of a tenant waiting for a person, oldest first (of one user if given)."""
    tenant = check_id(tenant_id, "tenant_id")
    user = optional_id(user_id, "user_id")
    checkpoints = await store.list_checkpoints(
        tenant,
        session_id=optional_id(session_id, "session_id"),
        agent_id=optional_id(agent_id, "agent_id"),
    )
    sessions: dict[str, list[Checkpoint]] = {}
    for c in checkpoints:
        sessions.setdefault(c.session_id, []).append(c)
    found: list[WaitingRun] = []
    for chain in sessions.values():
        chain.sort(key=lambda c: c.version or 0)
        run = _waiting_run(chain)
        if run is not None and (user is None or run.user_id == user):
            found.append(run)
    return sorted(found, key=lambda r: (r.created_at, r.id))


async def find_pending_call(
    store: Store, tenant_id: IdLike, call_id: str, *, session_id: IdLike | None = None
) -> WaitingRun:
    """The waiting run holding tool call ``call_id``; :class:`NotWaitingError` if none."""
    for run in await list_waiting(store, tenant_id, session_id=session_id):
        if any(c.id == call_id for c in run.calls):
            return run
    raise NotWaitingError(f"no tool call {call_id!r} waits for approval in this tenant")


# -- writes -------------------------------------------------------------------------------


def _claimed(written: Checkpoint, answered: Checkpoint) -> bool:
    """Whether ``written`` came right after ``answered`` (stores without versions: yes)."""
    if written.version is None or answered.version is None:
        return True
    return written.version == answered.version + 1


async def record_resume(store: Store, tenant_id: IdLike, ident: IdLike, value: Any) -> Checkpoint:
    """Answer a waiting interrupt with ``value``: write its ``resume`` checkpoint (the claim).

    ``ident`` is the interrupt id or the session id. The run goes on when the agent next
    runs the session (``agent.resume`` does both). Raises :class:`NotWaitingError` when
    nothing waits there, or another process resumed it first.
    """
    tenant = check_id(tenant_id, "tenant_id")
    key = check_id(ident, "interrupt or session id")
    check_value(value, "resume value")
    target = await store.get_checkpoint(tenant, key)
    if target is not None:
        session_id, interrupt_id = target.session_id, target.id
    else:
        session_id, interrupt_id = key, None
    latest = await store.get_latest_checkpoint(tenant, session_id)
    if kind_of(latest) != KIND_INTERRUPT or not is_waiting(latest) or latest is None:
        if interrupt_id is not None:
            raise NotWaitingError(
                f"interrupt {interrupt_id} no longer waits: it was resumed, or the run moved on"
            )
        raise NotWaitingError(f"no run waits for a resume in session {session_id}")
    if interrupt_id is not None and latest.id != interrupt_id:
        raise NotWaitingError(
            f"interrupt {interrupt_id} no longer waits: the run moved on (now waiting at "
            f"interrupt {latest.id})"
        )
    replay = latest.properties.get("replay")
    replay = dict(replay) if isinstance(replay, dict) else {}
    values = replay.get("values")
    replay["values"] = [*(values if isinstance(values, list) else ()), value]
    properties = {
        k: v for k, v in latest.properties.items() if k not in ("waiting", "interrupt", "replay")
    }
    properties.update({"kind": KIND_RESUME, "resumed": latest.id, "replay": replay})
    claim = await store.create_checkpoint(
        attrs.evolve(
            latest,
            properties=properties,
            parent_id=latest.id,
            version=None,
            id=new_id(),
            created_at=datetime.now(timezone.utc),
        )
    )
    if not _claimed(claim, latest):
        raise NotWaitingError(
            f"interrupt {latest.id} was resumed by another process at the same time"
        )
    return claim


async def record_decision(
    store: Store,
    tenant_id: IdLike,
    call_id: str,
    *,
    approved: bool,
    arguments: Mapping[str, Any] | None = None,
    reason: str | None = None,
    session_id: IdLike | None = None,
) -> tuple[WaitingRun, Checkpoint, ApprovalState | None]:
    """Record a person's decision on a held tool call (no tool runs here).

    A graph approval is resumed with the decision (:func:`record_resume`); a chat turn
    gets an ``approval_decision`` checkpoint. Returns the waiting run, the checkpoint
    written, and the chat turn's state after it. :class:`NotWaitingError` when the call
    does not wait, or was decided first by another process.
    """
    if not isinstance(call_id, str) or not call_id:
        raise ValidationError("call_id must be a non-empty str")
    check_value(call_id, "call_id")
    if arguments is not None:
        if not isinstance(arguments, Mapping):
            raise ValidationError("approved arguments must be a JSON object")
        arguments = dict(check_value(dict(arguments), "approved arguments"))
        ToolCall(id=call_id, name="check", arguments=arguments)
    if reason is not None:
        reason = str(check_value(str(reason), "rejection reason"))
    tenant = check_id(tenant_id, "tenant_id")
    run = await find_pending_call(store, tenant, call_id, session_id=session_id)
    decision: dict[str, Any] = {"approved": bool(approved), "call_id": call_id}
    if arguments is not None:
        decision["arguments"] = arguments
    if reason is not None:
        decision["reason"] = reason
    if run.kind == "interrupt":
        return run, await record_resume(store, tenant, run.id, decision), None
    chain = await store.list_checkpoints(tenant, session_id=run.session_id)
    state = approval_state(chain)
    if state is None or call_id not in state.needs or call_id in state.decisions:
        raise NotWaitingError(f"tool call {call_id!r} was already decided")
    original = next(c for c in state.calls if c.id == call_id)
    if arguments is not None:
        decision["original_arguments"] = original.arguments
    written = await store.create_checkpoint(
        Checkpoint(
            tenant_id=tenant,
            session_id=run.session_id,
            agent_id=state.root.agent_id,
            properties={
                "kind": KIND_DECISION,
                "waiting": True,
                "approval_of": state.root.id,
                "decision": decision,
                "user_id": state.root.properties.get("user_id"),
            },
            parent_id=state.latest.id,
        )
    )
    after = approval_state(await store.list_checkpoints(tenant, session_id=run.session_id))
    if after is None or after.decided_by.get(call_id) != written.id:
        raise NotWaitingError(
            f"tool call {call_id!r} was decided by another process at the same time"
        )
    return run, written, after


async def record_done(store: Store, state: ApprovalState) -> Checkpoint:
    """End a held chat turn: every decided call has its result saved."""
    root = state.root
    return await store.create_checkpoint(
        Checkpoint(
            tenant_id=root.tenant_id,
            session_id=root.session_id,
            agent_id=root.agent_id,
            properties={
                "kind": KIND_DONE,
                "approval_of": root.id,
                "user_id": root.properties.get("user_id"),
            },
            tombstone=True,
            parent_id=state.latest.id,
        )
    )


def pending_from(calls: Iterable[ToolCall]) -> tuple[PendingCall, ...]:
    """Tool calls as :class:`PendingCall`."""
    return tuple(PendingCall(c.id, c.name, dict(c.arguments)) for c in calls)
