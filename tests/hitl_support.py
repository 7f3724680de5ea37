"""Stores and child processes for the human-in-the-loop tests (interrupts, approvals, fan-out).

``store_url`` gives one empty store per test on memory, SQLite, PostgreSQL (a schema in a
database made for the module; skipped when the server is down, failed under CI) and
fsspec on local disk. ``run_child`` runs a script in a fresh ``python`` process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STORES = ("memory", "sqlite", "postgres", "fsspec")


@pytest.fixture(scope="module")
def hitl_postgres() -> Iterator[str]:
    """A database for this module on the shared PostgreSQL server."""
    from reliability._servers import (
        _unreachable_errors,
        fresh_postgres_database,
        postgres_unreachable,
    )

    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(fresh_postgres_database("threadline_hitl"))
    except _unreachable_errors() as exc:
        postgres_unreachable(f"{type(exc).__name__}: {exc}")
    with stack:
        yield url


def make_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of ``kind`` for one test."""
    if kind == "memory":
        return f"memory://hitl-{secrets.token_hex(4)}"
    pytest.importorskip(f"threadline_{kind}")  # the core-only envs have the memory store
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'hitl.db'}"
    if kind == "fsspec":
        return f"file://{tmp_path / 'hitl-store'}"
    database: str = request.getfixturevalue("hitl_postgres")
    return f"{database}?schema=hitl_{secrets.token_hex(4)}&max_size=4"


