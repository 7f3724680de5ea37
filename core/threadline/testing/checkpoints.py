"""Conformance: checkpoints and their per-session versions."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from threadline import Checkpoint, ConflictError, Message, NotFoundError, Store, ValidationError
from threadline.ids import new_id
from threadline.testing._support import new_conversation


@pytest.mark.asyncio
class CheckpointConformance:
    """Checkpoints: save, get, list, latest, unique versions, tombstones."""

    async def test_save_get_list_latest(self, store: Store) -> None:
        conv = await new_conversation(store)
        agent = new_id()
        history = await conv.add_round(1, tool=True)
        first = Checkpoint(
            tenant_id=conv.tenant_id,
            session_id=conv.id,
            agent_id=agent,
            node_id="plan",
            input={"question": "why?", "n": [1, 2]},
            input_type="dict",
            history=history,
            state={"step": 1, "seen": ["a"]},
            properties={"note": "after start"},
        )
        stored = await store.create_checkpoint(first)
        assert stored.version == 1
        assert attrs.evolve(stored, version=None) == first
        more = history + await conv.add_round(2)
        second = await store.create_checkpoint(
            Checkpoint(
                tenant_id=conv.tenant_id,
                session_id=conv.id,
                agent_id=agent,
                node_id="answer",
                input="text",
                input_type="str",
                history=more,
                parent_id=stored.id,
            )
        )
        assert second.version == 2
        assert await store.get_checkpoint(conv.tenant_id, stored.id) == stored
        assert await store.get_checkpoint(conv.tenant_id, second.id) == second
        assert await store.list_checkpoints(conv.tenant_id, session_id=conv.id) == [stored, second]
        assert await store.list_checkpoints(conv.tenant_id, agent_id=agent) == [stored, second]
        assert await store.list_checkpoints(conv.tenant_id, agent_id=new_id()) == []
        assert await store.get_latest_checkpoint(conv.tenant_id, conv.id) == second
        assert await store.get_checkpoint(conv.tenant_id, new_id()) is None

    async def test_versions_are_per_session(self, store: Store) -> None:
        a = await new_conversation(store)
        b = await new_conversation(store, tenant_id=a.tenant_id)
        for conv in (a, b, a):
            await store.create_checkpoint(Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id))
        versions_a = [c.version for c in await store.list_checkpoints(a.tenant_id, session_id=a.id)]
        versions_b = [c.version for c in await store.list_checkpoints(b.tenant_id, session_id=b.id)]
        assert (versions_a, versions_b) == ([1, 2], [1])
        assert len(await store.list_checkpoints(a.tenant_id)) == 3

    async def test_concurrent_writers_never_collide(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await asyncio.gather(
            *(
                store.create_checkpoint(
                    Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id=f"n{i}")
                )
                for i in range(20)
            )
        )
        assert sorted(c.version or 0 for c in made) == list(range(1, 21))
        listed = await store.list_checkpoints(conv.tenant_id, session_id=conv.id)
        assert [c.version for c in listed] == list(range(1, 21))

    async def test_tombstone_round_trips_and_is_latest(self, store: Store) -> None:
        conv = await new_conversation(store)
        work = await store.create_checkpoint(
            Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id="n")
        )
        tomb = await store.create_checkpoint(
            Checkpoint(
                tenant_id=conv.tenant_id, session_id=conv.id, tombstone=True, parent_id=work.id
            )
        )
        latest = await store.get_latest_checkpoint(conv.tenant_id, conv.id)
        assert latest == tomb and latest is not None and latest.tombstone

    async def test_retry_is_idempotent_and_reuse_conflicts(self, store: Store) -> None:
        conv = await new_conversation(store)
        checkpoint = Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id="n")
        first = await store.create_checkpoint(checkpoint)
        assert await store.create_checkpoint(checkpoint) == first
        with pytest.raises(ConflictError):
            await store.create_checkpoint(attrs.evolve(checkpoint, node_id="other"))
        assert len(await store.list_checkpoints(conv.tenant_id, session_id=conv.id)) == 1

    async def test_missing_parent_or_session_is_refused(self, store: Store) -> None:
        conv = await new_conversation(store)
        with pytest.raises(NotFoundError):
            await store.create_checkpoint(
                Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, parent_id=new_id())
            )
        with pytest.raises(NotFoundError):
            await store.create_checkpoint(Checkpoint(tenant_id=conv.tenant_id, session_id=new_id()))
        assert await store.list_checkpoints(conv.tenant_id, session_id=conv.id) == []

    async def test_unserialisable_state_is_refused_whole(self, store: Store) -> None:
        conv = await new_conversation(store)
        with pytest.raises(ValidationError):
            await store.create_checkpoint(
                Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, state={"x": object()})
            )
        with pytest.raises(ValidationError):
            await store.create_checkpoint(
                Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, input={1, 2})
            )
        assert await store.list_checkpoints(conv.tenant_id, session_id=conv.id) == []
        ok = await store.create_checkpoint(Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id))
        assert ok.version == 1

    async def test_long_runs_branches_and_rollbacks_read_back_whole(self, store: Store) -> None:
        """Stores may keep histories as deltas on the parent; reads give the whole history."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id

        async def save(history: Any, parent: Checkpoint | None, **fields: Any) -> Checkpoint:
            return await store.create_checkpoint(
                Checkpoint(
                    tenant_id=t,
                    session_id=s,
                    history=history,
                    parent_id=None if parent is None else parent.id,
                    **fields,
                )
            )

        made: list[Checkpoint] = []
        history: list[Message] = []
        for i in range(140):  # past the chain bound a store is likely to pick (128)
            history = [*history, conv.message("user", f"q{i}"), conv.message("assistant", f"a{i}")]
            parent = made[-1] if made else None
            made.append(await save(history, parent, node_id="n", state={"i": i}))
        target = made[10]
        made.append(await save(target.history, target, node_id="rolled back"))  # a rollback copy
        made.append(await save([*made[-1].history, conv.message("user", "branch")], made[-1]))
        made.append(await save(made[60].history[:5], made[60]))  # cut short
        made.append(await save([conv.message("system", "a new history")], made[-1]))
        made.append(await save(made[-1].history, None, tombstone=True))  # a fresh run's end
        for checkpoint in [*made[::9], *made[-6:]]:
            assert await store.get_checkpoint(t, checkpoint.id) == checkpoint
        assert await store.list_checkpoints(t, session_id=s) == made
        assert await store.get_latest_checkpoint(t, s) == made[-1]
