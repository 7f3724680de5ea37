"""Conformance: creating, listing, updating and deleting sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from threadline import ApiCall, Checkpoint, NotFoundError, Session, Store, ValidationError
from threadline.ids import new_id
from threadline.queries import SessionCursor
from threadline.testing._support import Conversation, new_conversation


@pytest.mark.asyncio
class SessionConformance:
    """Sessions: create/get, list by user newest first, update, delete cascading."""

    async def test_create_and_get(self, store: Store) -> None:
        session = Session(
            tenant_id=new_id(),
            user_id=new_id(),
            agent_id=new_id(),
            title="Trip planning",
            metadata={"lang": "fr"},
        )
        stored = await store.create_session(session)
        assert stored == session
        assert await store.get_session(session.tenant_id, session.id) == session
        assert await store.create_session(session) == session  # idempotent
        assert await store.get_session(session.tenant_id, new_id()) is None

    async def test_list_by_user_newest_first(self, store: Store) -> None:
        tenant, alice, bob = new_id(), new_id(), new_id()
        made = []
        for i in range(4):
            conv = await new_conversation(store, tenant_id=tenant, user_id=alice, title=f"a{i}")
            made.append(conv)
            await conv.add("user", "hello")
            await asyncio.sleep(0.002)
        await new_conversation(store, tenant_id=tenant, user_id=bob)
        await made[1].add("user", "bump")  # most recently active now
        listed = await store.list_sessions(tenant, user_id=alice)
        assert [s.id for s in listed] == [made[1].id, made[3].id, made[2].id, made[0].id]
        assert len(await store.list_sessions(tenant)) == 5
        page = await store.list_sessions(tenant, user_id=alice, limit=2, offset=1)
        assert [s.id for s in page] == [made[3].id, made[2].id]

    async def test_update_title_and_metadata(self, store: Store) -> None:
        conv = await new_conversation(store, title="old")
        changed = attrs.evolve(conv.session, title="new", metadata={"pinned": True})
        updated = await store.update_session(changed)
        assert (updated.title, updated.metadata) == ("new", {"pinned": True})
        assert updated.updated_at >= conv.session.updated_at
        assert await store.get_session(conv.tenant_id, conv.id) == updated
        with pytest.raises(NotFoundError):
            await store.update_session(Session(tenant_id=conv.tenant_id, title="ghost"))

    async def test_set_updated_at_exactly(self, store: Store) -> None:
        tenant, user = new_id(), new_id()
        old, new = [await new_conversation(store, tenant, user) for _ in range(2)]
        await new.add("user", "hello")
        await old.add("user", "hello")
        kept = await store.get_session(tenant, old.id)
        then = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
        stored = await store.set_session_updated_at(tenant, new.id, then)
        assert stored.updated_at == then and stored.updated_at.utcoffset() == timedelta(0)
        assert stored == await store.get_session(tenant, new.id)
        assert stored == attrs.evolve(new.session, updated_at=then)
        assert [s.id for s in await store.list_sessions(tenant)] == [old.id, new.id]
        assert await store.delete_sessions_before(tenant, then, dry_run=True) == 0
        tick = then + timedelta(microseconds=1)
        assert await store.delete_sessions_before(tenant, tick, dry_run=True) == 1
        later = datetime.now(timezone.utc) + timedelta(days=3)
        assert (await store.set_session_updated_at(tenant, new.id, later)).updated_at == later
        assert [s.id for s in await store.list_sessions(tenant)] == [new.id, old.id]
        await store.set_session_updated_at(tenant, new.id, then)
        await new.add("assistant", "appends move it forward again")
        moved = await store.get_session(tenant, new.id)
        assert moved is not None and moved.updated_at > then
        with pytest.raises(NotFoundError):
            await store.set_session_updated_at(new_id(), old.id, then)  # another tenant's
        with pytest.raises(NotFoundError):
            await store.set_session_updated_at(tenant, new_id(), then)
        assert await store.get_session(tenant, old.id) == kept

    async def test_delete_cascades(self, store: Store) -> None:
        conv = await new_conversation(store)
        keep = await new_conversation(store, tenant_id=conv.tenant_id)
        await conv.add_round(1, tool=True)
        kept = await keep.add("user", "stay")
        await store.save_api_call(
            ApiCall(tenant_id=conv.tenant_id, session_id=conv.id, model="m", status="success")
        )
        checkpoint = await store.create_checkpoint(
            Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id, node_id="start")
        )
        assert await store.delete_session(conv.tenant_id, conv.id) is True
        assert await store.get_session(conv.tenant_id, conv.id) is None
        assert await store.get_messages(conv.tenant_id, conv.id) == []
        assert await store.count_messages(conv.tenant_id, conv.id) == 0
        assert await store.list_api_calls(conv.tenant_id, conv.id) == []
        assert await store.get_checkpoint(conv.tenant_id, checkpoint.id) is None
        assert await store.list_checkpoints(conv.tenant_id, session_id=conv.id) == []
        assert await store.delete_session(conv.tenant_id, conv.id) is False
        assert await keep.messages() == [kept]

    # -- activity: every write that belongs to a session moves its updated_at ------------

    async def test_every_write_to_a_session_is_activity(self, store: Store) -> None:
        """Checkpoints (tombstones, rollbacks), API calls and message updates count.

        ``list_sessions`` sorts by ``updated_at`` and retention deletes by it, so a
        session written to a moment ago must never look idle.
        """
        tenant, user = new_id(), new_id()
        old = datetime(2020, 1, 1, tzinfo=timezone.utc)
        a, b = [
            await new_conversation(store, tenant, user, created_at=at, updated_at=at)
            for at in (old, old + timedelta(seconds=1))
        ]
        streaming = await a.add("assistant", "half a reply", status="streaming")
        first = await store.create_checkpoint(Checkpoint(tenant_id=tenant, session_id=b.id))

        async def idle_then(conv: Conversation, write: Callable[[], Awaitable[object]]) -> None:
            """Make ``conv`` the idler session, write, and see it move to the top."""
            other = b if conv is a else a
            await store.set_session_updated_at(tenant, conv.id, old)
            await store.set_session_updated_at(tenant, other.id, old + timedelta(seconds=1))
            assert [s.id for s in await store.list_sessions(tenant)] == [other.id, conv.id]
            before = datetime.now(timezone.utc) - timedelta(seconds=5)
            await write()
            after = datetime.now(timezone.utc) + timedelta(seconds=5)
            moved = await store.get_session(tenant, conv.id)
            assert moved is not None and before <= moved.updated_at <= after
            assert [s.id for s in await store.list_sessions(tenant)] == [conv.id, other.id]

        def checkpoint(**fields: Any) -> Callable[[], Awaitable[object]]:
            return lambda: store.create_checkpoint(
                Checkpoint(tenant_id=tenant, session_id=a.id, **fields)
            )

        await idle_then(a, checkpoint(node_id="plan"))
        latest = await store.get_latest_checkpoint(tenant, a.id)
        assert latest is not None
        await idle_then(a, checkpoint(parent_id=latest.id, tombstone=True))
        await idle_then(a, checkpoint(parent_id=latest.id, node_id="rolled back"))
        await idle_then(
            b,
            lambda: store.create_checkpoint(
                Checkpoint(tenant_id=tenant, session_id=b.id, parent_id=first.id)
            ),
        )
        await idle_then(
            a,
            lambda: store.save_api_call(
                ApiCall(tenant_id=tenant, session_id=a.id, model="m", status="success")
            ),
        )
        await idle_then(
            a,
            lambda: store.update_message(
                attrs.evolve(streaming, content="a whole reply", status="complete")
            ),
        )
        await a.add("assistant", "cut off", status="streaming")
        await idle_then(a, lambda: store.interrupt_streaming(tenant, a.id))
        await idle_then(b, lambda: b.add("user", "hello"))
        await idle_then(b, lambda: store.save_messages([b.message("user", "x")]))
        await idle_then(b, lambda: store.update_session(attrs.evolve(b.session, title="t")))

    async def test_activity_never_moves_updated_at_back(self, store: Store) -> None:
        """A write after ``updated_at`` was set ahead (by copy or import) leaves it there."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        ahead = datetime.now(timezone.utc) + timedelta(days=3)
        await store.set_session_updated_at(t, s, ahead)
        message = await conv.add("user", "hello", status="streaming")
        checkpoint = await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=s))
        await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, parent_id=checkpoint.id, tombstone=True)
        )
        await store.save_api_call(ApiCall(tenant_id=t, session_id=s, model="m", status="success"))
        await store.update_message(attrs.evolve(message, content="hello!"))
        await store.interrupt_streaming(t, s)
        await store.update_session(attrs.evolve(conv.session, title="renamed"))
        stored = await store.get_session(t, s)
        assert stored is not None and stored.updated_at == ahead

    async def test_housekeeping_is_not_activity(self, store: Store) -> None:
        """Pruning checkpoints and reads leave ``updated_at`` as it was."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        parent = None
        for _ in range(3):
            parent = await store.create_checkpoint(
                Checkpoint(
                    tenant_id=t, session_id=s, parent_id=None if parent is None else parent.id
                )
            )
        old = datetime(2020, 1, 1, tzinfo=timezone.utc)
        await store.set_session_updated_at(t, s, old)
        assert await store.prune_checkpoints(t, s, keep=1) == 2
        assert await store.interrupt_streaming(t, s) == 0  # nothing was streaming
        await store.list_checkpoints(t, session_id=s)
        stored = await store.get_session(t, s)
        assert stored is not None and stored.updated_at == old

    # -- orders with ties are defined ------------------------------------------------------

    async def test_list_sessions_breaks_ties_by_id_descending(self, store: Store) -> None:
        """Sessions with the same ``updated_at`` list by ``id`` descending, so pages neither
        repeat nor skip a session (``updated_at`` desc, then ``id`` desc)."""
        tenant, user = new_id(), new_id()
        then = datetime(2023, 3, 3, 3, 3, 3, 333333, tzinfo=timezone.utc)
        tied = [await new_conversation(store, tenant, user) for _ in range(8)]
        newer = await new_conversation(store, tenant, user)
        older = await new_conversation(store, tenant)
        for conv in tied:
            await store.set_session_updated_at(tenant, conv.id, then)
        await store.set_session_updated_at(tenant, newer.id, then + timedelta(seconds=1))
        await store.set_session_updated_at(tenant, older.id, then - timedelta(seconds=1))
        by_id = sorted((c.id for c in tied), reverse=True)
        listed = [s.id for s in await store.list_sessions(tenant)]
        assert listed == [newer.id, *by_id, older.id]
        paged = [
            s.id
            for offset in range(0, 10, 3)
            for s in await store.list_sessions(tenant, limit=3, offset=offset)
        ]
        assert paged == listed
        mine = [s.id for s in await store.list_sessions(tenant, user_id=user, limit=4, offset=2)]
        assert mine == by_id[1:5]

    async def test_keyset_pages_neither_repeat_nor_skip(self, store: Store) -> None:
        """Pages read by cursor (``after``) continue exactly where the last one ended, under
        ties of ``updated_at`` and with sessions inserted or bumped between pages."""
        tenant, user = new_id(), new_id()
        then = datetime(2023, 4, 4, 4, 4, 4, 444444, tzinfo=timezone.utc)
        convs = [await new_conversation(store, tenant, user if i % 2 else None) for i in range(9)]
        for i, conv in enumerate(convs):  # three ties of three
            await store.set_session_updated_at(tenant, conv.id, then - timedelta(seconds=i // 3))
        first = await store.list_sessions(tenant, limit=4)
        expected = [s.id for s in await store.list_sessions(tenant)]
        assert [s.id for s in first] == expected[:4]
        # Between pages: a new session (newest: before the cursor), one older than them all
        # (after the cursor), and a listed session bumped to now.
        await new_conversation(store, tenant)
        late = await new_conversation(store, tenant)
        await store.set_session_updated_at(tenant, late.id, then - timedelta(days=1))
        await store.set_session_updated_at(tenant, first[0].id, then + timedelta(days=1))
        rest: list[str] = []
        cursor = SessionCursor.of(first[-1])
        while True:
            page = await store.list_sessions(tenant, limit=2, after=str(cursor))
            rest += [s.id for s in page]
            if len(page) < 2:
                break
            cursor = SessionCursor.of(page[-1])
        assert rest == [*expected[4:], late.id]
        odd = [s.id for s in await store.list_sessions(tenant, user_id=user)]
        cut = SessionCursor.of((await store.list_sessions(tenant, user_id=user, limit=1))[0])
        after = await store.list_sessions(tenant, user_id=user, after=cut)
        assert [s.id for s in after] == odd[1:]
        assert [s.id async for s in store.iter_sessions(tenant, page=2)] == [
            s.id for s in await store.list_sessions(tenant)
        ]

    async def test_cursor_of_another_tenant_yields_nothing_of_theirs(self, store: Store) -> None:
        """A cursor is only a position: used by another tenant it lists that tenant's own."""
        mine, theirs = new_id(), new_id()
        kept = [await new_conversation(store, mine) for _ in range(3)]
        other = [await new_conversation(store, theirs) for _ in range(3)]
        cursor = SessionCursor(datetime(9999, 1, 1, tzinfo=timezone.utc), other[0].id)
        listed = {s.id for s in await store.list_sessions(mine, after=cursor)}
        assert listed == {c.id for c in kept}
        from_theirs = SessionCursor.of((await store.list_sessions(theirs, limit=1))[0])
        assert not {s.id for s in await store.list_sessions(mine, after=from_theirs)} & {
            c.id for c in other
        }
        with pytest.raises(ValidationError):
            await store.list_sessions(mine, after="not-a-cursor")

    async def test_list_checkpoints_orders_sessions_created_together_by_id(
        self, store: Store
    ) -> None:
        """All of a tenant's checkpoints: sessions by ``created_at``, ties by ``id``, then
        each session's checkpoints by version."""
        tenant = new_id()
        at = datetime(2022, 2, 2, tzinfo=timezone.utc)
        convs = [
            await new_conversation(store, tenant, created_at=at, updated_at=at) for _ in range(5)
        ]
        made = {}
        for conv in reversed(convs):
            made[conv.id] = [
                await store.create_checkpoint(
                    Checkpoint(tenant_id=tenant, session_id=conv.id, node_id=str(i))
                )
                for i in range(2)
            ]
        expected = [c for sid in sorted(made) for c in made[sid]]
        assert await store.list_checkpoints(tenant) == expected
