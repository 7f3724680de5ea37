"""A graph session's conversation in the messages table, kept consistent with its checkpoints.

Each checkpoint a :class:`~threadline.graph.storage.StoreBackend` saves holds the run's whole
history; after saving it, :class:`MessageMirror` makes the session's stored messages end with
that history (matched by message id): messages of the history not stored yet are appended,
stored ones whose content or status changed are updated, and stored messages after the
common part (what a rollback undid, or a history a node replaced) are deleted. A run whose
first message is not stored yet is a new run: its messages follow the earlier runs'. So
``sessions show``, export, erasure and the UI see a graph conversation like a chat one.

The checkpoint stays the truth: a crash between the two writes leaves the table behind, and
the next checkpoint brings it up to date. A backend reads a session's messages once, then
works from what it wrote while the session's newest message is still the one it knows
(one indexed read per checkpoint); run a session once at a time, as the graph agent requires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs

from threadline.models import Checkpoint, Message
from threadline.store import Store

__all__ = ["MessageMirror"]


def _same(stored: Message, wanted: Message) -> bool:
    return (stored.content, stored.status, stored.tool_calls, stored.metadata) == (
        wanted.content,
        wanted.status,
        wanted.tool_calls,
        wanted.metadata,
    )


class MessageMirror:
    """Keeps sessions' stored messages equal to their latest checkpoint's history."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stored: dict[tuple[str, str], list[Message]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def sync(self, checkpoint: Checkpoint) -> None:
        """Make the session's messages end with ``checkpoint.history`` (see the module)."""
        history = [
            attrs.evolve(m, session_id=checkpoint.session_id, tenant_id=checkpoint.tenant_id)
            for m in checkpoint.history
        ]
        if not history:
            return
        key = (checkpoint.tenant_id, checkpoint.session_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            stored = self._stored.get(key)
            if stored is None or not await self._current(key, stored):
                stored = await self.store.get_messages(*key)
            try:
                self._stored[key] = await self._apply(key, stored, history)
            except BaseException:
                self._stored.pop(key, None)  # read again next time
                raise

    async def _current(self, key: tuple[str, str], stored: list[Message]) -> bool:
        """Whether what this process wrote is still the session's tail (one indexed read:
        another writer's rollback or undo changes the newest message or its seq)."""
        newest = await self.store.read_messages(*key, limit=1, newest_first=True)
        mine = stored[-1:]
        return [(m.id, m.seq) for m in newest] == [(m.id, m.seq) for m in mine]

    async def _apply(
        self, key: tuple[str, str], stored: list[Message], history: Sequence[Message]
    ) -> list[Message]:
        tenant, sid = key
        start = next((i for i, m in enumerate(stored) if m.id == history[0].id), len(stored))
        common = 0
        for had, wanted in zip(stored[start:], history):
            if had.id != wanted.id:
                break
            common += 1
        kept = stored[: start + common]
        if len(kept) < len(stored):
            last = kept[-1].seq if kept else 0
            await self.store.delete_messages(tenant, sid, after_seq=last or 0)
        for i in range(start, start + common):
            if not _same(kept[i], history[i - start]):
                kept[i] = await self.store.update_message(
                    attrs.evolve(history[i - start], seq=kept[i].seq)
                )
        todo = [attrs.evolve(m, seq=None) for m in history[common:]]
        if todo:
            kept.extend(await self.store.save_messages(todo))
        return kept
