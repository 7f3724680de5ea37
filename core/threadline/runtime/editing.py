"""Regenerate a reply and edit a question, keeping what they replace as a branch.

Before anything is deleted, the session's whole current history is forked into a branch
session (:meth:`threadline.Store.fork_session`, ``forked_from`` + ``reason`` in its
metadata); then the replaced tail is deleted from the session (seqs are never reused)
and a new reply streams as in :meth:`~threadline.runtime.agent.Agent.chat_stream`. The
session keeps its id; :meth:`threadline.Store.list_branches` lists the earlier versions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from threadline.errors import ConflictError, NotFoundError, ValidationError
from threadline.ids import IdLike, check_id
from threadline.models import Message, Session, check_text
from threadline.runtime.settings import AgentSettings, PersistencePlugin
from threadline.runtime.transcript import StoreTranscript
from threadline.runtime.turn import TurnSettings, stream_turn
from threadline.store.branching import find_message
from threadline.storekit.window import select_window

if TYPE_CHECKING:
    from threadline.store import Store

__all__ = ["BRANCH_REASON", "EditingFlow"]

BRANCH_REASON = "branch_reason"
"""Session metadata key of a branch kept by an edit: ``"regenerate"`` or ``"edit"``."""


class EditingFlow:
    """``regenerate`` and ``edit`` (a mixin of :class:`~threadline.runtime.agent.Agent`)."""

    settings: AgentSettings
    persistence: PersistencePlugin
    session_id: str
    _opened: set[str]

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...

        async def open_session(self, session_id: IdLike | None = None) -> Session: ...

        def _turn_settings(self, sid: str) -> TurnSettings: ...

        async def _refuse_while_held(self, sid: str) -> None: ...

        async def _load(self, sid: str) -> tuple[list[Message], bool]: ...

        async def _fit(self, sid: str, history: list[Message], complete: bool) -> list[Message]: ...

        def chat_stream(
            self,
            text: str,
            *,
            session_id: IdLike | None = None,
            metadata: Mapping[str, Any] | None = None,
        ) -> AsyncIterator[str]: ...

    async def regenerate(self, session_id: IdLike | None = None) -> str:
        """Replace the last reply of the session with a new one; return its text."""
        return "".join([p async for p in self.regenerate_stream(session_id)])

    async def regenerate_stream(self, session_id: IdLike | None = None) -> AsyncIterator[str]:
        """Replace the last round's reply (with its tool calls and results) and stream the
        new one. The replaced messages stay in a branch session (``list_branches``).

        :raises NotFoundError: the session has no user message to answer.
        :raises ConflictError: a reply of the session is still streaming.
        """
        sid = await self._editable(session_id)
        tenant = self.persistence.tenant_id
        last_round = await self.store.load_window(tenant, sid, 1)
        question = next((m for m in reversed(last_round) if m.role == "user"), None)
        if question is None:
            raise NotFoundError(f"session {sid} has no question to answer again")
        _refuse_streaming(sid, last_round)
        if last_round[-1].id != question.id:
            await self._keep_branch(sid, last_round[-1], "regenerate")
            await self.store.delete_messages(tenant, sid, after_seq=question.seq or 0)
        window, complete = await self._load(sid)  # the window and token budget of a turn
        history = select_window(window, self.settings.window)
        history.sort(key=lambda m: m.role != "system")
        history = await self._fit(sid, history, complete)
        turn = stream_turn(
            StoreTranscript(self.persistence, sid, history, self.settings.flush_interval),
            self._turn_settings(sid),
            request_message_id=question.id,
        )
        async with contextlib.aclosing(turn):
            async for piece in turn:
                yield piece

    async def edit(self, session_id: IdLike | None, message_id: IdLike, new_text: str) -> str:
        """Replace a user message with ``new_text`` and answer it again; return the reply."""
        parts = [p async for p in self.edit_stream(session_id, message_id, new_text)]
        return "".join(parts)

    async def edit_stream(
        self, session_id: IdLike | None, message_id: IdLike, new_text: str
    ) -> AsyncIterator[str]:
        """Replace the user message ``message_id`` (and everything after it) by a new user
        message with ``new_text`` (same metadata) and stream the reply. The replaced
        messages stay in a branch session (``list_branches``).

        :raises NotFoundError: no such message in the session.
        :raises ValidationError: the message is not the user's.
        :raises ConflictError: a reply of the session is still streaming.
        """
        check_text(new_text, "new_text")
        sid = await self._editable(session_id)
        tenant = self.persistence.tenant_id
        target = await find_message(self.store, tenant, sid, check_id(message_id, "message_id"))
        if target.role != "user":
            raise ValidationError(f"message {target.id} is a {target.role} message, not the user's")
        tail = await self.store.read_messages(tenant, sid, after_seq=(target.seq or 1) - 1)
        _refuse_streaming(sid, tail)
        await self._keep_branch(sid, tail[-1], "edit")
        await self.store.delete_messages(tenant, sid, after_seq=(target.seq or 1) - 1)
        turn = self.chat_stream(new_text, session_id=sid, metadata=target.metadata)
        async with contextlib.aclosing(turn):  # type: ignore[type-var]
            async for piece in turn:
                yield piece

    async def _editable(self, session_id: IdLike | None) -> str:
        sid = check_id(session_id or self.session_id, "session_id")
        if await self.store.get_session(self.persistence.tenant_id, sid) is None:
            raise NotFoundError(f"no session {sid}")
        if sid not in self._opened:
            await self.open_session(sid)
        if self.settings.approval.active(self.settings.tools):
            await self._refuse_while_held(sid)
        return sid

    async def _keep_branch(self, sid: str, last: Message, reason: str) -> Session:
        return await self.store.fork_session(
            self.persistence.tenant_id, sid, at=last.id, metadata={BRANCH_REASON: reason}
        )


def _refuse_streaming(sid: str, messages: list[Message]) -> None:
    if any(m.status == "streaming" for m in messages):
        raise ConflictError(f"a reply of session {sid} is still streaming; wait for it to end")