def run_child(script: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (only our store plugins load)."""
    paths = [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


# -- the agents the tests (and their child processes) run ----------------------------------

TENANT = "019bda9f-0000-7000-8000-0000000000a1"
USER = "019bda9f-0000-7000-8000-0000000000b2"
OTHER_USER = "019bda9f-0000-7000-8000-0000000000b3"


def note(log: str, line: str) -> None:
    """Append one line to the log file the test counts executions with."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def ask_agent(store: object, log: str, *, user: str = USER) -> object:
    """A graph agent: ``draft`` asks the model, runs an expensive step, asks a person
    twice; ``send`` records what was decided."""
    from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy

    strategy = Strategy("ask-twice")

    @strategy.node("draft")
    async def draft(ctx: GraphContext, text: str) -> dict[str, object]:
        note(log, "draft")
        reply = await ctx.llm(text)
        cost = await ctx.once("estimate", lambda: note(log, "estimate") or 42)
        first = await ctx.interrupt({"question": "send this draft?", "draft": reply})
        second = await ctx.interrupt({"question": "really?", "first": first})
        return {"reply": reply, "cost": cost, "answers": [first, second]}

    @strategy.node("send")
    async def send(ctx: GraphContext, decided: dict[str, object]) -> dict[str, object]:
        note(log, "send")
        return decided

    strategy.edge(strategy.start, draft).edge(draft, send).edge(send, strategy.finish)
    return GraphAgent(
        strategy, provider="echo", tenant_id=TENANT, user_id=user, features=[Persistency(store)]
    )


def pay_tool(log: str) -> object:
    """A tool that needs approval and notes every payment it makes."""
    from threadline.runtime.approvals import requires_approval

    @requires_approval
    def pay(to: str, amount: float) -> str:
        """Pay someone."""
        note(log, f"pay {to} {amount}")
        return f"paid {amount} to {to}"

    return pay


async def chat_agent(store: object, log: str, session_id: str | None = None) -> object:
    """A chat agent of :data:`TENANT` whose ``pay`` tool waits for approval."""
    import threadline

    builder = (
        threadline.AgentBuilder("You pay people.")
        .with_store(store)  # type: ignore[arg-type]
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider("echo")
        .with_tools([pay_tool(log)])  # type: ignore[list-item]
    )
    if session_id is not None:
        builder.with_session_id(session_id)
    return await builder.build()


async def chat_main(argv: list[str]) -> None:
    """``chat URL SID LOG`` holds a payment; ``approve URL CALL LOG [ARGS]`` and
    ``reject URL CALL LOG REASON`` decide it; each prints JSON."""
    import json

    import threadline
    from threadline.runtime.approvals import ApprovalRequired

    command, url, key, log = argv[:4]
    store = await threadline.connect(url)
    try:
        if command == "chat":
            agent: Any = await chat_agent(store, log, key)
            pieces = [p async for p in agent.chat_stream('tool:pay {"to": "ada", "amount": 10}')]
            held = pieces[-1]
            assert isinstance(held, ApprovalRequired), pieces
            print(json.dumps({"call_id": held.calls[0].id}), flush=True)
            return
        agent = await chat_agent(store, log)
        if command == "approve":
            arguments = json.loads(argv[4]) if argv[4:] else None
            stream = agent.approve(key, arguments=arguments)
        else:
            stream = agent.reject(key, argv[4])
        try:
            text = "".join([p async for p in stream])
        except threadline.ThreadlineError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
            return
        print(json.dumps({"text": text}), flush=True)
    finally:
        await store.close()


CHAT = "import asyncio, sys, hitl_support; asyncio.run(hitl_support.chat_main(sys.argv[1:]))"


async def child_main(argv: list[str]) -> None:
    """What a child process runs: ``start URL SID LOG`` (then waits to be killed) or
    ``resume URL IDENT JSON LOG``."""
    import json
    import sys

    import threadline

    command, url = argv[0], argv[1]
    store = await threadline.connect(url)
    try:
        if command == "start":
            sid, log = argv[2], argv[3]
            agent = ask_agent(store, log)
            result = await agent.run("hello there", session_id=sid)  # type: ignore[attr-defined]
            print(json.dumps({"interrupt_id": result.interrupt_id}), flush=True)
            if argv[4:] == ["hang"]:
                import asyncio

                await asyncio.sleep(3600)  # the test SIGKILLs this process here
        elif command == "resume":
            ident, value, log = argv[2], json.loads(argv[3]), argv[4]
            agent = ask_agent(store, log)
            result = await agent.resume(ident, value)  # type: ignore[attr-defined]
            interrupted = getattr(result, "interrupted", False)
            out = {"interrupt_id": result.interrupt_id} if interrupted else {"result": result}
            print(json.dumps(out), flush=True)
        else:
            sys.exit(f"unknown command {command}")
    finally:
        await store.close()


CHILD = "import asyncio, sys, hitl_support; asyncio.run(hitl_support.child_main(sys.argv[1:]))"


def fanout_agent(store: object, log: str, crash: str = "") -> object:
    """``plan`` fans out to ``a``, ``b``, ``c`` and joins at ``join``. With ``crash`` set,
    ``c`` waits until ``a`` and ``b`` are checkpointed, then ``exit``s the process (or
    ``raise``s); with ``ask``, ``b`` asks a person first."""
    import asyncio

    from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy

    strategy = Strategy("fan")

    @strategy.node("plan")
    async def plan(ctx: GraphContext, text: str) -> str:
        note(log, "plan")
        return text

    def branch(name: str) -> object:
        async def run(ctx: GraphContext, text: str) -> str:
            note(log, name)
            ctx.state[name] = True
            ctx.append("assistant", f"{name} looked at {text}")
            if name == "b" and crash == "ask":
                answer = await ctx.interrupt({"branch": "b"})
                return f"B:{text}:{answer}"
            if name == "c" and crash:
                for _ in range(600):
                    done = [
                        c
                        for c in await ctx.persistency().get_checkpoints()
                        if c.properties.get("kind") == "branch"
                    ]
                    if len(done) >= 2 or crash == "ask":
                        break
                    await asyncio.sleep(0.05)
                if crash == "exit":
                    import os

                    os._exit(9)
                if crash == "raise":
                    raise RuntimeError("branch c failed")
            return f"{name.upper()}:{text}"

        return strategy.add_node(name, run)

    a, b, c = branch("a"), branch("b"), branch("c")

    @strategy.node("join")
    async def join(ctx: GraphContext, outputs: list[str]) -> dict[str, object]:
        note(log, "join")
        return {"outputs": outputs, "state": dict(ctx.state), "said": len(ctx.history)}

    strategy.edge(strategy.start, plan).parallel(plan, [a, b, c], join=join)
    strategy.edge(join, strategy.finish)
    return GraphAgent(strategy, provider="echo", tenant_id=TENANT, features=[Persistency(store)])


async def fanout_main(argv: list[str]) -> None:
    """``URL SID LOG CRASH``: run the fan-out agent once and print its result as JSON."""
    import json

    import threadline

    url, sid, log, crash = argv
    store = await threadline.connect(url)
    try:
        agent: Any = fanout_agent(store, log, crash)
        print(json.dumps(await agent.run("x", session_id=sid)), flush=True)
    finally:
        await store.close()


FANOUT = "import asyncio, sys, hitl_support; asyncio.run(hitl_support.fanout_main(sys.argv[1:]))"
