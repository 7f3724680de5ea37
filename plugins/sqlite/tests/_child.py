"""A separate process for the multi-process tests: ``python _child.py COMMAND ARGS...``.

Commands (each prints one JSON document on stdout):

``migrate DB GO_DIR NAME``
    wait for ``GO_DIR/go``, then open ``DB`` without migrating, migrate, print the
    names applied by this process.
``append DB GO_DIR NAME TENANT SESSION SINGLES BATCHES``
    open ``DB``, wait for ``GO_DIR/go``, append ``SINGLES`` messages one by one and
    ``BATCHES`` batches of 10, print the seqs this process got.
``dump DB TENANT SESSION``
    print the session's messages, its 2-round window and its checkpoints as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-sqlite"

import threadline
from threadline.models import to_json
from threadline.testing.processes import wait_for_go


async def migrate(db: str, go_dir: str, name: str) -> object:
    wait_for_go(go_dir, name)
    store = await threadline.connect(f"sqlite:///{db}", migrate=False)
    try:
        return await store.migrate()
    finally:
        await store.close()


async def append(
    db: str, go_dir: str, name: str, tenant: str, session: str, singles: str, batches: str
) -> object:
    store = await threadline.connect(f"sqlite:///{db}")
    try:
        wait_for_go(go_dir, name)
        seqs = []

        def message(i: int) -> threadline.Message:
            return threadline.Message(
                session_id=session, tenant_id=tenant, role="user", content=f"{name}-{i}"
            )

        for i in range(int(singles)):
            seqs.append((await store.save_message(message(i))).seq)
        for b in range(int(batches)):
            batch = [message(100_000 + b * 10 + j) for j in range(10)]
            seqs.extend(m.seq for m in await store.save_messages(batch))
        return seqs
    finally:
        await store.close()


async def dump(db: str, tenant: str, session: str) -> object:
    store = await threadline.connect(f"sqlite:///{db}")
    try:
        messages = await store.get_messages(tenant, session)
        window = await store.load_window(tenant, session, 2)
        checkpoints = await store.list_checkpoints(tenant, session_id=session)
        return {
            "messages": [to_json(m) for m in messages],
            "window": [to_json(m) for m in window],
            "checkpoints": [to_json(c) for c in checkpoints],
        }
    finally:
        await store.close()


COMMANDS = {"migrate": migrate, "append": append, "dump": dump}

if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps(asyncio.run(COMMANDS[command](*args))))  # type: ignore[operator]
