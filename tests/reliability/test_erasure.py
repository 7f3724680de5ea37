"""Right to erasure: after ``erase_user`` the user's words are in none of the store's bytes.

For every store, user B writes into their own sessions and into user A's (messages with
tool calls, names and metadata, failed API calls quoting B, checkpoint chains of A's runs
holding B's messages as snapshots and deltas, forks of sessions holding B's messages).
After ``erase_user(B)`` the raw storage (the SQLite file with its WAL, every file of an
fsspec folder, a ``pg_dump`` of the PostgreSQL schema, the memory store's state) holds
neither B's text nor B's user id, while everything of A's is still there and reads back
as before, B's messages redacted.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from threadline import ApiCall, Checkpoint, Message, Session, Store, ToolCall
from threadline.ids import new_id
from threadline.storekit.erasure import redact

from ._record import record
from ._stores import KINDS, open_store

pytestmark = pytest.mark.asyncio

RUNS = 3
STEPS = 40  # checkpoints per run of A's: a snapshot and deltas on it


async def _world(store: Store, tenant: str, a: str, b: str, b_text: str, a_text: str) -> int:
    """B's own sessions and A's runs with B in them; how many rows were written."""
    rows = 0
    for n in range(2):  # B's own sessions
        session = await store.create_session(Session(tenant_id=tenant, user_id=b, title=b_text))
        saved = await store.save_messages(
            [
                Message(session_id=session.id, tenant_id=tenant, user_id=b, role="user",
                        content=f"{b_text} own {n}.{i}", metadata={"note": b_text})
                for i in range(6)
            ]
        )  # fmt: skip
        await store.save_api_call(
            ApiCall(session_id=session.id, tenant_id=tenant, user_id=b, model="m",
                    status="failed", error_message=b_text)
        )  # fmt: skip
        await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=session.id, history=saved)
        )
        rows += 9
    for run in range(RUNS):  # A's runs, B joining in
        session = await store.create_session(Session(tenant_id=tenant, user_id=a, title=a_text))
        history: list[Message] = []
        parent: Checkpoint | None = None
        for step in range(STEPS):
            who = b if step % 3 == 1 else a
            text = b_text if who == b else a_text
            fields: dict[str, Any] = {}
            if who == b and step % 2:
                call = ToolCall(id=f"c{run}-{step}", name="ask", arguments={"q": text})
                fields = {"tool_calls": [call], "name": text, "metadata": {"k": text}}
            message = Message(
                session_id=session.id, tenant_id=tenant, user_id=who,
                role="assistant" if fields else "user", content=f"{text} {run}.{step}", **fields,
            )  # fmt: skip
            history.append(await store.save_message(message))
            if who == b:
                await store.save_api_call(
                    ApiCall(session_id=session.id, tenant_id=tenant, user_id=b, model="m",
                            status="failed", error_message=f"{b_text} failed")
                )  # fmt: skip
            parent = await store.create_checkpoint(
                Checkpoint(tenant_id=tenant, session_id=session.id, history=list(history),
                           parent_id=None if parent is None else parent.id, node_id=f"n{step}",
                           state={"step": step})
            )  # fmt: skip
            rows += 3 if who == b else 2
    # Forks (SQLite and PostgreSQL share their source's bytes): of B's own session, and of
    # A's last run after a long message of B's; B's text in a fork goes with B.
    long = {"tenant_id": tenant, "user_id": b, "role": "user", "content": f"{b_text} long " * 12}
    own = (await store.list_sessions(tenant, user_id=b))[0]
    mine = await store.save_message(Message(session_id=own.id, **long))
    await store.fork_session(tenant, own.id, at=mine.id)
    theirs = await store.save_message(Message(session_id=session.id, **long))
    await store.fork_session(tenant, session.id, at=theirs.id)
    return rows + 4


@pytest.mark.parametrize("kind", KINDS)
async def test_erased_user_is_in_no_stored_byte(kind: str, tmp_path: Path) -> None:
    tenant, a, b = new_id(), new_id(), new_id()
    b_text, a_text = f"B-ERASE-{secrets.token_hex(6)}", f"A-KEEP-{secrets.token_hex(6)}"
    async with open_store(kind, tmp_path) as handle:
        store = handle.store
        rows = await _world(store, tenant, a, b, b_text, a_text)
        before = {
            s.id: (
                await store.get_messages(tenant, s.id),
                await store.list_checkpoints(tenant, session_id=s.id),
            )
            for s in await store.list_sessions(tenant, user_id=a)
        }
        raw = await handle.raw_bytes()
        assert b_text.encode() in raw and b.encode() in raw  # the scan sees what is stored

        counts = await store.erase_user(tenant, b)
        assert counts["sessions"] == 3  # B's two and the fork of one
        assert counts["checkpoints_redacted"] == RUNS * (STEPS - 1)  # all but each first

        raw = await handle.raw_bytes()
        leaks = [what for what in (b_text, b) if what.encode() in raw]
        assert a_text.encode() in raw and a.encode() in raw
        for sid, (messages, checkpoints) in before.items():
            assert await store.get_messages(tenant, sid) == [
                redact(m) if m.user_id == b else m for m in messages
            ]
            after = await store.list_checkpoints(tenant, session_id=sid)
            assert [c.history for c in after] == [
                tuple(redact(m) if m.user_id == b else m for m in c.history) for c in checkpoints
            ]
            assert [attrs.evolve(c, history=()) for c in after] == [
                attrs.evolve(c, history=()) for c in checkpoints
            ]
    record(
        "erasure_leaves_no_bytes",
        store=kind,
        what="erase_user: the user's text and id in none of the stored bytes",
        faults=1,
        operations=rows,
        lost=0,
        notes=f"{len(raw):,} stored bytes scanned; {len(leaks)} leaks",
    )
    assert not leaks, f"{kind} still stores {leaks} after erase_user"


@pytest.mark.parametrize("kind", KINDS)
async def test_deleted_and_pruned_data_is_in_no_stored_byte(kind: str, tmp_path: Path) -> None:
    """``delete_session``, ``delete_sessions_before`` and ``prune_checkpoints`` forget too."""
    tenant, user = new_id(), new_id()
    gone = [f"GONE-{n}-{secrets.token_hex(6)}" for n in range(3)]
    kept = f"KEPT-{secrets.token_hex(6)}"
    async with open_store(kind, tmp_path) as handle:
        store = handle.store
        sessions = []
        for text in gone[:2]:
            session = await store.create_session(Session(tenant_id=tenant, user_id=user))
            await store.save_message(
                Message(session_id=session.id, tenant_id=tenant, user_id=user, role="user",
                        content=text)
            )  # fmt: skip
            sessions.append(session)
        run = await store.create_session(Session(tenant_id=tenant, user_id=user))
        old = await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=run.id, state={"note": gone[2]})
        )
        await store.create_checkpoint(
            Checkpoint(tenant_id=tenant, session_id=run.id, parent_id=old.id, state={"k": kept})
        )
        raw = await handle.raw_bytes()
        assert all(text.encode() in raw for text in (*gone, kept))

        assert await store.delete_session(tenant, sessions[0].id)
        cutoff = (await store.get_session(tenant, sessions[1].id)).updated_at  # type: ignore[union-attr]
        await store.set_session_updated_at(tenant, run.id, cutoff + timedelta(days=1))
        assert await store.delete_sessions_before(tenant, cutoff + timedelta(microseconds=1)) == 1
        assert await store.prune_checkpoints(tenant, run.id, keep=1) == 1

        raw = await handle.raw_bytes()
        leaks = [text for text in gone if text.encode() in raw]
        assert kept.encode() in raw
    record(
        "deletion_leaves_no_bytes",
        store=kind,
        what="delete_session, delete_sessions_before, prune_checkpoints: no deleted byte kept",
        faults=3,
        operations=8,
        lost=0,
        notes=f"{len(raw):,} stored bytes scanned; {len(leaks)} leaks",
    )
    assert not leaks, f"{kind} still stores {leaks} after deleting them"
