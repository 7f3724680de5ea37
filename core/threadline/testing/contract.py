"""Conformance: the record primitives under concurrent writes, activity, message deletion.

The core's defaults read, plan and then write through a store's required hooks; these
tests put a write *between* the read and the write (through :class:`Interleaved`, a view
of the store's hooks that runs a step just before one hook) and check that the store's
primitives refuse or skip what went stale, so nothing is lost or undone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from threadline import Checkpoint, Message, Store, ToolCall, ValidationError
from threadline.ids import new_id
from threadline.plugins.dispatch import Binding
from threadline.storekit.defaults import DEFAULTS
from threadline.testing._support import Conversation, new_conversation


class Interleaved:
    """``store``'s hooks as a core default calls them, running ``step`` once just before
    the first call of ``hook`` (a concurrent writer getting in between)."""

    def __init__(self, store: Store, hook: str, step: Callable[[], Awaitable[Any]]) -> None:
        self.binding = Binding(store.pm, store.primary)
        self.plugin = self.binding.plugin
        self.state = self.binding.state
        self.hook, self.step, self.fired = hook, step, False

    def has(self, hook: str) -> bool:
        return self.binding.has(hook)

    async def call(self, hook: str, **kwargs: Any) -> Any:
        if hook == self.hook and not self.fired:
            self.fired = True
            await self.step()
        return await self.binding.call(hook, **kwargs)

    async def default(self, hook: str, **kwargs: Any) -> Any:
        """Run the core default of ``hook`` over these hooks."""
        return await DEFAULTS[hook].function(self, **kwargs)


async def _said_by(conv: Conversation, user_id: str, content: str) -> Message:
    """A user message of ``user_id`` (not the session's owner) in ``conv``."""
    return await conv.store.save_message(
        attrs.evolve(conv.message("user", content), user_id=user_id)
    )


async def _chain_of(store: Store, conv: Conversation, steps: int) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    history: list[Message] = []
    for i in range(steps):
        history.append(await conv.add("user" if i % 2 == 0 else "assistant", f"step {i}"))
        out.append(
            await store.create_checkpoint(
                Checkpoint(
                    tenant_id=conv.tenant_id,
                    session_id=conv.id,
                    history=tuple(history),
                    parent_id=out[-1].id if out else None,
                    node_id=f"n{i}",
                )
            )
        )
    return out


@pytest.mark.asyncio
class ContractConformance:
    # -- restore in one call -----------------------------------------------------------------

    async def test_latest_record_comes_with_its_chain(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await _chain_of(store, conv, 5)
        records = await Binding(store.pm, store.primary).call(
            "threadline_list_checkpoint_records",
            tenant_id=conv.tenant_id,
            session_id=conv.id,
            agent_id=None,
            latest=True,
        )
        ids = [r.id for r in records]
        assert ids[0] == made[-1].id  # the newest first, complete
        assert records[0].checkpoint.node_id == "n4"
        assert ids == [c.id for c in reversed(made)][: len(ids)]  # then its ancestors
        assert records[-1].depth == 0  # back to the snapshot
        latest = await store.get_latest_checkpoint(conv.tenant_id, conv.id)
        assert latest is not None and latest.history == made[-1].history

    # -- stale plans -------------------------------------------------------------------------

    async def test_a_checkpoint_written_during_a_prune_keeps_its_base(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await _chain_of(store, conv, 4)
        late: list[Checkpoint] = []

        async def write_on_a_doomed_base() -> None:
            late.append(
                await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=conv.tenant_id,
                        session_id=conv.id,
                        node_id="late",
                        history=(*made[0].history, conv.message("user", "late")),
                        parent_id=made[0].id,
                    )
                )  # fmt: skip
            )

        hooks = Interleaved(store, "threadline_rewrite_checkpoint_records", write_on_a_doomed_base)
        gone = await hooks.default(
            "threadline_prune_checkpoints",
            tenant_id=conv.tenant_id, session_id=conv.id, keep=2, dry_run=False,
        )  # fmt: skip
        assert hooks.fired and gone == 3  # planned again with the late checkpoint in it
        kept = await store.list_checkpoints(conv.tenant_id, session_id=conv.id)
        assert [c.id for c in kept] == [made[3].id, late[0].id]
        fresh = await store.get_checkpoint(conv.tenant_id, late[0].id)
        assert fresh is not None and fresh.history == late[0].history

    async def test_a_checkpoint_written_during_an_erasure_is_redacted(self, store: Store) -> None:
        owner, other = new_id(), new_id()
        conv = await new_conversation(store, user_id=owner)
        tenant = conv.tenant_id
        theirs = await _said_by(conv, other, "secret of the other user")
        first = await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=conv.id, history=(theirs,), node_id="a")
        )
        late: list[Checkpoint] = []

        async def write_on_it() -> None:
            more = await _said_by(conv, other, "more secrets")
            late.append(
                await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=tenant,
                        session_id=conv.id,
                        node_id="b",
                        history=(theirs, more),
                        parent_id=first.id,
                    )
                )  # fmt: skip
            )

        hooks = Interleaved(store, "threadline_rewrite_checkpoint_records", write_on_it)
        counts = await hooks.default(
            "threadline_erase_user", tenant_id=tenant, user_id=other, dry_run=False
        )
        assert hooks.fired and counts["checkpoints_redacted"] == 2
        for c in await store.list_checkpoints(tenant, session_id=conv.id):
            assert all(m.user_id != other and "secret" not in m.content for m in c.history)
        again = await store.get_checkpoint(tenant, late[0].id)  # no cache serves it either
        assert again is not None and all("secret" not in m.content for m in again.history)

    async def test_a_stale_rewrite_plan_is_refused_whole(self, store: Store) -> None:
        from threadline.storekit.records import RecordRewrite, StaleRecordError

        conv = await new_conversation(store)
        made = await _chain_of(store, conv, 3)
        binding = Binding(store.pm, store.primary)
        with pytest.raises(StaleRecordError):
            await binding.call(
                "threadline_rewrite_checkpoint_records",
                tenant_id=conv.tenant_id, session_id=conv.id,
                plan=RecordRewrite((), [made[0].id], {made[0].id: 1}),
            )  # fmt: skip
        assert len(await store.list_checkpoints(conv.tenant_id, session_id=conv.id)) == 3

    # -- activity ----------------------------------------------------------------------------

    async def test_erasure_is_housekeeping_not_activity(self, store: Store) -> None:
        owner, other = new_id(), new_id()
        conv = await new_conversation(store, user_id=owner)
        await _said_by(conv, other, "hello")
        await conv.add("assistant", "hi")
        before = await store.get_session(conv.tenant_id, conv.id)
        await asyncio.sleep(0.01)
        counts = await store.erase_user(conv.tenant_id, other)
        assert counts["messages_redacted"] == 1
        after = await store.get_session(conv.tenant_id, conv.id)
        assert before is not None and after is not None
        assert after.updated_at == before.updated_at

    # -- interrupt_streaming -----------------------------------------------------------------

    async def test_interrupting_never_undoes_a_reply_finished_meanwhile(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("user", "question")
        reply = await conv.add("assistant", "partial", status="streaming")

        async def finish() -> None:
            await store.update_message(attrs.evolve(reply, content="whole", status="complete"))

        hooks = Interleaved(store, "threadline_rewrite_messages", finish)
        changed = await hooks.default(
            "threadline_interrupt_streaming", tenant_id=conv.tenant_id, session_id=conv.id
        )
        assert hooks.fired and changed == 0
        stored = (await conv.messages())[-1]
        assert (stored.content, stored.status) == ("whole", "complete")


@pytest.mark.asyncio
class MessageDeletionConformance:
    """``delete_messages``: a session's last messages go, seqs are never reused."""

    async def test_delete_messages_pops_the_last_round_and_seqs_go_on(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("system", "be brief")
        first = await conv.add_round(1, tool=True)
        second = await conv.add_round(2, tool=True)
        t, s = conv.tenant_id, conv.id
        before = await store.get_session(t, s)
        await asyncio.sleep(0.01)
        assert await store.delete_messages(t, s, after_seq=first[-1].seq or 0) == len(second)
        kept = await conv.messages()
        assert [m.id for m in kept][1:] == [m.id for m in first]
        assert await store.count_messages(t, s) == len(kept)
        assert await store.load_window(t, s, 1) == kept
        session = await store.get_session(t, s)
        assert session is not None and before is not None
        assert session.updated_at > before.updated_at  # a deletion is activity
        # seqs are never reused: the next message continues after the highest ever given
        again = await conv.add_round(3, tool=True)
        assert again[0].seq == (second[-1].seq or 0) + 1
        assert [m.seq for m in await conv.messages()] == [m.seq for m in kept + again]
        assert await store.count_messages(t, s) == len(kept) + len(again)
        assert [m.id for m in await store.load_window(t, s, 1)] == [kept[0].id] + [
            m.id for m in again
        ]
        assert await store.get_messages(t, s, after_seq=second[0].seq or 0) == again
        # the deleted messages' tool call ids are free again; an orphan never appears
        window = await store.load_window(t, s, 2)
        assert [m.id for m in window] == [m.id for m in kept + again]

    async def test_delete_messages_pops_one_and_clears_all(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1) + await conv.add_round(2)
        t, s = conv.tenant_id, conv.id
        assert await store.delete_messages(t, s, after_seq=made[-1].seq or 0) == 0
        assert await store.delete_messages(t, s, after_seq=(made[-1].seq or 0) - 1) == 1
        assert await conv.messages() == made[:-1]
        # a deleted message's id may be saved again: a new message with a new seq
        back = await store.save_message(attrs.evolve(made[-1], seq=None))
        assert back.id == made[-1].id and back.seq == (made[-1].seq or 0) + 1
        assert await store.delete_messages(t, s, after_seq=0) == len(made)
        assert await conv.messages() == []
        assert await store.count_messages(t, s) == 0
        assert await store.load_window(t, s, 3) == []
        assert await store.get_session(t, s) is not None  # the session stays
        fresh = await conv.add("user", "after")
        assert fresh.seq == (back.seq or 0) + 1

    async def test_delete_messages_is_scoped_to_the_tenant_and_validates(
        self, store: Store
    ) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1)
        assert await store.delete_messages(new_id(), conv.id, after_seq=0) == 0
        assert await store.delete_messages(conv.tenant_id, new_id(), after_seq=0) == 0
        for bad in (-1, "1", None, True):
            with pytest.raises(ValidationError):
                await store.delete_messages(conv.tenant_id, conv.id, after_seq=bad)  # type: ignore[arg-type]
        assert await conv.messages() == made

    async def test_a_deleted_tool_round_can_be_run_again(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add_round(1, tool=True)
        t, s = conv.tenant_id, conv.id
        call = ToolCall(id="call-" + new_id(), name="lookup", arguments={})
        asked = await conv.add("user", "look it up")
        await conv.add("assistant", "", tool_calls=[call])
        await conv.add("tool", "first result", tool_call_id=call.id, name="lookup")
        assert await store.delete_messages(t, s, after_seq=asked.seq or 0) == 2
        # the same call id again (a retried round): the indexes hold only the new rows
        again = [
            await conv.add("assistant", "", tool_calls=[call]),
            await conv.add("tool", "second result", tool_call_id=call.id, name="lookup"),
            await conv.add("assistant", "done"),
        ]
        window = await store.load_window(t, s, 1)
        assert [m.id for m in window] == [asked.id] + [m.id for m in again]
        assert window[2].content == "second result"
        assert await store.count_messages(t, s) == len(await conv.messages()) == 8
