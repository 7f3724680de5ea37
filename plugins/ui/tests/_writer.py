"""Another process writing a reply slowly: ``python _writer.py STORE_URL SESSION_ID WORDS``.

The echo provider streams one word every 0.15 s; the reply is flushed to the store while
it streams (every 0.05 s), as any agent's is.
"""

from __future__ import annotations

import asyncio
import sys

import threadline


async def main(url: str, session_id: str, words: int) -> None:
    agent = await (
        threadline.quick_agent("You are a slow echo.", store=url)
        .with_session_id(session_id)
        .with_provider("echo", delay=0.15)
        .with_flush_interval(0.05)
        .build()
    )
    text = " ".join(f"word{i}" for i in range(words))
    async for _ in agent.chat_stream(text):
        pass
    await agent.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
