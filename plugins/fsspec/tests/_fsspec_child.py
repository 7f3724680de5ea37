"""A separate process for the multi-process tests: ``python _fsspec_child.py COMMAND ARGS...``.

Commands (each prints one JSON document on stdout):

``append ROOT GO_DIR NAME TENANT SESSION SINGLES BATCHES``
    open ``file://ROOT``, wait for ``GO_DIR/go``, append ``SINGLES`` messages one by one
    and ``BATCHES`` batches of 5, print the seqs this process got.
``hold ROOT TENANT SESSION READY_FILE``
    take the session's writer lock, touch ``READY_FILE``, hold the lock until a line
    arrives on stdin (the test releases it: no timing).
``scribble ROOT TENANT SESSION``
    append 1 MB messages and rewrite them until killed (for the crash test).
``dump URL TENANT SESSION``
    print the session, its messages, its 2-round window and its checkpoints as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-fsspec"

import attrs

import threadline
from threadline import Message
from threadline.models import Role, to_json
from threadline.testing.processes import wait_for_go


async def append(
    root: str, go_dir: str, name: str, tenant: str, session: str, singles: int, batches: int
) -> object:
    store = await threadline.connect(f"file://{root}")
    seqs: list[int] = []
    try:
        wait_for_go(go_dir, name)

        def msg(i: int) -> Message:
            role: Role = "user" if i % 2 == 0 else "assistant"
            return Message(session_id=session, tenant_id=tenant, role=role, content=f"{name}-{i}")

        for i in range(singles):
            seqs.append((await store.save_message(msg(i))).seq or 0)
            if i % 10 == 0 and batches:
                batch = [msg(10_000 + len(seqs) * 10 + j) for j in range(5)]
                stored = await store.save_messages(batch)
                seqs.extend(m.seq or 0 for m in stored)
                batches -= 1
    finally:
        await store.close()
    return seqs


def hold(root: str, tenant: str, session: str, ready: str) -> object:
    from threadline_fsspec import layout
    from threadline_fsspec.backends import LocalBackend

    backend = LocalBackend(root)
    with backend.lock(f"{layout.session_dir(tenant, session)}/lock", 10):
        Path(ready).touch()
        sys.stdin.readline()
    return "released"


async def scribble(root: str, tenant: str, session: str) -> object:
    store = await threadline.connect(f"file://{root}")
    big = "x" * (1024 * 1024)
    i = 0
    while True:
        m = await store.save_message(
            Message(session_id=session, tenant_id=tenant, role="assistant", content=big,
                    status="streaming")
        )  # fmt: skip
        await store.update_message(attrs.evolve(m, content=big + str(i), status="complete"))
        await store.save_messages(
            [Message(session_id=session, tenant_id=tenant, role="user", content=big)] * 1
        )
        i += 1


async def dump(url: str, tenant: str, session: str) -> object:
    store = await threadline.connect(url)
    try:
        got = await store.get_session(tenant, session)
        return {
            "session": None if got is None else to_json(got),
            "messages": [to_json(m) for m in await store.get_messages(tenant, session)],
            "window": [to_json(m) for m in await store.load_window(tenant, session, 2)],
            "checkpoints": [
                to_json(c) for c in await store.list_checkpoints(tenant, session_id=session)
            ],
        }
    finally:
        await store.close()


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "append":
        root, go_dir, name, tenant, session, singles, batches = args
        result = asyncio.run(
            append(root, go_dir, name, tenant, session, int(singles), int(batches))
        )
    elif command == "hold":
        result = hold(*args)
    elif command == "scribble":
        result = asyncio.run(scribble(*args))
    elif command == "dump":
        result = asyncio.run(dump(*args))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
