"""Latest-checkpoint reads that skip the chain when the history cache holds the head: what
another store object writes or rewrites meanwhile is still what a read gives."""

from __future__ import annotations

from pathlib import Path

import threadline
from threadline import Checkpoint, Message, Session
from threadline.ids import new_id


def _msg(session: Session, role: str, content: str, user_id: str | None) -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, user_id=user_id,
                   role=role, content=content)  # fmt: skip


async def _put(store: threadline.Store, session: Session, history: list[Message], i: int,
               parent: str | None) -> Checkpoint:  # fmt: skip
    return await store.create_checkpoint(
        Checkpoint(
            tenant_id=session.tenant_id,
            session_id=session.id,
            node_id="n",
            history=history,
            state={"i": i},
            parent_id=parent,
        )  # fmt: skip
    )


async def test_latest_read_sees_other_writers_and_rewrites(db_path: Path) -> None:
    a = await threadline.connect(f"sqlite:///{db_path}")
    b = await threadline.connect(f"sqlite:///{db_path}")
    try:
        other = new_id()
        session = await a.create_session(Session(tenant_id=new_id(), user_id=new_id()))
        history: list[Message] = []
        parent = None
        for i in range(5):
            history += [_msg(session, "user", f"q{i}", other if i == 2 else session.user_id),
                        _msg(session, "assistant", f"a{i}", None)]  # fmt: skip
            parent = (await _put(a, session, list(history), i, parent)).id
        t, sid = session.tenant_id, session.id
        # Twice from the writer (its cache holds the head), once from another store object.
        for store in (a, a, b):
            latest = await b.get_latest_checkpoint(t, sid) if store is b else (
                await a.get_latest_checkpoint(t, sid))  # fmt: skip
            assert latest is not None and latest.id == parent and latest.state == {"i": 4}
            assert [m.content for m in latest.history] == [m.content for m in history]
        # b appends: a's next latest read (its cache holds the old head) gives b's checkpoint.
        history.append(_msg(session, "user", "q5", session.user_id))
        newest = await _put(b, session, list(history), 5, parent)
        latest = await a.get_latest_checkpoint(t, sid)
        assert latest is not None and latest.id == newest.id and latest.state == {"i": 5}
        assert [m.content for m in latest.history][-1] == "q5"
        # b erases a user: a's cached histories are stale, its reads give the redacted ones.
        await b.erase_user(t, other)
        for read in (a.get_latest_checkpoint(t, sid), a.get_checkpoint(t, parent)):
            found = await read
            assert found is not None
            assert all(m.user_id != other for m in found.history)
            assert "q2" not in [m.content for m in found.history]
    finally:
        await a.close()
        await b.close()
