"""Conformance: retention (erase a user, prune checkpoints, delete old sessions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from threadline import (
    ApiCall,
    Checkpoint,
    Message,
    NotFoundError,
    Store,
    ToolCall,
    ValidationError,
)
from threadline.ids import new_id
from threadline.testing._support import Conversation, new_conversation


async def _fill(store: Store, conv: Conversation, checkpoints: int = 2) -> None:
    """Two rounds, an API call and a few checkpoints in ``conv``."""
    history = await conv.add_round(1, tool=True) + await conv.add_round(2)
    await store.save_api_call(
        ApiCall(
            session_id=conv.id,
            tenant_id=conv.tenant_id,
            user_id=conv.session.user_id,
            model="m",
            status="success",
        )
    )
    parent: Checkpoint | None = None
    for i in range(checkpoints):
        parent = await store.create_checkpoint(
            Checkpoint(
                tenant_id=conv.tenant_id,
                session_id=conv.id,
                history=history[: i + 1],
                parent_id=None if parent is None else parent.id,
                node_id=f"n{i}",
            )
        )


async def _snapshot(store: Store, conv: Conversation) -> tuple[Any, ...]:
    t, s = conv.tenant_id, conv.id
    return (
        await store.get_session(t, s),
        await store.get_messages(t, s),
        await store.list_api_calls(t, s),
        await store.list_checkpoints(t, session_id=s),
    )


@pytest.mark.asyncio
class RetentionConformance:
    """Retention: erase a user's data, prune checkpoints, delete sessions by age."""

    # -- erase_user ---------------------------------------------------------------------

    async def test_erase_user_removes_exactly_that_users_data(self, store: Store) -> None:
        tenant, user = new_id(), new_id()
        mine = [await new_conversation(store, tenant, user) for _ in range(2)]
        neighbour = await new_conversation(store, tenant)  # another user, same tenant
        elsewhere = await new_conversation(store, user_id=user)  # same user id, other tenant
        for conv in (*mine, neighbour, elsewhere):
            await _fill(store, conv, checkpoints=3)
        kept = [await _snapshot(store, c) for c in (neighbour, elsewhere)]
        expected = {
            "sessions": 2,
            "messages": 12,
            "messages_redacted": 0,
            "api_calls": 2,
            "checkpoints": 6,
            "checkpoints_redacted": 0,
        }

        before = [await _snapshot(store, c) for c in mine]
        assert await store.erase_user(tenant, user, dry_run=True) == expected
        assert [await _snapshot(store, c) for c in mine] == before

        assert await store.erase_user(tenant, user) == expected
        for conv in mine:
            assert await store.get_session(tenant, conv.id) is None
            assert await store.get_messages(tenant, conv.id) == []
            assert await store.list_api_calls(tenant, conv.id) == []
            assert await store.list_checkpoints(tenant, session_id=conv.id) == []
        assert await store.list_sessions(tenant, user_id=user) == []
        assert [await _snapshot(store, c) for c in (neighbour, elsewhere)] == kept
        again = await store.erase_user(tenant, user)
        assert again == dict.fromkeys(expected, 0)

    async def test_erase_user_redacts_their_messages_in_other_users_sessions(
        self, store: Store
    ) -> None:
        tenant, a, b = new_id(), new_id(), new_id()
        shared = await new_conversation(store, tenant, a)  # A's session, B joins in
        secret = f"b-secret-{new_id()}"
        t, s = tenant, shared.id

        def as_b(role: str, content: str, **fields: Any) -> Message:
            return attrs.evolve(shared.message(role, content, **fields), user_id=b)

        call = ToolCall(id=f"call-{new_id()[-6:]}", name="lookup", arguments={"q": secret})
        await shared.add("system", "be nice")
        await shared.add("user", "hello from A")
        await store.save_message(as_b("user", f"{secret} one", metadata={"k": secret}))
        await shared.add("assistant", "reply to both")
        await store.save_message(as_b("assistant", "", tool_calls=[call], name=secret))
        await store.save_message(
            as_b("tool", f"{secret} result", tool_call_id=call.id, name="lookup")
        )
        await shared.add("user", "A again")
        await store.save_message(as_b("user", f"{secret} two", status="interrupted"))
        for user_id in (a, b):
            await store.save_api_call(
                ApiCall(
                    session_id=s,
                    tenant_id=t,
                    user_id=user_id,
                    model="m",
                    status="failed",
                    error_message=f"failed for {user_id}",
                )
            )
        mine = await new_conversation(store, tenant, b)  # B's own session goes whole
        await _fill(store, mine, checkpoints=1)
        foreign = await new_conversation(store, user_id=a)  # another tenant: untouched
        await store.save_message(
            attrs.evolve(foreign.message("user", f"{secret} abroad"), user_id=b)
        )
        untouched = await _snapshot(store, foreign)

        before = await shared.messages()
        window_before = await store.load_window(t, s)
        calls_before = await store.list_api_calls(t, s)
        expected = {
            "sessions": 1,
            "messages": 6,
            "messages_redacted": 4,
            "api_calls": 2,
            "checkpoints": 1,
            "checkpoints_redacted": 0,
        }
        assert await store.erase_user(tenant, b, dry_run=True) == expected
        assert await shared.messages() == before
        assert await store.load_window(t, s) == window_before
        assert await store.list_api_calls(t, s) == calls_before
        assert await store.get_session(t, mine.id) is not None

        got = await store.erase_user(tenant, b)
        assert got == expected, got
        after = await shared.messages()
        assert [m.seq for m in after] == list(range(1, len(before) + 1))
        assert await store.count_messages(t, s) == len(before)
        for old, new in zip(before, after):
            if old.user_id == a:
                assert new == old
                continue
            assert old.user_id == b
            assert (new.id, new.role, new.seq, new.status) == (
                old.id,
                old.role,
                old.seq,
                old.status,
            )
            assert (new.content, new.tool_calls, new.metadata, new.name, new.user_id) == (
                "",
                (),
                {},
                None,
                None,
            )
        assert after[-1].status == "interrupted"
        window = await store.load_window(t, s)
        assert [m.id for m in window] == [m.id for m in window_before]
        for listed in (after, window, await store.load_window(t, s, last_rounds=1)):
            assert secret not in repr([m.to_dict() for m in listed])
        calls = await store.list_api_calls(t, s)
        assert [c.user_id for c in calls] == [a]
        assert calls[0] == calls_before[0]
        assert await store.get_session(t, mine.id) is None
        assert await store.get_session(t, s) is not None
        assert await _snapshot(store, foreign) == untouched
        assert await store.erase_user(tenant, b) == dict.fromkeys(expected, 0)

    async def test_erase_user_redacts_their_messages_in_other_users_checkpoints(
        self, store: Store
    ) -> None:
        tenant, a, b = new_id(), new_id(), new_id()
        shared = await new_conversation(store, tenant, a)  # A's graph run; B speaks in it
        quiet = await new_conversation(store, tenant, a)  # A's run without B: untouched
        await _fill(store, quiet, checkpoints=3)
        mine = await new_conversation(store, tenant, b)
        await _fill(store, mine, checkpoints=2)
        foreign = await new_conversation(store, user_id=a)  # another tenant: untouched
        secret = f"b-secret-{new_id()}"
        t, s = tenant, shared.id

        def msg(user: str | None, role: str, content: str, **fields: Any) -> Message:
            return attrs.evolve(shared.message(role, content, **fields), user_id=user)

        call = ToolCall(id=f"call-{new_id()[-6:]}", name="lookup", arguments={"q": secret})
        h1 = (msg(a, "system", "be nice"), msg(a, "user", "hello from A"))
        # B twice in a row: the second item's user_id is implied by the first's.
        h2 = (*h1, msg(b, "user", f"{secret} one", metadata={"k": secret}),
              msg(b, "assistant", "", tool_calls=[call], name=secret))  # fmt: skip
        h3 = (*h2, msg(b, "tool", f"{secret} result", tool_call_id=call.id, name="lookup"),
              msg(a, "user", "A again"))  # fmt: skip
        h4 = (*h3, msg(b, "user", f"{secret} two", status="interrupted"),
              msg(None, "assistant", "to nobody"))  # fmt: skip
        h5 = (*h2, msg(b, "user", f"{secret} three"))  # a branch after B's messages
        h6 = (*h5, msg(a, "assistant", "A after B"))  # nothing of B's in its own part
        h7 = (*h1, msg(a, "assistant", "A only"))  # a branch from before B spoke
        made: dict[str, Checkpoint] = {}
        for name, history, parent in (
            ("c1", h1, None), ("c2", h2, "c1"), ("c3", h3, "c2"), ("c4", h4, "c3"),
            ("c5", h5, "c2"), ("c6", h6, "c5"), ("c7", h7, "c1"),
        ):  # fmt: skip
            made[name] = await store.create_checkpoint(
                Checkpoint(
                    tenant_id=t,
                    session_id=s,
                    history=history,
                    parent_id=None if parent is None else made[parent].id,
                    node_id=name,
                    input={"step": name},
                    state={"n": len(history)},
                )
            )
        foreign_cp = await store.create_checkpoint(
            Checkpoint(
                tenant_id=foreign.tenant_id,
                session_id=foreign.id,
                history=[attrs.evolve(foreign.message("user", f"{secret} abroad"), user_id=b)],
            )
        )
        untouched = [await _snapshot(store, c) for c in (quiet, foreign)]
        before = await store.list_checkpoints(t, session_id=s)
        assert [c.history for c in before] == [h1, h2, h3, h4, h5, h6, h7]

        expected = {
            "sessions": 1,
            "messages": 6,
            "messages_redacted": 0,
            "api_calls": 1,
            "checkpoints": 2,
            "checkpoints_redacted": 5,  # c2 .. c6
        }
        assert await store.erase_user(t, b, dry_run=True) == expected
        assert await store.list_checkpoints(t, session_id=s) == before
        assert await store.erase_user(t, b) == expected

        def redacted(m: Message) -> Message:
            if m.user_id != b:
                return m
            return attrs.evolve(m, content="", tool_calls=(), metadata={}, name=None, user_id=None)

        # The run goes on from rewritten checkpoints at once (caches filled before the
        # erasure): with the redacted history, and (a stale writer) with the history it
        # held before the erasure, on c6, whose own record held nothing of B's.
        h8 = (*(redacted(m) for m in h4), msg(a, "user", "after the erasure"))
        c8 = await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=h8, parent_id=made["c4"].id)
        )
        h9 = (*h6, msg(a, "user", "stale history"))
        c9 = await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, history=h9, parent_id=made["c6"].id)
        )
        assert (await store.get_checkpoint(t, c8.id)).history == h8  # type: ignore[union-attr]
        assert (await store.get_checkpoint(t, c9.id)).history == h9  # type: ignore[union-attr]

        after = await store.list_checkpoints(t, session_id=s)
        assert len(after) == len(before) + 2  # and c8, c9
        for old, new in zip(before, after):
            assert attrs.evolve(new, history=()) == attrs.evolve(old, history=())
            assert new.history == tuple(redacted(m) for m in old.history)
            assert new == await store.get_checkpoint(t, old.id)
        assert after[6] == before[6]  # c7 never held B's messages
        assert await store.get_latest_checkpoint(t, s) == after[-1] == c9
        assert secret not in repr([c.to_dict() for c in after[:7]])  # c9 wrote it back
        assert [await _snapshot(store, c) for c in (quiet, foreign)] == untouched
        assert await store.get_checkpoint(foreign.tenant_id, foreign_cp.id) == foreign_cp
        assert await store.get_session(t, mine.id) is None

        again = {**dict.fromkeys(expected, 0), "checkpoints_redacted": 1}  # c9, from the stale run
        assert await store.erase_user(t, b) == again

    async def test_erase_user_validates(self, store: Store) -> None:
        with pytest.raises(ValidationError):
            await store.erase_user("", new_id())
        with pytest.raises(ValidationError):
            await store.erase_user(new_id(), new_id(), dry_run="yes")  # type: ignore[arg-type]

    # -- prune_checkpoints --------------------------------------------------------------

    async def test_prune_keeps_newest_whole_across_long_chains_and_branches(
        self, store: Store
    ) -> None:
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        made: list[Checkpoint] = []
        history: list[Message] = []

        async def save(history: Any, parent: Checkpoint | None, **fields: Any) -> Checkpoint:
            made.append(
                await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=t,
                        session_id=s,
                        history=history,
                        parent_id=None if parent is None else parent.id,
                        **fields,
                    )
                )
            )
            return made[-1]

        for i in range(150):  # past the chain bound a store is likely to pick (128)
            history = [*history, conv.message("user", f"q{i}"), conv.message("assistant", f"a{i}")]
            await save(history, made[-1] if made else None, node_id="n", state={"i": i})
        await save(made[20].history, made[20], node_id="rolled back")  # a branch off an old one
        await save([*made[-1].history, conv.message("user", "branch")], made[-1])
        await save(made[140].history[:7], made[140])  # cut short, on a recent one
        tomb = await save(made[-1].history, made[-1], tombstone=True)

        other = await new_conversation(store, tenant_id=t)
        await _fill(store, other, checkpoints=3)
        foreign = await new_conversation(store)
        await _fill(store, foreign, checkpoints=3)
        untouched = [await _snapshot(store, c) for c in (other, foreign)]

        keep = 12
        assert await store.prune_checkpoints(t, s, keep=keep, dry_run=True) == len(made) - keep
        assert await store.list_checkpoints(t, session_id=s) == made
        assert await store.prune_checkpoints(t, s, keep=keep) == len(made) - keep
        assert await store.list_checkpoints(t, session_id=s) == made[-keep:]
        for checkpoint in made[-keep:]:
            assert await store.get_checkpoint(t, checkpoint.id) == checkpoint
        for checkpoint in made[:-keep]:
            assert await store.get_checkpoint(t, checkpoint.id) is None
        latest = await store.get_latest_checkpoint(t, s)
        assert latest == tomb and latest is not None and latest.tombstone
        assert [await _snapshot(store, c) for c in (other, foreign)] == untouched

        # a run goes on from a kept checkpoint whose base was pruned
        after = await store.create_checkpoint(
            Checkpoint(
                tenant_id=t,
                session_id=s,
                history=[*made[-2].history, conv.message("user", "more")],
                parent_id=made[-2].id,
            )
        )
        assert await store.get_checkpoint(t, after.id) == after
        assert await store.prune_checkpoints(t, s, keep=1) == keep
        assert await store.list_checkpoints(t, session_id=s) == [after]
        assert await store.get_checkpoint(t, after.id) == after
        assert await store.prune_checkpoints(t, s, keep=5) == 0

    async def test_prune_is_scoped_to_tenant_and_validates(self, store: Store) -> None:
        conv = await new_conversation(store)
        await _fill(store, conv, checkpoints=3)
        before = await _snapshot(store, conv)
        assert await store.prune_checkpoints(new_id(), conv.id, keep=1) == 0
        assert await store.prune_checkpoints(conv.tenant_id, new_id(), keep=1) == 0
        assert await _snapshot(store, conv) == before
        for bad in (0, -1, True, "2"):
            with pytest.raises(ValidationError):
                await store.prune_checkpoints(conv.tenant_id, conv.id, keep=bad)  # type: ignore[arg-type]

    # -- delete_sessions_before ---------------------------------------------------------

    async def test_delete_sessions_before_by_age_user_and_tenant(self, store: Store) -> None:
        tenant, user = new_id(), new_id()
        old = datetime(2020, 1, 1, tzinfo=timezone.utc)

        async def session(tenant_id: str, user_id: str, at: datetime | None) -> Conversation:
            fields: dict[str, Any] = {} if at is None else {"created_at": at, "updated_at": at}
            return await new_conversation(store, tenant_id, user_id, **fields)

        old_mine = await session(tenant, user, old)
        old_other = await session(tenant, new_id(), old + timedelta(days=1))
        new_mine = await session(tenant, user, None)
        old_foreign = await session(new_id(), user, old)
        cutoff = datetime.now(timezone.utc) - timedelta(days=30)
        survivors = [await _snapshot(store, c) for c in (new_mine, old_foreign)]

        assert await store.delete_sessions_before(tenant, cutoff, dry_run=True) == 2
        assert await store.get_session(tenant, old_mine.id) is not None
        assert await store.delete_sessions_before(tenant, cutoff, user_id=user) == 1
        assert await store.get_session(tenant, old_mine.id) is None
        assert await store.get_session(tenant, old_other.id) is not None
        assert await store.delete_sessions_before(tenant, cutoff) == 1
        assert await store.get_session(tenant, old_other.id) is None
        assert [await _snapshot(store, c) for c in (new_mine, old_foreign)] == survivors
        assert await store.delete_sessions_before(tenant, cutoff) == 0

    async def test_delete_sessions_before_needs_an_aware_datetime(self, store: Store) -> None:
        with pytest.raises(ValidationError):
            await store.delete_sessions_before(new_id(), datetime(2020, 1, 1))
        with pytest.raises(ValidationError):
            await store.delete_sessions_before(new_id(), "2020-01-01")  # type: ignore[arg-type]

    async def test_delete_sessions_before_spares_sessions_active_in_the_window(
        self, store: Store
    ) -> None:
        """A session created long ago but written to since is not deleted as idle."""
        tenant, user = new_id(), new_id()
        old = datetime(2020, 1, 1, tzinfo=timezone.utc)
        just_after = old + timedelta(seconds=1)

        async def old_session() -> Conversation:
            return await new_conversation(store, tenant, user, created_at=old, updated_at=old)

        graph, calls, idle = await old_session(), await old_session(), await old_session()
        checkpoint = await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=graph.id, node_id="plan")
        )
        await store.save_api_call(
            ApiCall(tenant_id=tenant, session_id=calls.id, model="m", status="success")
        )
        assert await store.delete_sessions_before(tenant, just_after, dry_run=True) == 1
        assert await store.delete_sessions_before(tenant, just_after, user_id=user) == 1
        assert await store.get_session(tenant, idle.id) is None
        for conv in (graph, calls):
            assert await store.get_session(tenant, conv.id) is not None
        assert await store.get_checkpoint(tenant, checkpoint.id) == checkpoint

        # A tombstone (the run finished) is a checkpoint write too.
        await store.set_session_updated_at(tenant, graph.id, old)
        await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=graph.id, parent_id=checkpoint.id,
                       tombstone=True)
        )  # fmt: skip
        assert await store.delete_sessions_before(tenant, just_after) == 0
        assert await store.get_session(tenant, graph.id) is not None

    async def test_a_checkpoint_needs_its_session(self, store: Store) -> None:
        """No checkpoint lives outside a session row, so none escapes a session's age.

        A checkpoint for a session id that has no session row (never created, deleted,
        or another tenant's) is refused with ``NotFoundError`` and nothing is stored.
        """
        tenant = new_id()
        orphan = Checkpoint(tenant_id=tenant, session_id=new_id(), node_id="plan")
        with pytest.raises(NotFoundError):
            await store.create_checkpoint(orphan)
        assert await store.get_checkpoint(tenant, orphan.id) is None
        assert await store.list_checkpoints(tenant) == []
        assert await store.list_sessions(tenant) == []
        gone = await new_conversation(store, tenant)
        await store.delete_session(tenant, gone.id)
        with pytest.raises(NotFoundError):
            await store.create_checkpoint(Checkpoint(tenant_id=tenant, session_id=gone.id))
        assert await store.list_checkpoints(tenant) == []
