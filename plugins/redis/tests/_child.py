"""A separate process for the multi-process tests: ``python _child.py COMMAND ARGS...``.

``append URL GO_DIR NAME TENANT SESSION SINGLES BATCHES``
    open the store, wait for ``GO_DIR/go``, append ``SINGLES`` messages one by one and
    ``BATCHES`` batches of 10, print ``[[id, seq], ...]`` of what was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import warnings

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-redis"

import threadline
from threadline.testing.processes import wait_for_go


async def append(
    url: str, go_dir: str, name: str, tenant: str, session: str, singles: str, batches: str
) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = await threadline.connect(url)
    try:
        wait_for_go(go_dir, name)
        acked = []

        def message(i: int) -> threadline.Message:
            return threadline.Message(
                session_id=session, tenant_id=tenant, role="user", content=f"{name}-{i}"
            )

        for i in range(int(singles)):
            m = await store.save_message(message(i))
            acked.append([m.id, m.seq])
        for b in range(int(batches)):
            batch = [message(100_000 + b * 10 + j) for j in range(10)]
            acked.extend([m.id, m.seq] for m in await store.save_messages(batch))
        return acked
    finally:
        await store.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(append(*sys.argv[2:]))))
