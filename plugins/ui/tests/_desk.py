"""Runs that wait for a person, written by another process (also ``--agent _desk:agent``).

``python _desk.py STORE_URL`` starts a refund desk graph run that stops at
``ctx.interrupt`` (this tenant and another), and two chat turns whose ``refund`` tool
call waits for approval; it prints nothing and exits, the runs wait in the store.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import threadline
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.runtime.agent import LOCAL_TENANT_ID

DESK = "01a00000-0000-7000-8000-00000000de51"
PAY = "01a00000-0000-7000-8000-0000000000a1"
PAY_TOO = "01a00000-0000-7000-8000-0000000000a2"
OTHER_DESK = "01a00000-0000-7000-8000-0000000000d2"
OTHER_TENANT = "00000000-0000-7000-8000-0000000000aa"


def strategy() -> Strategy:
    """draft (asks the model, then waits for a person) -> send -> finish."""
    s = Strategy("refund-desk")

    @s.node("draft")
    async def draft(ctx: GraphContext, request: str) -> dict[str, Any]:
        text = await ctx.llm(request)
        verdict = await ctx.interrupt({"question": "send this reply?", "draft": text})
        return {"draft": text, "send": bool(verdict.get("send"))}

    @s.node("send")
    async def send(ctx: GraphContext, decided: dict[str, Any]) -> str:
        return ("sent: " if decided["send"] else "dropped: ") + str(decided["draft"])

    s.edge(s.start, draft).edge(draft, send).edge(send, s.finish)
    return s


def make_agent(storage: Any, tenant_id: str = LOCAL_TENANT_ID) -> GraphAgent:
    """The refund desk on ``storage`` (a store URL) for ``tenant_id``."""
    return GraphAgent(
        strategy(), provider="echo", tenant_id=tenant_id, features=[Persistency(storage)]
    )


@threadline.requires_approval
def refund(order: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount} on {order}"


async def main(url: str) -> None:
    for tenant, session in ((LOCAL_TENANT_ID, DESK), (OTHER_TENANT, OTHER_DESK)):
        async with make_agent(url, tenant) as desk:
            await desk.run("Please refund order 42.", session_id=session)
    for session, amount in ((PAY, 80), (PAY_TOO, 999)):
        chat = await (
            threadline.quick_agent("You handle refunds.", store=url)
            .with_session_id(session)
            .with_provider("echo")
            .with_tools([refund])
            .build()
        )
        async for _ in chat.chat_stream(f'tool:refund {{"order": "42", "amount": {amount}}}'):
            pass
        await chat.close()


if os.environ.get("THREADLINE_STORE"):
    agent = make_agent(os.environ["THREADLINE_STORE"])
    """For ``threadline ui --agent _desk:agent`` (the store in ``$THREADLINE_STORE``)."""

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
