"""Child process of test_compaction.py: ``URL TENANT SESSION MARKER MODE`` compacts SESSION
(MODE ``compact``: ``agent.compact``; ``chat``: a turn over the budget) with a summarizer
that creates MARKER and then hangs, so the parent can kill it mid-summarize."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import threadline
from threadline.models import Message


async def main(url: str, tenant: str, session: str, marker: str, mode: str) -> None:
    async def hang(messages: Sequence[Message]) -> str:
        Path(marker).write_text(str(len(messages)))
        await asyncio.sleep(3600)
        return "never"

    store = await threadline.connect(url)
    agent = await (
        threadline.AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(tenant)
        .with_session_id(session)
        .with_provider("echo")
        .with_compaction(max_tokens=50, keep_rounds=1, summarizer=hang)
        .build()
    )
    if mode == "compact":
        await agent.compact()
    else:
        await agent.chat("one more question that goes over the budget")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
