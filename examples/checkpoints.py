"""Checkpoints (Koog's persistency): a graph agent killed mid-run, resumed, then rolled back.

The agent handles a hotel request in four nodes: ``understand`` -> ``book`` -> ``draft``
-> ``confirm``. ``book`` lets the model call the ``book_room`` tool, whose inverse
``cancel_room`` is registered for rollbacks. A checkpoint is written after every node.

1. crash: the agent runs in a child process that dies (``os._exit``) inside ``draft``;
2. resume: the same session id runs again here; it starts at ``draft`` with the saved
   history and state, and ``understand`` and ``book`` do not run again;
3. rollback: back to the checkpoint taken before ``book``; the booking made after it is
   cancelled by the inverse tool, and the next run books again from there.

    python examples/checkpoints.py                          # sqlite:///checkpoints_demo.db
    python examples/checkpoints.py --store memory://        # one process: the crash is simulated
    python examples/checkpoints.py --crash-at book          # die somewhere else

Offline it uses the built-in ``echo`` provider, which calls a tool when asked with
``tool:NAME {json}``. The default store needs threadline-sqlite.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

import threadline
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy, inverse_of

DEFAULT_STORE = "sqlite:///checkpoints_demo.db"
NODES = ("understand", "book", "draft", "confirm")


class SimulatedCrash(Exception):
    """Stands in for the process dying when the store cannot outlive it (memory://)."""


@dataclasses.dataclass
class Request:
    """The understood request; a dataclass input that checkpoints rebuild by type name."""

    guest: str
    nights: int


def book_room(guest: str, nights: int) -> str:
    """Book a room for the guest."""
    booking = f"booking-{guest.lower()}-{nights}n"
    print(f"    [tool] booked a room: {booking}")
    return booking


@inverse_of(book_room)
def cancel_room(guest: str, nights: int, tool_result: str) -> None:
    """Undo :func:`book_room` (gets the same arguments and the booking it returned)."""
    print(f"    [undo] cancelled {tool_result}")


def build_strategy(crash_at: str | None, in_process: bool) -> Strategy:
    """The four nodes; ``crash_at`` names the node in which the process dies."""
    strategy = Strategy("hotel-desk")

    def enter(name: str) -> None:
        print(f"  -> node {name}")
        if name == crash_at:
            print(f"  !! crash inside {name}")
            if in_process:
                raise SimulatedCrash(name)
            os._exit(17)  # no cleanup, no tombstone: like a killed process

    @strategy.node("understand")
    async def understand(ctx: GraphContext, text: str) -> Request:
        enter("understand")
        await ctx.llm(text)
        guest = text.split()[-1].strip(".")
        ctx.state["guest"] = guest
        return Request(guest=guest, nights=2)

    @strategy.node("book")
    async def book(ctx: GraphContext, request: Request) -> str:
        enter("book")
        args = f'{{"guest": "{request.guest}", "nights": {request.nights}}}'
        await ctx.llm(f"tool:book_room {args}")  # the (echo) model calls the tool
        booking = ctx.history[-2].content  # the tool's result
        ctx.state["booking"] = booking
        return booking

    @strategy.node("draft")
    async def draft(ctx: GraphContext, booking: str) -> str:
        enter("draft")
        return await ctx.llm(f"Your room is booked ({booking}).")

    @strategy.node("confirm")
    async def confirm(ctx: GraphContext, text: str) -> str:
        enter("confirm")
        return f"{text} See you soon, {ctx.state['guest']}!"

    strategy.edge(strategy.start, understand).edge(understand, book)
    strategy.edge(book, draft).edge(draft, confirm).edge(confirm, strategy.finish)
    return strategy


def make_agent(store: str, crash_at: str | None = None) -> GraphAgent:
    in_process = store.startswith("memory://")
    return GraphAgent(
        build_strategy(crash_at, in_process),
        provider="echo",
        tools=[book_room],
        features=[Persistency(storage=store, automatic=True)],
    )


async def show_checkpoints(agent: GraphAgent, session_id: str) -> None:
    for c in await agent.persistency(session_id).get_checkpoints():
        what = "tombstone (run finished)" if c.tombstone else f"next: {c.node_id}"
        print(
            f"    v{c.version} {c.properties.get('kind', '?'):<9} {what:<26} "
            f"input_type={c.input_type} messages={len(c.history)}"
        )


async def child(store: str, session_id: str, crash_at: str) -> None:
    """Run the agent until it dies in ``crash_at`` (the first step of the demo)."""
    agent = make_agent(store, crash_at)
    await agent.run("I need a room for Ada.", session_id=session_id)
    await agent.close()


async def crash_in_process(store: str, session_id: str, crash_at: str) -> threadline.Store:
    """memory:// lives in this process only: share one store and simulate the crash."""
    shared = await threadline.connect(store)
    agent = GraphAgent(
        build_strategy(crash_at, in_process=True),
        provider="echo",
        tools=[book_room],
        features=[Persistency(storage=shared)],
    )
    try:
        await agent.run("I need a room for Ada.", session_id=session_id)
    except SimulatedCrash:
        pass
    return shared


async def demo(store: str, crash_at: str) -> None:
    session_id = threadline.new_id()
    print(f"store {store}, session {session_id}\n")
    storage: Any = store
    print(f"1. crash: the agent dies inside {crash_at!r}")
    if store.startswith("memory://"):
        storage = await crash_in_process(store, session_id, crash_at)
    else:
        argv = ["--store", store, "--session", session_id, "--crash-at", crash_at]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, *argv, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        print(out.decode(), end="")
        print(f"  child process exited with code {proc.returncode}")
    agent = GraphAgent(
        build_strategy(None, in_process=False),
        provider="echo",
        tools=[book_room],
        features=[Persistency(storage=storage)],
    )
    await show_checkpoints(agent, session_id)

    print("\n2. resume: the same session id runs again (nodes already done are skipped)")
    result = await agent.run("(not used when resuming)", session_id=session_id)
    print(f"  result: {result}")
    await show_checkpoints(agent, session_id)

    print("\n3. rollback to the checkpoint taken before 'book'")
    p = agent.persistency(session_id)
    before_book = next(c for c in await p.get_checkpoints() if c.node_id == "book")
    restored = await p.rollback_to_checkpoint(before_book.id)
    print(
        f"  restored v{before_book.version} as v{restored.version}: next node "
        f"{restored.node_id}, {len(restored.history)} messages, state {restored.state}"
    )
    result = await agent.run("(not used when resuming)", session_id=session_id)
    print(f"  result: {result}")
    await show_checkpoints(agent, session_id)
    await agent.close()
    if storage is not store:
        await storage.close()


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # os._exit drops buffers
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"store URL ({DEFAULT_STORE})")
    parser.add_argument("--crash-at", choices=NODES, default="draft", help="node to die in")
    parser.add_argument("--session", help="(internal) run as the crashing child process")
    args = parser.parse_args()
    try:
        if args.session:
            asyncio.run(child(args.store, args.session, args.crash_at))
        else:
            asyncio.run(demo(args.store, args.crash_at))
    except threadline.PluginNotInstalledError as exc:
        sys.exit(f"{exc}\n(try --store memory://)")


if __name__ == "__main__":
    main()
