"""The agent's approval flow: a turn held for a person's approval, decided and continued.

A reply calling a tool that needs approval is held (a ``waiting`` checkpoint of the
session names its calls); :meth:`ApprovalFlow.approve` / :meth:`~ApprovalFlow.reject` record
a decision in any process, and the last decision of a turn runs its calls and streams the
reply on. The records and their reading are :mod:`threadline.runtime.waiting`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from threadline.errors import ConflictError
from threadline.ids import IdLike, check_id, optional_id
from threadline.models import Checkpoint, Message, Session, ToolCall
from threadline.runtime.approvals import ApprovalRequired
from threadline.runtime.settings import AgentSettings, PersistencePlugin
from threadline.runtime.tools import run_tool
from threadline.runtime.transcript import StoreTranscript
from threadline.runtime.turn import TurnSettings, stream_turn
from threadline.runtime.waiting import (
    KIND_APPROVAL,
    ApprovalPendingError,
    ApprovalState,
    NotWaitingError,
    PendingCall,
    approval_state,
    is_waiting,
    kind_of,
    pending_from,
    record_decision,
    record_done,
)
from threadline.storekit.window import select_window

if TYPE_CHECKING:
    from threadline.store import Store

__all__ = ["ApprovalFlow"]


class ApprovalFlow:
    """Holding, deciding and continuing tool calls that wait for approval (a mixin of
    :class:`~threadline.runtime.agent.Agent`)."""

    settings: AgentSettings
    persistence: PersistencePlugin
    session_id: str
    _opened: set[str]

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...

        async def open_session(self, session_id: IdLike | None = None) -> Session: ...

        async def _fit(self, sid: str, history: list[Message], complete: bool) -> list[Message]: ...

    def _turn_settings(self, sid: str) -> TurnSettings:
        settings = self.settings

        async def hold(reply: Message, calls: Sequence[ToolCall]) -> str:
            return await self._hold(sid, reply, calls)

        return TurnSettings(
            provider=settings.provider,
            model=settings.model,
            tools=settings.tools,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            response_format=settings.response_format,
            extra=settings.extra,
            approval=settings.approval,
            hold=hold,
        )

    async def _hold(self, sid: str, reply: Message, held: Sequence[ToolCall]) -> ApprovalRequired:
        """Record that ``reply``'s calls wait for approval (a checkpoint of the session)."""
        p = self.persistence
        latest = await self.store.get_latest_checkpoint(p.tenant_id, sid)
        await self.store.create_checkpoint(
            Checkpoint(
                tenant_id=p.tenant_id,
                session_id=sid,
                agent_id=p.agent_id,
                properties={
                    "kind": KIND_APPROVAL,
                    "waiting": True,
                    "user_id": p.user_id,
                    "approval": {
                        "message_id": reply.id,
                        "calls": [c.to_dict() for c in reply.tool_calls],
                        "needs": [c.id for c in held],
                    },
                },
                parent_id=latest.id if latest is not None else None,
            )
        )
        return ApprovalRequired(pending_from(held), session_id=sid, message_id=reply.id)

    async def _refuse_while_held(self, sid: str) -> None:
        latest = await self.store.get_latest_checkpoint(self.persistence.tenant_id, sid)
        if is_waiting(latest) and kind_of(latest) != "interrupt":
            state = await self._approval_state(sid)
            waiting = ", ".join(f"{c.name} ({c.id})" for c in state.pending) if state else ""
            waiting = waiting or "all decided, not yet continued"
            raise ApprovalPendingError(
                f"session {sid} waits for approval of tool calls: {waiting}; approve or "
                "reject them (or continue_turn) first"
            )

    async def _approval_state(self, sid: str) -> ApprovalState | None:
        tenant = self.persistence.tenant_id
        return approval_state(await self.store.list_checkpoints(tenant, session_id=sid))

    async def pending_approvals(self, session_id: IdLike | None = None) -> list[PendingCall]:
        """The tool calls of a session waiting for approval (none: an empty list)."""
        sid = check_id(session_id or self.session_id, "session_id")
        state = await self._approval_state(sid)
        return [] if state is None or state.done else list(state.pending)

    def approve(
        self,
        call_id: str,
        *,
        arguments: Mapping[str, Any] | None = None,
        session_id: IdLike | None = None,
    ) -> AsyncIterator[str]:
        """Approve a held tool call (``arguments``: run it with these, recorded as edited).

        Works in any process. When it was the last held call of its turn, the turn goes
        on: the calls run, their results are saved and the reply streams here. Otherwise
        the stream yields one :class:`ApprovalRequired` naming the calls still held.
        Raises :class:`~threadline.runtime.waiting.NotWaitingError` when the call does not
        wait (unknown, decided already, or decided first by another process).
        """
        return self._decide(call_id, True, arguments, None, session_id)

    def reject(
        self, call_id: str, reason: str = "rejected", *, session_id: IdLike | None = None
    ) -> AsyncIterator[str]:
        """Reject a held tool call: the model reads ``rejected: REASON`` as its result."""
        return self._decide(call_id, False, None, reason, session_id)

    async def _decide(
        self,
        call_id: str,
        approved: bool,
        arguments: Mapping[str, Any] | None,
        reason: str | None,
        session_id: IdLike | None,
    ) -> AsyncIterator[str]:
        sid = optional_id(session_id, "session_id")
        run, written, state = await record_decision(
            self.store,
            self.persistence.tenant_id,
            call_id,
            approved=approved,
            arguments=arguments,
            reason=reason,
            session_id=sid,
        )
        if run.kind != "approval" or state is None:
            raise ConflictError(
                f"tool call {call_id!r} waits in a graph run: use GraphAgent.approve/reject"
            )
        if state.completed_by != written.id:
            if state.pending:
                yield ApprovalRequired(
                    state.pending, session_id=run.session_id, message_id=state.message_id
                )
            return
        async for piece in self._continue(run.session_id, state):
            yield piece

    async def continue_turn(self, session_id: IdLike | None = None) -> AsyncIterator[str]:
        """Go on with a held turn whose calls are all decided (after a crash left it so)."""
        sid = check_id(session_id or self.session_id, "session_id")
        state = await self._approval_state(sid)
        if state is None or state.done:
            raise NotWaitingError(f"no held turn to continue in session {sid}")
        if state.completed_by is None:
            names = ", ".join(c.id for c in state.pending)
            raise NotWaitingError(f"tool calls still wait for approval: {names}")
        async for piece in self._continue(sid, state):
            yield piece

    async def _continue(self, sid: str, state: ApprovalState) -> AsyncIterator[str]:
        """Run the held reply's calls as decided, save their results, and go on streaming."""
        if sid not in self._opened:
            await self.open_session(sid)
        p, settings = self.persistence, self.settings
        window = await self.store.load_window(p.tenant_id, sid, settings.window)
        history = select_window(window, settings.window)
        history.sort(key=lambda m: m.role != "system")
        reply = next((m for m in history if m.id == state.message_id), None)
        if reply is None:
            raise NotWaitingError(f"the held reply {state.message_id} is no longer in session")
        answered = {m.tool_call_id for m in history if m.role == "tool"}
        for call in reply.tool_calls:
            if call.id in answered:
                continue  # saved before a crash
            decision = state.decisions.get(call.id)
            if decision is not None and not decision.get("approved"):
                content = f"rejected: {decision.get('reason') or 'rejected'}"
                meta: dict[str, Any] = {"error": "rejected", "approval": decision}
            else:
                edited = decision.get("arguments") if decision else None
                run_call = ToolCall(call.id, call.name, edited) if edited is not None else call
                outcome = await run_tool(settings.tools, run_call)
                content, meta = outcome.content, dict(outcome.metadata)
                if decision is not None:
                    meta["approval"] = decision
            message = p.message(
                sid, "tool", content, tool_call_id=call.id, name=call.name, metadata=meta
            )
            history.append(await self.store.save_message(message))
        await record_done(self.store, state)
        history = await self._fit(sid, history, True)  # compaction and the token window
        transcript = StoreTranscript(p, sid, history, settings.flush_interval)
        turn = stream_turn(transcript, self._turn_settings(sid))
        async with contextlib.aclosing(turn):
            async for piece in turn:
                yield piece
