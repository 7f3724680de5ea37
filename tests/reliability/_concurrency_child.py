"""One writer process of the concurrency tests: ``python _concurrency_child.py COMMAND ARGS...``.

Started by :func:`threadline.testing.processes.run_together`; every command opens the
store, waits for the parent's go (so the work of all processes overlaps) and prints
one JSON document on stdout: what the store acknowledged, and what failed with
:class:`threadline.StoreUnavailableError` (any other exception fails the process).

``append URL GO_DIR NAME TENANT SESSION COUNT SEED``
    append ``COUNT`` messages to the session, as single appends and batches of 2..10
    in an order drawn from ``SEED``. Prints ``{"acked": [[id, seq, batch], ...],
    "failed": [id, ...], "errors": [text, ...], "seconds": s}``: ``batch`` numbers the
    call that stored the message, so the parent can check a batch got consecutive seqs.
``checkpoint URL GO_DIR NAME TENANT SESSION COUNT ROOT_ID``
    create ``COUNT`` checkpoints in the session: a chain starting on the checkpoint
    ``ROOT_ID``, each one's history its parent's plus two messages; every fifth one
    instead branches off the newest checkpoint another process wrote (the root if
    none yet), read with ``list_checkpoints`` while the others write. Prints
    ``{"acked": [checkpoint JSON, ...], "failed": [id, ...], "errors": [...],
    "seconds": s}`` with each checkpoint as ``create_checkpoint`` returned it
    (version included).
``resave URL GO_DIR NAME TENANT SESSION SHARED_FILE SEED``
    save the messages and checkpoints of ``SHARED_FILE`` (JSON ``{"messages": [...],
    "checkpoints": [...]}``, the same for every process: as if all of them retried the
    same writes at once): the messages in an order drawn from ``SEED``, single and in
    batches, then the checkpoints in file order. Prints ``{"messages": [[id, seq],
    ...], "checkpoints": [[id, version], ...], ...}`` as acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import Any

os.environ.setdefault(
    "THREADLINE_LOAD_PLUGINS", "threadline-sqlite,threadline-postgres,threadline-fsspec"
)

import threadline
from threadline import Checkpoint, Message, StoreUnavailableError
from threadline.models import Role
from threadline.testing.processes import wait_for_go


async def append(
    url: str, go_dir: str, name: str, tenant: str, session: str, count: str, seed: str
) -> dict[str, Any]:
    rng = random.Random(int(seed))
    total = int(count)
    store = await threadline.connect(url, migrate=False)
    acked: list[list[Any]] = []
    failed: list[str] = []
    errors: list[str] = []
    try:
        wait_for_go(go_dir, name)
        started = time.monotonic()

        def message(i: int) -> Message:
            role: Role = "user" if i % 2 == 0 else "assistant"
            return Message(session_id=session, tenant_id=tenant, role=role, content=f"{name}-{i}")

        i = call = 0
        while i < total:
            size = 1 if rng.random() < 0.6 else rng.randint(2, 10)
            batch = [message(i + k) for k in range(min(size, total - i))]
            i += len(batch)
            call += 1
            try:
                if len(batch) == 1:
                    stored = [await store.save_message(batch[0])]
                else:
                    stored = await store.save_messages(batch)
            except StoreUnavailableError as exc:
                failed.extend(m.id for m in batch)
                errors.append(str(exc))
                continue
            assert [m.id for m in stored] == [m.id for m in batch]
            acked.extend([m.id, m.seq, call] for m in stored)
        seconds = time.monotonic() - started
    finally:
        await store.close()
    return {"acked": acked, "failed": failed, "errors": errors, "seconds": seconds}


async def checkpoint(
    url: str, go_dir: str, name: str, tenant: str, session: str, count: str, root_id: str
) -> dict[str, Any]:
    store = await threadline.connect(url, migrate=False)
    acked: list[dict[str, Any]] = []
    failed: list[str] = []
    errors: list[str] = []
    try:
        root = await store.get_checkpoint(tenant, root_id)
        assert root is not None, "the root checkpoint is missing"
        wait_for_go(go_dir, name)
        started = time.monotonic()
        parent = root
        for i in range(int(count)):
            if i % 5 == 2:  # the newest checkpoint is at least as new as this process's last
                latest = await store.get_latest_checkpoint(tenant, session)
                assert latest is not None and (latest.version or 0) >= (parent.version or 0)
            if i % 5 == 4:  # branch off the newest checkpoint another process wrote
                listed = await store.list_checkpoints(tenant, session_id=session)
                others = [c for c in listed if not (c.node_id or "").startswith(f"{name}-")]
                parent = others[-1]
            new = (
                Message(session_id=session, tenant_id=tenant, role="user", content=f"{name} q{i}"),
                Message(
                    session_id=session, tenant_id=tenant, role="assistant", content=f"{name} a{i}"
                ),
            )
            wanted = Checkpoint(
                tenant_id=tenant,
                session_id=session,
                node_id=f"{name}-node-{i}",
                input={"step": i, "by": name},
                input_type="dict",
                history=(*parent.history, *new),
                state={"writer": name, "step": i},
                parent_id=parent.id,
            )
            try:
                stored = await store.create_checkpoint(wanted)
            except StoreUnavailableError as exc:
                failed.append(wanted.id)
                errors.append(str(exc))
                continue
            acked.append(stored.to_dict())
            parent = stored
        seconds = time.monotonic() - started
    finally:
        await store.close()
    return {"acked": acked, "failed": failed, "errors": errors, "seconds": seconds}


def _load(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


async def resave(
    url: str, go_dir: str, name: str, tenant: str, session: str, shared_file: str, seed: str
) -> dict[str, Any]:
    rng = random.Random(int(seed))
    shared = _load(shared_file)
    messages = [Message.from_dict(m) for m in shared["messages"]]
    checkpoints = [Checkpoint.from_dict(c) for c in shared["checkpoints"]]
    assert all(m.tenant_id == tenant and m.session_id == session for m in messages)
    rng.shuffle(messages)
    store = await threadline.connect(url, migrate=False)
    acked: list[list[Any]] = []
    versions: list[list[Any]] = []
    try:
        wait_for_go(go_dir, name)
        started = time.monotonic()
        i = 0
        while i < len(messages):
            size = 1 if rng.random() < 0.5 else rng.randint(2, 6)
            batch = messages[i : i + size]
            i += len(batch)
            stored = (
                [await store.save_message(batch[0])]
                if len(batch) == 1
                else await store.save_messages(batch)
            )
            assert [m.id for m in stored] == [m.id for m in batch]
            acked.extend([m.id, m.seq] for m in stored)
        for wanted in checkpoints:
            got = await store.create_checkpoint(wanted)
            assert got.id == wanted.id and got.history == wanted.history
            versions.append([got.id, got.version])
        seconds = time.monotonic() - started
    finally:
        await store.close()
    return {"messages": acked, "checkpoints": versions, "seconds": seconds}


COMMANDS = {"append": append, "checkpoint": checkpoint, "resave": resave}

if __name__ == "__main__":
    command, *args = sys.argv[1:]
    print(json.dumps(asyncio.run(COMMANDS[command](*args))))
