"""A long checkpoint chain is rebuilt on the event loop in slices: other tasks run between
them (no thread hand-off, no long stall), and the history is the one a whole rebuild gives."""

from __future__ import annotations

import asyncio
from typing import Any

from threadline import Checkpoint, Message, Session
from threadline.ids import new_id
from threadline.storekit.delta import encode_history, rebuild, rebuild_steps
from threadline.storekit.log import INLINE_CHARS, restore
from threadline.storekit.records import CheckpointRecord


def _history(session: Session, n: int) -> list[Message]:
    user = new_id()
    return [
        Message(
            session_id=session.id,
            tenant_id=session.tenant_id,
            role="user" if i % 2 == 0 else "assistant",
            content=f"message {i} " + "word " * 400,
            user_id=user if i % 3 else None,
        )
        for i in range(n)
    ]


def test_rebuild_steps_pause_by_text_and_give_what_rebuild_gives() -> None:
    session = Session(tenant_id=new_id())
    history = _history(session, 120)
    t, s = session.tenant_id, session.id
    snapshot = encode_history(history[:80], tenant_id=t, session_id=s)
    delta = encode_history(history, tenant_id=t, session_id=s, parent=history[:80])
    records = [snapshot.text, delta.text]
    built: list[Message] = []
    pauses = sum(1 for _ in rebuild_steps(built, records, tenant_id=t, session_id=s,
                                          step_chars=INLINE_CHARS))  # fmt: skip
    assert tuple(built) == rebuild(records, tenant_id=t, session_id=s) == tuple(history)
    text = len(snapshot.text) + len(delta.text)
    assert text // INLINE_CHARS <= pauses <= 2 * (text // INLINE_CHARS) + 4


class _Hooks:
    """A store's hooks as the log calls them: a non-blocking store holding one chain."""

    def __init__(self, chain: list[CheckpointRecord]) -> None:
        self.state: dict[str, Any] = {}
        self.chain = chain

    def has(self, hook: str) -> bool:
        return hook == "threadline_list_checkpoint_records"

    async def call(self, hook: str, **kwargs: Any) -> list[CheckpointRecord]:
        return self.chain


async def test_a_restore_of_a_long_chain_lets_other_tasks_run() -> None:
    session = Session(tenant_id=new_id())
    t, s = session.tenant_id, session.id
    history = _history(session, 80)
    chain: list[CheckpointRecord] = []
    parent: list[Message] | None = None
    for step in range(1, 41):
        encoded = encode_history(history[: 2 * step], tenant_id=t, session_id=s, parent=parent,
                                 parent_depth=chain[0].depth if chain else 0)  # fmt: skip
        checkpoint = Checkpoint(tenant_id=t, session_id=s, parent_id=chain[0].id if chain else None)
        chain.insert(0, CheckpointRecord(checkpoint, encoded.text, encoded.depth, step))
        parent = history[: 2 * step]
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    found = await restore(_Hooks(chain), "threadline_list_checkpoint_records", latest=True)
    during = ticks - before
    running = False
    await task
    assert found is not None and found.history == tuple(history)
    # about 80 KiB of record text: the ticker ran between the slices
    assert during >= 4
