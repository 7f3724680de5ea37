"""Several processes on one file: appends, migrations, and resuming a session elsewhere."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import cast

from _sqlite_support import CHILD, child_env, integrity_ok, run_together

import threadline
from threadline import Checkpoint, Message, Session, ToolCall
from threadline.ids import new_id
from threadline.models import to_json
from threadline_sqlite.migrations import MIGRATION_NAMES

PROCESSES = 3
SINGLES = 150
BATCHES = 10


async def test_processes_appending_to_one_session_lose_nothing(
    db_path: Path, tmp_path: Path
) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}")
    session = await store.create_session(Session(tenant_id=new_id()))
    await store.close()

    commands = [
        ["append", str(db_path), str(tmp_path / "go"), f"p{i}", session.tenant_id, session.id,
         str(SINGLES), str(BATCHES)]
        for i in range(PROCESSES)
    ]  # fmt: skip
    seqs_by_process = await asyncio.to_thread(run_together, tmp_path / "go", commands)

    total = PROCESSES * (SINGLES + BATCHES * 10)
    per_process = cast("list[list[int]]", seqs_by_process)
    every_seq = sorted(s for seqs in per_process for s in seqs)
    assert every_seq == list(range(1, total + 1))  # contiguous, none shared
    for seqs in per_process:
        assert seqs == sorted(seqs)

    store = await threadline.connect(f"sqlite:///{db_path}")
    try:
        messages = await store.get_messages(session.tenant_id, session.id)
        assert [m.seq for m in messages] == list(range(1, total + 1))
        assert len({m.content for m in messages}) == total
        assert await store.count_messages(session.tenant_id, session.id) == total
    finally:
        await store.close()
    integrity_ok(db_path)


async def test_processes_opening_a_new_file_at_once_migrate_it_once(
    db_path: Path, tmp_path: Path
) -> None:
    commands = [["migrate", str(db_path), str(tmp_path / "go"), f"m{i}"] for i in range(4)]
    applied = await asyncio.to_thread(run_together, tmp_path / "go", commands)
    names = [name for result in cast("list[list[str]]", applied) for name in result]
    assert names == list(MIGRATION_NAMES)  # exactly one process applied them
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute(
            "SELECT migration_set, name FROM _sqlite_migrations ORDER BY id"
        ).fetchall()
    connection.close()
    assert rows == [("threadline_sqlite", name) for name in MIGRATION_NAMES]
    integrity_ok(db_path)


async def test_a_session_resumes_with_full_history_in_another_process(db_path: Path) -> None:
    store = await threadline.connect(f"sqlite:///{db_path}")
    tenant = new_id()
    session = await store.create_session(Session(tenant_id=tenant, title="résumé ✓"))

    def msg(role: str, content: str = "", **fields: object) -> Message:
        return Message(session_id=session.id, tenant_id=tenant, role=role,  # type: ignore[arg-type]
                       content=content, **fields)  # type: ignore[arg-type]  # fmt: skip

    call = ToolCall(id="call_1", name="get_time", arguments={"tz": "Europe/Paris"})
    saved = [
        await store.save_message(msg("system", "You are terse.\x00")),
        await store.save_message(msg("user", "what time is it?")),
        await store.save_message(msg("assistant", tool_calls=[call], metadata={"m": 1.5})),
        await store.save_message(msg("tool", "12:00", tool_call_id="call_1", name="get_time")),
        await store.save_message(msg("assistant", "noon", status="interrupted")),
        await store.save_message(msg("user", "thanks")),
    ]
    checkpoint = await store.create_checkpoint(
        Checkpoint(
            tenant_id=tenant,
            session_id=session.id,
            node_id="answer",
            history=saved[:4],
            state={"k": [1, "x"]},
            input={"q": "time"},
        )  # fmt: skip
    )
    await store.close()

    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), "dump", str(db_path), tenant, session.id,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    dumped = json.loads(out)
    assert dumped["messages"] == [to_json(m) for m in saved]
    assert dumped["window"] == [to_json(m) for m in [saved[0], *saved[1:]]]
    assert dumped["checkpoints"] == [to_json(checkpoint)]
