"""The window read from files equals storekit.window.select_window, at the cost of the window."""

from __future__ import annotations

import asyncio
from typing import Any

import fsspec
import pytest
from _fsspec_support import forget_memory_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import threadline
from threadline import Message, Session, ToolCall
from threadline.ids import new_id
from threadline.storekit.window import select_window
from threadline_fsspec import FsspecStore
from threadline_fsspec.backends import FsspecBackend

CALL_IDS = ["a", "b", "c"]  # few ids, so that some repeat, as some providers do

event = st.one_of(
    st.tuples(st.just("user")),
    st.tuples(st.just("system")),
    st.tuples(st.just("assistant")),
    st.tuples(st.just("call"), st.lists(st.sampled_from(CALL_IDS), min_size=1, max_size=2)),
    st.tuples(st.just("tool"), st.sampled_from([*CALL_IDS, "never-called"])),
)
batches = st.lists(st.lists(event, min_size=1, max_size=4), min_size=0, max_size=12)


def _message(session: Session, n: int, spec: tuple[Any, ...]) -> Message:
    kind = spec[0]
    fields: dict[str, Any] = {}
    role = kind
    if kind == "call":
        role = "assistant"
        fields["tool_calls"] = [ToolCall(id=i, name="f", arguments={"n": n}) for i in spec[1]]
    elif kind == "tool":
        fields["tool_call_id"] = spec[1]
    return Message(
        session_id=session.id, tenant_id=session.tenant_id, role=role, content=str(n), **fields
    )


def memory_store() -> tuple[threadline.Store, str]:
    root = f"/tl-window-{new_id()}"
    return threadline.Store(FsspecStore(FsspecBackend(fsspec.filesystem("memory"), root))), root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_window_matches_the_definition(plan: list[list[tuple[Any, ...]]]) -> None:
    async def check() -> None:
        store, root = memory_store()
        try:
            session = await store.create_session(Session(tenant_id=new_id()))
            n = 0
            for batch in plan:
                messages = []
                for spec in batch:
                    n += 1
                    messages.append(_message(session, n, spec))
                if len(messages) == 1:
                    await store.save_message(messages[0])
                else:
                    await store.save_messages(messages)
            everything = await store.get_messages(session.tenant_id, session.id)
            assert len(everything) == n
            for rounds in (0, 1, 2, 3, 5, None):
                got = await store.load_window(session.tenant_id, session.id, rounds)
                assert got == select_window(everything, rounds), rounds
        finally:
            await store.close()
            forget_memory_folder(root)

    asyncio.run(check())


async def test_window_reads_only_what_it_returns(memory_name: str) -> None:
    store = await threadline.connect(f"fsspec+memory://{memory_name}")
    session = await store.create_session(Session(tenant_id=new_id()))

    def m(role: str, text: str) -> Message:
        return Message(session_id=session.id, tenant_id=session.tenant_id, role=role, content=text)  # type: ignore[arg-type]

    await store.save_message(m("system", "be brief"))
    for i in range(300):  # 300 rounds, singles and batches
        if i % 3:
            await store.save_messages([m("user", f"q{i}"), m("assistant", f"a{i}")])
        else:
            await store.save_message(m("user", f"q{i}"))
            await store.save_message(m("assistant", f"a{i}"))

    backend = store.primary.backend  # type: ignore[attr-defined]
    reads: list[str] = []
    original = backend.read

    def counting(path: str) -> bytes | None:
        reads.append(path)
        return original(path)  # type: ignore[no-any-return]

    backend.read = counting
    window = await store.load_window(session.tenant_id, session.id, 2)
    assert [x.content for x in window] == ["be brief", "q298", "a298", "q299", "a299"]
    # session.json, head.json, the probe for a newer segment, the window's segments, and
    # the segment holding the system prompt: nothing else of the 500 files.
    assert len(reads) <= 7, reads
    reads.clear()
    ghost = Message(session_id=session.id, tenant_id=session.tenant_id, role="tool",
                    content="late", tool_call_id="never-called")  # fmt: skip
    await store.save_message(ghost)
    reads.clear()
    window = await store.load_window(session.tenant_id, session.id, 1)
    assert [x.content for x in window] == ["be brief", "q299", "a299", "late"]
    assert len(reads) <= 8, reads  # the calls/ index says: never called, no scan back
    reads.clear()
    tail = await store.get_messages(session.tenant_id, session.id, after_seq=597)
    assert [x.seq for x in tail] == [598, 599, 600, 601, 602]
    assert len(reads) <= 7, reads
    reads.clear()
    assert await store.count_messages(session.tenant_id, session.id) == 602
    assert len(reads) <= 3, reads
    await store.close()


@pytest.mark.parametrize("damage", ["missing", "garbage", "stale"])
async def test_a_lost_or_stale_head_hint_is_recovered(memory_name: str, damage: str) -> None:
    store = await threadline.connect(f"fsspec+memory://{memory_name}")
    session = await store.create_session(Session(tenant_id=new_id()))
    msg = Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="1")
    first = await store.save_message(msg)
    backend = store.primary.backend  # type: ignore[attr-defined]
    head = f"tenants/{session.tenant_id}/sessions/{session.id}/head.json"
    old_head = backend.read(head)
    more = await store.save_messages(
        [Message(session_id=session.id, tenant_id=session.tenant_id, role="assistant")] * 1
        + [Message(session_id=session.id, tenant_id=session.tenant_id, role="user")]
    )
    if damage == "missing":
        backend.delete(head)
    elif damage == "garbage":
        backend.write(head, b"{not json")
    else:  # a crash between a segment and its hint
        backend.write(head, old_head)
    assert await store.count_messages(session.tenant_id, session.id) == 3
    assert await store.load_window(session.tenant_id, session.id, 1) == more[1:]
    nxt = await store.save_message(
        Message(session_id=session.id, tenant_id=session.tenant_id, role="assistant")
    )
    assert nxt.seq == 4
    assert await store.get_messages(session.tenant_id, session.id) == [first, *more, nxt]
    await store.close()


async def test_pages_from_anywhere_in_a_long_session(memory_name: str) -> None:
    store = await threadline.connect(f"fsspec+memory://{memory_name}")
    session = await store.create_session(Session(tenant_id=new_id()))
    for i in range(60):  # segments of 1 to 6 messages
        size = i % 6 + 1 if i < 50 else 1
        batch = [
            Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content=str(i))
            for _ in range(size)
        ]
        await store.save_messages(batch)
    everything = await store.get_messages(session.tenant_id, session.id)
    total = len(everything)
    assert [m.seq for m in everything] == list(range(1, total + 1))
    for after in (0, 1, 2, 7, 50, 133, total - 3, total):
        for limit in (None, 0, 1, 3, 10, 500):
            page = await store.get_messages(
                session.tenant_id, session.id, after_seq=after, limit=limit
            )
            end = None if limit is None else after + limit
            assert page == everything[after:end], (after, limit)
    await store.close()
