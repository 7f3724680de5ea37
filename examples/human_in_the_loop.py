"""Human in the loop: a graph run that waits for a person, and a payment held for approval.

1. ask: a graph agent drafts a reply to a refund request and stops at
   ``ctx.interrupt(...)`` to ask a person whether to send it. ``run`` returns an
   ``Interrupted``; this process then ends. The run waits in the store.
2. answer (another process, a day later): lists the tenant's waiting runs and resumes
   the run with the person's answer. The draft is not written again: the model's reply
   is replayed from the checkpoint, then the run finishes.
3. hold: a chat agent whose ``refund`` tool needs approval; the model calls it, the turn
   stops before the tool runs and the stream ends with an ``ApprovalRequired``.
4. approve (another process): approves the call with a smaller amount; the tool runs and
   the reply streams.

    python examples/human_in_the_loop.py                    # sqlite:///hitl_demo.db
    python examples/human_in_the_loop.py --store memory://  # one process (memory cannot be shared)

Offline it uses the built-in ``echo`` provider, which calls a tool when asked with
``tool:NAME {json}``. The default store needs threadline-sqlite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from typing import Any

import threadline
from threadline.graph import GraphAgent, GraphContext, Interrupted, Persistency, Strategy

DEFAULT_STORE = "sqlite:///hitl_demo.db"
TENANT = "019bda9f-0000-7000-8000-00000000e001"
CHAT_SESSION = "019bda9f-9ffd-7a80-a9e5-88b05e81a7e2"


def refund_desk(store: threadline.Store) -> GraphAgent:
    """draft -> send: ``draft`` asks the model, then asks a person."""
    strategy = Strategy("refund-desk")

    @strategy.node("draft")
    async def draft(ctx: GraphContext, request: str) -> dict[str, Any]:
        text = await ctx.llm(request)  # replayed, not asked again, when resumed
        verdict = await ctx.interrupt({"question": "send this reply?", "draft": text})
        return {"draft": text, "verdict": verdict}

    @strategy.node("send")
    async def send(ctx: GraphContext, decided: dict[str, Any]) -> str:
        if decided["verdict"].get("send"):
            return f"sent: {decided['draft']}"
        return f"not sent ({decided['verdict'].get('note', 'no reason')})"

    strategy.edge(strategy.start, draft).edge(draft, send).edge(send, strategy.finish)
    return GraphAgent(strategy, provider="echo", tenant_id=TENANT, features=[Persistency(store)])


@threadline.requires_approval
def refund(order: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount} on {order}"


async def payments(store: threadline.Store) -> threadline.Agent:
    return await (
        threadline.AgentBuilder("You handle refunds.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_provider("echo")
        .with_session_id(CHAT_SESSION)
        .with_tools([refund])
        .build()
    )


async def ask(store: threadline.Store) -> None:
    session = threadline.new_id()  # a new request each time
    result = await refund_desk(store).run("Please refund order 42.", session_id=session)
    assert isinstance(result, Interrupted)
    print(f"run paused at node {result.node!r}, interrupt {result.interrupt_id}")
    print(f"  asks: {json.dumps(result.payload)}")


async def answer(store: threadline.Store) -> None:
    desk = refund_desk(store)
    for run in await desk.waiting():
        hours = run.age.total_seconds() / 3600
        print(f"waiting: {run.kind} {run.id} at {run.node!r}, {hours:.2f} h old")
        result = await desk.resume(run.id, {"send": True})
        print(f"resumed: {result}")
        calls = await store.list_api_calls(TENANT, run.session_id)
        print(f"model requests for the whole run: {len(calls)}")


async def hold(store: threadline.Store) -> None:
    agent = await payments(store)
    async for piece in agent.chat_stream('tool:refund {"order": "42", "amount": 80}'):
        if isinstance(piece, threadline.ApprovalRequired):
            for call in piece.calls:
                print(f"held for approval: {call.name}({json.dumps(call.arguments)}) {call.id}")
    await agent.close()


async def approve(store: threadline.Store) -> None:
    agent = await payments(store)
    [call] = await agent.pending_approvals()
    smaller = {"order": "42", "amount": 50}
    reply = "".join([p async for p in agent.approve(call.id, arguments=smaller)])
    print(f"approved with a smaller amount: {reply}")
    await agent.close()


STEPS = {"ask": ask, "answer": answer, "hold": hold, "approve": approve}


async def run_step(url: str, step: str) -> None:
    store = await threadline.connect(url)
    try:
        await STEPS[step](store)
    finally:
        await store.close()


def in_another_process(url: str, step: str) -> None:
    done = subprocess.run(
        [sys.executable, __file__, "--store", url, "--step", step], check=False, text=True
    )
    if done.returncode != 0:
        sys.exit(done.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=DEFAULT_STORE)
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        asyncio.run(run_step(args.store, args.step))
        return
    shared = not args.store.startswith("memory://")
    for first, second in (("ask", "answer"), ("hold", "approve")):
        if shared:
            asyncio.run(run_step(args.store, first))
            in_another_process(args.store, second)  # a day later, somewhere else
        else:
            asyncio.run(_both(args.store, first, second))


async def _both(url: str, first: str, second: str) -> None:
    store = await threadline.connect(url)
    try:
        await STEPS[first](store)
        await STEPS[second](store)
    finally:
        await store.close()


if __name__ == "__main__":
    main()
