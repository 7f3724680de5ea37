"""delete_messages on files: gaps in seqs read right, and a deletion cut short by a crash
leaves the old messages or the new ones, never a mix, and is finished by the next write."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs
import pytest

import threadline
from threadline import Message, Session, StoreError, ToolCall
from threadline.ids import new_id
from threadline.storekit.window import select_window
from threadline_fsspec import FsspecStore


def _msg(session: Session, role: str, content: str, **fields: Any) -> Message:
    return Message(
        session_id=session.id, tenant_id=session.tenant_id, role=role, content=content, **fields
    )


async def _state(store: threadline.Store, session: Session) -> list[Message]:
    """What a reader sees, checked to agree across the reads that take other paths."""
    t, s = session.tenant_id, session.id
    messages = await store.get_messages(t, s)
    assert await store.count_messages(t, s) == len(messages)
    assert await store.load_window(t, s, 2) == select_window(messages, 2)
    assert await store.read_messages(t, s, limit=3, newest_first=True) == messages[::-1][:3]
    return messages


async def _session_with_rounds(store: threadline.Store) -> tuple[Session, list[Message]]:
    """A system message, a batch of rounds (one segment) and rounds saved one by one."""
    session = await store.create_session(Session(tenant_id=new_id()))
    made = await store.save_messages([_msg(session, "system", "be brief")])
    batch = []
    for n in range(3):
        call = ToolCall(id=f"call-{n}", name="lookup", arguments={"n": n})
        batch += [
            _msg(session, "user", f"question {n}"),
            _msg(session, "assistant", "", tool_calls=[call]),
            _msg(session, "tool", f"result {n}", tool_call_id=call.id, name="lookup"),
        ]
    made += await store.save_messages(batch)
    for n in range(3, 5):
        made.append(await store.save_message(_msg(session, "user", f"question {n}")))
        made.append(
            await store.save_message(_msg(session, "assistant", f"answer {n}", status="streaming"))
        )
    return session, made


# a full deletion here is 20 writes and deletes: the intent, the commit, 13 index entries and
# markers, the truncated batch, 3 segments, the hint
@pytest.mark.parametrize("crash_after", [0, 1, 2, 5, 10, 15, 16, 17, 18, 19, 20])
async def test_a_deletion_cut_short_is_all_or_nothing_and_finished_by_the_next_write(
    root: Path, crash_after: int
) -> None:
    store = await threadline.connect(f"file://{root}")
    plugin = store.primary
    assert isinstance(plugin, FsspecStore)
    session, made = await _session_with_rounds(store)
    t, s = session.tenant_id, session.id
    after = made[4].seq or 0  # inside the batch: its segment keeps some, four segments go
    kept = made[:5]
    backend = plugin.backend
    write, delete = backend.write, backend.delete
    done: list[str] = []

    def crashing(real: Any) -> Any:
        def operation(path: str, *args: Any, **kwargs: Any) -> None:
            if len(done) == crash_after:
                raise OSError("the disk went away")
            done.append(path)
            real(path, *args, **kwargs)

        return operation

    backend.write, backend.delete = crashing(write), crashing(delete)  # type: ignore[method-assign]
    try:
        gone = await store.delete_messages(t, s, after_seq=after)
    except StoreError:
        gone = None
    finally:
        backend.write, backend.delete = write, delete  # type: ignore[method-assign]
    assert gone in (None, len(made) - len(kept))
    reader = await threadline.connect(f"file://{root}")
    try:
        seen = await _state(reader, session)
        assert seen in (made, kept)  # old or new, never a mix
        assert gone is None or seen == kept
        # the next write finishes a deletion whose intent was written (from then on it
        # is carried out even if the crash came before its commit)
        again = await store.save_message(_msg(session, "user", "after the crash"))
        assert again.seq == (made[-1].seq or 0) + 1
        now = await _state(reader, session)
        assert now in ([*made, again], [*kept, again])
        if seen == kept or now != [*made, again]:
            assert now == [*kept, again]
            assert await reader.interrupt_streaming(t, s) == 0  # the streaming replies went
            folder = root / "tenants" / t / "sessions" / s
            # the system message, the truncated batch, the claim of the seqs, the new one
            assert len(list((folder / "messages").iterdir())) == 4
            assert not list(folder.glob("calls/*call-2*"))
            for old in made[5:]:  # ids of deleted messages are free again
                back = await reader.save_message(attrs.evolve(old, seq=None))
                assert (back.seq or 0) > (again.seq or 0)
    finally:
        await reader.close()
        await store.close()


async def test_pages_across_gaps_match_a_model(memory_name: str) -> None:
    store = await threadline.connect(f"fsspec+memory://{memory_name}")
    rng = random.Random(12)
    session = await store.create_session(Session(tenant_id=new_id()))
    t, s = session.tenant_id, session.id
    model: list[Message] = []
    turn = 0
    for _ in range(40):
        batch = []
        for _ in range(rng.randint(1, 9)):
            turn += 1
            role = "system" if turn % 17 == 0 else ("user" if turn % 2 else "assistant")
            batch.append(_msg(session, role, f"turn {turn}"))
        model += await store.save_messages(batch)
        if rng.random() < 0.4 and model:
            after = rng.choice(model).seq or 0
            gone = [m for m in model if (m.seq or 0) > after]
            assert await store.delete_messages(t, s, after_seq=after) == len(gone)
            model = [m for m in model if (m.seq or 0) <= after]
    assert await store.count_messages(t, s) == len(model)
    assert await store.get_messages(t, s) == model
    seqs = [m.seq or 0 for m in model]
    for _ in range(60):
        limit = rng.randint(1, 30)
        after = rng.randint(0, max(seqs)) if rng.random() < 0.7 else 0
        before = rng.choice([None, rng.randint(1, max(seqs) + 1)])
        newest = rng.random() < 0.5
        found = await store.read_messages(
            t, s, after_seq=after, before_seq=before, limit=limit, newest_first=newest
        )
        inside = [m for m in model if after < (m.seq or 0) < (before or 1 << 62)]
        assert found == (inside[::-1] if newest else inside)[:limit]
    for rounds in (0, 1, 3, 50):
        assert await store.load_window(t, s, rounds) == select_window(model, rounds)
    await store.close()
