"""Conformance of the optional shortcut hooks (``threadline.hookspecs.SHORTCUT_HOOKS``).

A store need not have them: each test skips on a store whose stack does not implement
its hook. One that does must answer exactly as the long way round would.
"""

from __future__ import annotations

import pytest

from threadline.errors import ValidationError
from threadline.ids import new_id
from threadline.models import Checkpoint
from threadline.plugins.dispatch import Binding
from threadline.store import Store
from threadline.testing._support import Conversation, new_conversation

__all__ = ["ShortcutConformance"]

_HEAD = "threadline_read_checkpoint_head"
_APPEND = "threadline_append_checkpoint_state"


def _needs(store: Store, hook: str) -> Binding:
    if not store.implements(hook):
        pytest.skip(f"the store does not implement the optional {hook}")
    return Binding(store.pm, store.primary)


async def _checkpoints(conv: Conversation, agents: list[str | None]) -> list[Checkpoint]:
    made: list[Checkpoint] = []
    for i, agent in enumerate(agents):
        message = await conv.add("user", f"step {i}")
        history = (*(made[-1].history if made else ()), message)
        made.append(
            await conv.store.create_checkpoint(
                Checkpoint(
                    tenant_id=conv.tenant_id,
                    session_id=conv.id,
                    agent_id=agent,
                    node_id=f"n{i}",
                    history=history,
                    state={"pw": [], "n": i},
                    parent_id=made[-1].id if made else None,
                )
            )
        )
    return made


class ShortcutConformance:
    """``read_checkpoint_head`` and ``append_checkpoint_state``, where a store has them."""

    async def test_head_is_the_record_a_chain_read_starts_with(self, store: Store) -> None:
        hooks = _needs(store, _HEAD)
        conv = await new_conversation(store)
        a, b = new_id(), new_id()
        made = await _checkpoints(conv, [a, b, a, None])
        for checkpoint in made:
            head = await hooks.call(
                _HEAD, tenant_id=conv.tenant_id, checkpoint_id=checkpoint.id,
                session_id=None, agent_id=None,
            )  # fmt: skip
            chain = await hooks.call(
                "threadline_read_checkpoint_records",
                tenant_id=conv.tenant_id, checkpoint_id=checkpoint.id, chain=True,
            )  # fmt: skip
            assert head == chain[0]
        latest = await hooks.call(
            _HEAD, tenant_id=conv.tenant_id, checkpoint_id=None, session_id=conv.id, agent_id=None
        )
        assert latest is not None and latest.id == made[-1].id
        of_a = await hooks.call(
            _HEAD, tenant_id=conv.tenant_id, checkpoint_id=None, session_id=conv.id, agent_id=a
        )
        assert of_a is not None and of_a.id == made[2].id
        assert of_a.checkpoint.state == {"pw": [], "n": 2}

    async def test_head_of_nothing_and_of_another_tenant_is_none(self, store: Store) -> None:
        hooks = _needs(store, _HEAD)
        conv = await new_conversation(store)
        made = await _checkpoints(conv, [None])
        other = new_id()
        asks = [
            {"tenant_id": other, "checkpoint_id": made[0].id, "session_id": None},
            {"tenant_id": other, "checkpoint_id": None, "session_id": conv.id},
            {"tenant_id": conv.tenant_id, "checkpoint_id": new_id(), "session_id": None},
            {"tenant_id": conv.tenant_id, "checkpoint_id": None, "session_id": new_id()},
        ]
        for ask in asks:
            assert await hooks.call(_HEAD, agent_id=None, **ask) is None, ask

    async def test_append_adds_to_the_list_and_keeps_the_history(self, store: Store) -> None:
        hooks = _needs(store, _APPEND)
        conv = await new_conversation(store)
        first, second = await _checkpoints(conv, [None, None])
        item = {"task": "t1", "writes": [["messages", "ünïcode ✓"]], "n": 1}
        assert await store.append_checkpoint_state(conv.tenant_id, first.id, "pw", item)
        assert await store.append_checkpoint_state(conv.tenant_id, first.id, "pw", [2, None])
        got = await store.get_checkpoint(conv.tenant_id, first.id)
        assert got is not None and got.state == {"pw": [item, [2, None]], "n": 0}
        assert got.history == first.history and got.version == first.version
        # its child's delta still builds on it, in a store opened afresh too
        child = await store.get_checkpoint(conv.tenant_id, second.id)
        assert child is not None and child.history == second.history
        assert child.state == {"pw": [], "n": 1}
        records = await hooks.call(
            "threadline_read_checkpoint_records",
            tenant_id=conv.tenant_id, checkpoint_id=second.id, chain=True,
        )  # fmt: skip
        assert [r.id for r in records[:2]] == [second.id, first.id]

    async def test_append_refuses_what_it_cannot_append_to(self, store: Store) -> None:
        _needs(store, _APPEND)
        conv = await new_conversation(store)
        (made,) = await _checkpoints(conv, [None])
        append = store.append_checkpoint_state
        assert not await append(conv.tenant_id, made.id, "missing", 1)  # no such list
        assert not await append(conv.tenant_id, made.id, "n", 1)  # not a list
        assert not await append(conv.tenant_id, new_id(), "pw", 1)  # no such checkpoint
        assert not await append(new_id(), made.id, "pw", 1)  # another tenant's
        with pytest.raises(ValidationError):
            await append(conv.tenant_id, made.id, "p w'", 1)
        with pytest.raises(ValidationError):
            await append(conv.tenant_id, made.id, "pw", {"not json": object()})
        got = await store.get_checkpoint(conv.tenant_id, made.id)
        assert got is not None and got.state == {"pw": [], "n": 0}
