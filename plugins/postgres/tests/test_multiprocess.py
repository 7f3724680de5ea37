"""Several processes appending to one session: nothing lost, no seq twice, no gap."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

import threadline
from threadline import Checkpoint, Session
from threadline.ids import new_id

PROCESSES = 4
APPENDS = 500

WORKER = r"""
import asyncio, sys
import threadline
from threadline import Checkpoint, Message

async def main(url, session_id, tenant_id, worker, appends):
    store = await threadline.connect(url, migrate=False)
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for i in range(appends):
            message = Message(session_id=session_id, tenant_id=tenant_id,
                              role="user" if i % 2 == 0 else "assistant",
                              content=f"w{worker}-{i}")
            await store.save_message(message)
            if i % 50 == 0:
                await store.create_checkpoint(Checkpoint(
                    tenant_id=tenant_id, session_id=session_id, node_id=f"w{worker}-{i}"))
        print("done", flush=True)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
"""


async def test_four_processes_append_to_one_session(make_url: Callable[..., str]) -> None:
    url = make_url(schema="multiprocess", max_size=2)
    store = await threadline.connect(url)
    try:
        session = await store.create_session(Session(tenant_id=new_id()))
        env = {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-postgres"}
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                url,
                session.id,
                session.tenant_id,
                str(w),
                str(APPENDS),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )  # fmt: skip
            for w in range(PROCESSES)
        ]
        for worker in workers:  # every process connected before any starts writing
            assert worker.stdout is not None
            assert (await asyncio.wait_for(worker.stdout.readline(), 30)).strip() == b"ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), 60)
        assert [w.returncode for w in workers] == [0] * PROCESSES
        assert all(out.strip() == b"done" for out, _ in outputs)

        messages = await store.get_messages(session.tenant_id, session.id)
        assert len(messages) == PROCESSES * APPENDS
        assert [m.seq for m in messages] == list(range(1, PROCESSES * APPENDS + 1))
        contents = {m.content for m in messages}
        assert contents == {f"w{w}-{i}" for w in range(PROCESSES) for i in range(APPENDS)}
        for w in range(PROCESSES):  # each process's own appends kept their order
            mine = [int(m.content[len(f"w{w}-") :]) for m in messages
                    if m.content.startswith(f"w{w}-")]  # fmt: skip
            assert mine == list(range(APPENDS))
        assert await store.count_messages(session.tenant_id, session.id) == PROCESSES * APPENDS
        checkpoints = await store.list_checkpoints(session.tenant_id, session_id=session.id)
        assert [c.version for c in checkpoints] == list(range(1, PROCESSES * 10 + 1))
        last = await store.create_checkpoint(
            Checkpoint(tenant_id=session.tenant_id, session_id=session.id)
        )
        assert last.version == PROCESSES * 10 + 1
    finally:
        await store.close()
