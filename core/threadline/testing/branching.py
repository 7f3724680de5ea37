"""Conformance: undo (pop the last message or round), fork a session, list its branches."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from threadline import (
    Checkpoint,
    NotFoundError,
    Session,
    SessionCursor,
    Store,
    ValidationError,
)
from threadline.ids import new_id
from threadline.models import Message, Role, ToolCall
from threadline.runtime.compaction import compact_session, summary_range, visible
from threadline.store.branching import FORKED_FROM, forked_from, pop_last
from threadline.storekit.forks import fork_message_id
from threadline.testing._support import new_conversation


def _shape(messages: list[Message]) -> list[tuple[object, ...]]:
    """What a fork keeps of each message (ids and seqs are its own)."""
    return [
        (m.role, m.content, m.tool_calls, m.tool_call_id, m.name, m.status, m.user_id, m.metadata)
        for m in messages
    ]


class BranchingConformance:
    """``pop_last``, ``Store.fork_session`` and ``Store.list_branches`` on the required hooks."""

    async def test_pop_last_removes_one_message_then_a_round(self, store: Store) -> None:
        conv = await new_conversation(store)
        system = await conv.add("system", "be brief")
        first = await conv.add_round(1)
        second = await conv.add_round(2, tool=True)
        t, s = conv.tenant_id, conv.id
        assert await pop_last(store, t, s) == [second[-1]]
        assert await conv.messages() == [system, *first, *second[:-1]]
        assert await pop_last(store, t, s, round=True) == second[:-1]
        assert await conv.messages() == [system, *first]
        assert await store.count_messages(t, s) == 1 + len(first)
        again = await conv.add("user", "question 3")  # seqs go on, never reused
        assert (again.seq or 0) > (second[-1].seq or 0)
        assert await pop_last(store, t, s, round=True) == [again]
        assert await pop_last(store, t, s, round=True) == first
        assert await pop_last(store, t, s, round=True) == []  # no user message: nothing goes
        assert await conv.messages() == [system]
        assert await pop_last(store, t, s) == [system]
        assert await pop_last(store, t, s) == []
        assert await pop_last(store, t, new_id()) == []
        with pytest.raises(ValidationError):
            await pop_last(store, t, s, round=1)  # type: ignore[arg-type]

    async def test_fork_at_a_message_copies_the_history_up_to_it(self, store: Store) -> None:
        conv = await new_conversation(store, title="trip", metadata={"topic": "rome"})
        await conv.add("system", "be brief")
        first = await conv.add_round(1, tool=True)
        await conv.add_round(2)
        t, s = conv.tenant_id, conv.id
        source = await conv.messages()
        fork = await store.fork_session(t, s, at=first[-1].id)
        assert fork.id != s
        assert (fork.user_id, fork.agent_id, fork.title) == (
            conv.session.user_id,
            conv.session.agent_id,
            "trip",
        )
        assert fork.metadata["topic"] == "rome"
        origin = {"session_id": s, "at": first[-1].id, "kind": "message", "seq": first[-1].seq}
        assert forked_from(fork) == origin
        stored = await store.get_session(t, fork.id)
        assert stored is not None and forked_from(stored) == origin
        copied = await store.get_messages(t, fork.id)
        upto = [m for m in source if (m.seq or 0) <= (first[-1].seq or 0)]
        assert _shape(copied) == _shape(upto)
        assert [m.seq for m in copied] == list(range(1, len(upto) + 1))
        assert not {m.id for m in copied} & {m.id for m in source}
        assert [m.created_at for m in copied] == [m.created_at for m in upto]
        assert await conv.messages() == source  # the source is untouched
        # the fork is a session of its own: it grows without touching the source
        await store.save_message(Message(session_id=fork.id, tenant_id=t, role="user"))
        assert await conv.messages() == source
        assert [b.id for b in await store.list_branches(t, s)] == [fork.id]
        assert await store.list_branches(t, fork.id) == []

    async def test_fork_with_its_id_twice_is_one_fork(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1) + await conv.add_round(2)
        t, s = conv.tenant_id, conv.id
        target = new_id()
        first = await store.fork_session(t, s, at=made[-1].id, new_session_id=target)
        again = await store.fork_session(t, s, at=made[-1].id, new_session_id=target)
        assert first.id == again.id == target
        assert len(await store.get_messages(t, target)) == len(made)
        with pytest.raises(ValidationError):  # the id is taken by another fork point
            await store.fork_session(t, s, at=made[0].id, new_session_id=target)
        with pytest.raises(ValidationError):
            await store.fork_session(t, s, at=made[0].id, new_session_id=s)

    async def test_fork_after_deleted_messages_and_branches_in_order(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1) + await conv.add_round(2)
        t, s = conv.tenant_id, conv.id
        await store.delete_messages(t, s, after_seq=made[1].seq or 0)  # a gap in the seqs
        later = await conv.add_round(3)
        one = await store.fork_session(t, s, at=later[0].id)
        two = await store.fork_session(t, s, at=made[0].id)
        assert _shape(await store.get_messages(t, one.id)) == _shape([*made[:2], later[0]])
        assert _shape(await store.get_messages(t, two.id)) == _shape(made[:1])
        assert [b.id for b in await store.list_branches(t, s)] == [one.id, two.id]
        other = await new_conversation(store, tenant_id=t, user_id=conv.session.user_id)
        assert await store.list_branches(t, other.id) == []

    async def test_fork_at_a_checkpoint_copies_its_history_and_itself(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1)
        t, s = conv.tenant_id, conv.id
        point = await store.create_checkpoint(
            Checkpoint(tenant_id=t, session_id=s, node_id="answer", input={"q": 1}, history=made)
        )
        fork = await store.fork_session(t, s, at=point.id)
        assert forked_from(fork) == {
            "session_id": s,
            "at": point.id,
            "kind": "checkpoint",
            "seq": None,
        }
        latest = await store.get_latest_checkpoint(t, fork.id)
        assert latest is not None and latest.id != point.id
        assert (latest.node_id, latest.input) == ("answer", {"q": 1})
        assert _shape(list(latest.history)) == _shape(made)
        assert [m.id for m in latest.history] == [
            m.id for m in await store.get_messages(t, fork.id)
        ]
        again = await store.fork_session(t, s, at=point.id, new_session_id=fork.id)
        assert len(await store.list_checkpoints(t, session_id=again.id)) == 1

    async def test_fork_at_a_checkpoint_whether_the_log_begins_with_it_or_not(
        self, store: Store
    ) -> None:
        """A checkpoint whose history the message log begins with (a graph run's, filled by
        ``threadline_fork_messages``), one with an edited message, one starting later in the
        log: each fork holds exactly the checkpoint's history, under the ids
        :func:`fork_message_id` derives; a retry adds nothing; the source changing after
        leaves the forks as they were."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        await conv.add("system", "be brief " + "s" * 300)
        await conv.add("user", "a note " + "n" * 300, metadata={"k": [1, "x"], "n": None})
        await conv.add_round(1, tool=True)
        await conv.add_round(2)
        stored = await conv.messages()
        head = tuple(attrs.evolve(m, seq=None) for m in stored[:4])  # as a graph keeps them
        edited = (head[0], attrs.evolve(head[1], content="edited"), *head[2:])
        histories = {"head": head, "edited": edited, "later": head[2:]}
        forks: dict[str, tuple[str, list[Message]]] = {}
        for name, history in histories.items():
            point = await store.create_checkpoint(
                Checkpoint(tenant_id=t, session_id=s, node_id=name, history=history)
            )
            fork = await store.fork_session(t, s, at=point.id)
            messages = await store.get_messages(t, fork.id)
            assert _shape(messages) == _shape(list(history)), name
            ids = [fork_message_id(s, fork.id, m.id) for m in history]
            assert [m.id for m in messages] == ids, name
            latest = await store.get_latest_checkpoint(t, fork.id)
            assert latest is not None and latest.node_id == name
            assert [m.id for m in latest.history] == ids
            assert _shape(list(latest.history)) == _shape(list(history))
            again = await store.fork_session(t, s, at=point.id, new_session_id=fork.id)
            assert await store.get_messages(t, again.id) == messages, name
            assert len(await store.list_checkpoints(t, session_id=fork.id)) == 1
            forks[name] = (fork.id, messages)
        await store.update_message(attrs.evolve(stored[0], content="be long " + "l" * 300))
        await store.delete_messages(t, s, after_seq=stored[1].seq or 0)
        assert await store.delete_session(t, s)
        for name, (fork_id, messages) in forks.items():
            assert await store.get_messages(t, fork_id) == messages, name
        assert await conv.messages() == []

    async def test_fork_refuses_unknown_points_and_other_tenants(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1)
        t, s = conv.tenant_id, conv.id
        other = await new_conversation(store, tenant_id=t)
        elsewhere = await other.add("user", "hi")
        point = await store.create_checkpoint(Checkpoint(tenant_id=t, session_id=other.id))
        for at in (new_id(), elsewhere.id, point.id):
            with pytest.raises(NotFoundError):
                await store.fork_session(t, s, at=at)
        with pytest.raises(NotFoundError):
            await store.fork_session(new_id(), s, at=made[0].id)  # another tenant
        with pytest.raises(NotFoundError):
            await store.fork_session(t, new_id(), at=made[0].id)
        with pytest.raises(NotFoundError):
            await store.list_branches(new_id(), s)
        with pytest.raises(ValidationError):
            await store.fork_session(t, s, at="not an id")
        assert await store.list_branches(t, s) == []
        assert len(await store.list_sessions(t, limit=10)) == 2  # nothing half-made

    async def test_list_sessions_forked_from_lists_only_the_forks(self, store: Store) -> None:
        conv = await new_conversation(store)
        made = await conv.add_round(1)
        t, s, user = conv.tenant_id, conv.id, conv.session.user_id
        forks = [await store.fork_session(t, s, at=made[-1].id) for _ in range(3)]
        in_fork = (await store.get_messages(t, forks[0].id))[0]
        grandchild = await store.fork_session(t, forks[0].id, at=in_fork.id)
        await new_conversation(store, tenant_id=t, user_id=user)  # no fork
        newest = [f.id for f in sorted(forks, key=lambda f: (f.updated_at, f.id), reverse=True)]
        assert [x.id for x in await store.list_sessions(t, forked_from=s)] == newest
        assert [x.id for x in await store.list_sessions(t, forked_from=forks[0].id)] == [
            grandchild.id
        ]
        assert await store.list_sessions(t, forked_from=grandchild.id) == []
        assert await store.list_sessions(new_id(), forked_from=s) == []  # another tenant
        assert await store.list_sessions(t, forked_from=s, user_id=new_id()) == []
        assert len(await store.list_sessions(t, forked_from=s, user_id=user)) == 3
        page = await store.list_sessions(t, forked_from=s, limit=2)
        rest = await store.list_sessions(t, forked_from=s, after=SessionCursor.of(page[-1]))
        assert [x.id for x in page + rest] == newest
        assert [x.id for x in await store.list_sessions(t, forked_from=s, offset=1)] == newest[1:]
        # the forks follow the metadata: an origin edited away, or a session deleted
        moved = attrs.evolve(forks[1], metadata={"forked_from": {"session_id": grandchild.id}})
        await store.update_session(moved)
        assert [x.id for x in await store.list_sessions(t, forked_from=grandchild.id)] == [
            forks[1].id
        ]
        await store.update_session(attrs.evolve(forks[2], metadata={}))
        assert await store.delete_session(t, forks[0].id)
        assert await store.list_sessions(t, forked_from=s) == []
        assert await store.list_branches(t, s) == []
        assert [b.id for b in await store.list_branches(t, grandchild.id)] == [forks[1].id]
        # a fork's activity moves it in its parent's list too (once, in updated_at order)
        again = [await store.fork_session(t, s, at=made[-1].id) for _ in range(2)]
        await store.save_message(Message(session_id=again[0].id, tenant_id=t, role="user"))
        stored = [await store.get_session(t, f.id) for f in again]
        order = sorted(stored, key=lambda f: (f.updated_at, f.id) if f else (), reverse=True)
        assert await store.list_sessions(t, forked_from=s) == order
        with pytest.raises(ValidationError):
            await store.list_sessions(t, forked_from="not an id")

    async def test_fork_keeps_a_summary_on_the_seqs_it_covers(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("system", "be brief")
        made = await conv.add_round(1) + await conv.add_round(2)
        t, s = conv.tenant_id, conv.id
        await store.delete_messages(t, s, after_seq=made[0].seq or 0)  # a gap in the seqs
        for n in range(3, 7):
            await conv.add_round(n, tool=n == 4)

        def summarize(messages: Sequence[Message]) -> str:
            return f"summary of {len(messages)}"

        first = await compact_session(store, t, s, summarize, keep_rounds=2)
        await conv.add_round(7)
        second = await compact_session(store, t, s, summarize, keep_rounds=1)
        assert first is not None and second is not None
        tail = await conv.add("user", "question 8")
        source = await conv.messages()
        fork = await store.fork_session(t, s, at=tail.id)
        copied = await store.get_messages(t, fork.id)
        assert len(copied) == len(source)  # seqs: fresh (1, 2, ...) or the source's
        assert [m.seq for m in copied] in ([m.seq for m in source], list(range(1, len(source) + 1)))
        copy_of = {m.id: c.id for m, c in zip(source, copied)}
        assert [m.id for m in visible(copied)] == [copy_of[m.id] for m in visible(source)]
        by_seq = {m.seq: c for m, c in zip(source, copied)}
        for original in (first, second):
            copy = next(c for m, c in zip(source, copied) if m.id == original.id)
            old, new = summary_range(original), summary_range(copy)
            assert old is not None and new is not None
            assert (by_seq[old[0]].seq, by_seq[old[1]].seq) == new
        copy_of_second = next(c for m, c in zip(source, copied) if m.id == second.id)
        copy_of_first = next(c for m, c in zip(source, copied) if m.id == first.id)
        assert copy_of_second.metadata["summary"]["previous"] == copy_of_first.id

    async def test_a_fork_never_changes_when_its_source_does(self, store: Store) -> None:
        """Copy-on-write where a store shares the bytes: rewriting, popping, erasing and
        deleting the source (and a fork of a fork's middle) leave every fork as it was."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        await conv.add("system", "be brief " + "s" * 300)
        call = ToolCall(id="call-big", name="lookup", arguments={"q": "a" * 400})
        big = [
            await conv.add("user", "question " + "q" * 500),
            await conv.add("assistant", "", tool_calls=[call]),
            await conv.add("tool", "result " + "r" * 600, tool_call_id=call.id, name="lookup"),
            await conv.add("assistant", "answer " + "b" * 700, metadata={"k": 1}),
            await conv.add("user", "short"),
        ]
        source = await conv.messages()
        fork = await store.fork_session(t, s, at=big[-1].id)
        grand = await store.fork_session(
            t, fork.id, at=(await store.get_messages(t, fork.id))[-2].id
        )
        expected = _shape(source)
        assert _shape(await store.get_messages(t, fork.id)) == expected
        assert _shape(await store.get_messages(t, grand.id)) == expected[:-1]
        window = await store.load_window(t, fork.id, 1)
        assert [m.content for m in window] == [source[0].content, "short"]
        await store.update_message(attrs.evolve(big[3], content="edited", tool_calls=()))
        await store.update_message(attrs.evolve(big[1], tool_calls=()))
        assert [m.content for m in await pop_last(store, t, s, round=True)] == ["short"]
        await store.delete_messages(t, s, after_seq=big[0].seq or 0)
        assert _shape(await store.get_messages(t, fork.id)) == expected
        assert await store.delete_session(t, fork.id)  # the middle of a fork of a fork
        assert _shape(await store.get_messages(t, grand.id)) == expected[:-1]
        assert await store.delete_session(t, s)
        assert _shape(await store.get_messages(t, grand.id)) == expected[:-1]
        # the copies' ids and the fork's next seq
        stored = await store.get_messages(t, grand.id)
        assert len({m.id for m in stored}) == len(stored) == len(expected) - 1
        after = await store.save_message(Message(session_id=grand.id, tenant_id=t, role="user"))
        assert (after.seq or 0) > (stored[-1].seq or 0)
        assert await store.count_messages(t, grand.id) == len(stored) + 1

    async def test_a_fork_is_rewritten_on_its_own(self, store: Store) -> None:
        """Editing a fork's shared message changes the fork only; the source keeps its own."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        made = [await conv.add("user", f"question {i} " + "x" * 300) for i in range(3)]
        fork = await store.fork_session(t, s, at=made[-1].id)
        mine = (await store.get_messages(t, fork.id))[1]
        await store.update_message(attrs.evolve(mine, content="mine"))
        assert [m.content for m in await store.get_messages(t, fork.id)] == [
            made[0].content, "mine", made[2].content,
        ]  # fmt: skip
        assert await conv.messages() == made

    async def test_erasing_a_user_erases_their_text_in_forks(self, store: Store) -> None:
        """A user's messages in another user's session are redacted in its forks too."""
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        erased = new_id()
        secret = attrs.evolve(conv.message("user", "secret " + "z" * 400), user_id=erased)
        theirs = await store.save_message(secret)
        reply = await conv.add("assistant", "reply " + "y" * 400)
        fork = await store.fork_session(t, s, at=reply.id)
        counts = await store.erase_user(t, erased)
        assert counts["messages_redacted"] == 2
        for sid in (s, fork.id):
            kept = await store.get_messages(t, sid)
            assert [(m.content, m.user_id) for m in kept] == [
                ("", None),
                (reply.content, reply.user_id),
            ]
        assert theirs.content not in [m.content for m in await store.get_messages(t, fork.id)]

    async def test_filling_a_fork_again_adds_nothing(self, store: Store) -> None:
        """``threadline_fork_messages`` retried on a filled fork (a retried fork) is a no-op."""
        conv = await new_conversation(store)
        made = await conv.add_round(1, tool=True) + await conv.add_round(2)
        t, s = conv.tenant_id, conv.id
        fork = await store.fork_session(t, s, at=made[-1].id)
        before = await store.get_messages(t, fork.id)
        args = {"tenant_id": t, "session_id": s, "fork_id": fork.id, "last_seq": made[-1].seq}
        assert await store._write("threadline_fork_messages", **args) == len(made)
        assert await store.get_messages(t, fork.id) == before
        assert await store.count_messages(t, fork.id) == len(made)


_TURN: tuple[Role, Role] = ("user", "assistant")


async def fill_forks(
    store: Store, tenant: str, user: str
) -> tuple[Session, list[Session], dict[str, list[Message]]]:
    """A 40-message session forked after its 10th and 40th message, among 30 sessions that are
    no fork: the source, its forks and each fork's messages (for upgrade tests of a store's
    forks index: the forks are listed, with the same messages, after the upgrade). The forks
    are made as a release before ``threadline_fork_messages`` made them (a session recording
    ``forked_from``, copies saved by ``save_messages``), so it runs on an old schema and
    reads nothing."""
    source = await store.create_session(Session(tenant_id=tenant, user_id=user))
    made = await store.save_messages(
        [
            Message(session_id=source.id, tenant_id=tenant, role=role, content=f"m{i}")
            for i, role in enumerate(_TURN * 20)
        ]
    )
    forks, copies = [], {}
    for i in (9, 39):
        origin = {"session_id": source.id, "at": made[i].id, "kind": "message", "seq": made[i].seq}
        fork = await store.create_session(
            Session(tenant_id=tenant, user_id=user, metadata={FORKED_FROM: origin})
        )
        forks.append(fork)
        copies[fork.id] = await store.save_messages(
            [
                attrs.evolve(
                    m, session_id=fork.id, id=fork_message_id(source.id, fork.id, m.id), seq=None
                )
                for m in made[: i + 1]
            ]
        )
    for _ in range(30):
        await store.create_session(Session(tenant_id=tenant, user_id=user))
    return source, forks, copies
