"""A chat turn's :class:`~threadline.runtime.turn.Transcript` for an agent: every message
of the turn goes to the store as the agent's tenant, user and agent."""

from __future__ import annotations

from typing import Any

from threadline.models import ApiCall, Message, Role
from threadline.runtime.settings import PersistencePlugin
from threadline.runtime.streaming import ReplyRecorder

__all__ = ["StoreTranscript"]


class StoreTranscript:
    """The history a turn sends, and the writes of its messages, replies and API calls."""

    def __init__(
        self,
        persistence: PersistencePlugin,
        session_id: str,
        history: list[Message],
        flush_interval: float,
    ) -> None:
        self.persistence = persistence
        self.session_id = session_id
        self.history = history
        self.flush_interval = flush_interval

    def messages(self) -> list[Message]:
        return self.history

    def message(self, role: Role, content: str = "", **fields: Any) -> Message:
        return self.persistence.message(self.session_id, role, content, **fields)

    def start_reply(self, template: Message) -> ReplyRecorder:
        return ReplyRecorder(self.persistence.store, template, self.flush_interval)

    async def save(self, message: Message) -> Message:
        return await self.persistence.store.save_message(message)

    def append(self, message: Message) -> None:
        self.history.append(message)

    async def save_api_call(self, api_call: ApiCall) -> None:
        await self.persistence.store.save_api_call(api_call)
