"""Benchmark ``threadline.transfer.copy_store``: messages per second between stores.

Usage::

    python benchmarks/bench_copy.py [--sessions 50] [--messages 2000] [--batch-size 1000]
        [--concurrency 4] [--postgres postgresql://postgres@127.0.0.1:5432/test]

A source with ``--sessions`` sessions of ``--messages`` messages each (a tenth of them
assistant messages with a tool call, then the tool's answer) is built once per source
kind, then copied to a fresh destination:

* ``sqlite -> postgres`` (the common migration; skipped when the server cannot be
  reached; a database is created for the run and dropped afterwards),
* ``sqlite -> sqlite``,
* ``memory -> sqlite``.

Printed: messages/s of the copy (verification included) and of a rerun that finds
everything copied already. The target is >= 20,000 msg/s for sqlite -> postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault(
    "THREADLINE_LOAD_PLUGINS", "threadline-memory,threadline-sqlite,threadline-postgres"
)

from _common import environment, print_table

import threadline
from threadline import Message, Session, ToolCall
from threadline.ids import new_id
from threadline.store import Store
from threadline.transfer import copy_store

DEFAULT_POSTGRES = os.environ.get(
    "THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _messages(session: Session, n: int) -> Iterator[Message]:
    for i in range(n):
        if i % 10 == 8:
            yield Message(
                session_id=session.id,
                tenant_id=session.tenant_id,
                role="assistant",
                content="",
                tool_calls=[ToolCall(id=f"call_{i}", name="lookup", arguments={"q": i})],
            )
        elif i % 10 == 9:
            yield Message(
                session_id=session.id,
                tenant_id=session.tenant_id,
                role="tool",
                tool_call_id=f"call_{i - 1}",
                content=f"result {i}",
            )
        else:
            yield Message(
                session_id=session.id,
                tenant_id=session.tenant_id,
                role="user" if i % 2 == 0 else "assistant",
                content=f"message {i} " + "lorem ipsum dolor sit amet " * 4,
                metadata={"i": i},
            )


async def fill(store: Store, sessions: int, messages: int) -> None:
    tenant, user = new_id(), new_id()
    for s in range(sessions):
        session = await store.create_session(Session(tenant_id=tenant, user_id=user, title=f"{s}"))
        batch = list(_messages(session, messages))
        for i in range(0, len(batch), 1000):
            await store.save_messages(batch[i : i + 1000])


@contextlib.asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str | None]:
    """A fresh database on the server (its URL), or None when the server is unreachable."""
    import asyncpg

    name = f"threadline_bench_copy_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        print(f"sqlite -> postgres skipped: {type(exc).__name__}: {exc}")
        yield None
        return
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def measure(
    src: Store, dst_url: str, total: int, batch_size: int, concurrency: int
) -> tuple[float, float]:
    dst = await threadline.connect(dst_url)
    try:
        report = await copy_store(src, dst, batch_size=batch_size, concurrency=concurrency)
        assert report.ok and report.total("messages") == total, report.to_dict()
        started = time.perf_counter()
        again = await copy_store(src, dst, batch_size=batch_size, concurrency=concurrency)
        rerun = time.perf_counter() - started
        assert again.ok and again.total("messages") == 0
        return total / report.seconds, total / rerun
    finally:
        await dst.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    total = args.sessions * args.messages
    rows: list[tuple[str, str, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        src_file = Path(tmp) / "source.db"
        sqlite_src = await threadline.connect(f"sqlite:///{src_file}")
        memory_src = await threadline.connect("memory://")
        try:
            started = time.perf_counter()
            await fill(sqlite_src, args.sessions, args.messages)
            await fill(memory_src, args.sessions, args.messages)
            print(
                f"built two sources of {total:,} messages in {time.perf_counter() - started:.1f}s"
            )

            async def run(label: str, src: Store, dst_url: str) -> None:
                rate, rerun = await measure(src, dst_url, total, args.batch_size, args.concurrency)
                rows.append((label, f"{rate:,.0f}", f"{rerun:,.0f}"))
                print(f"{label}: {rate:,.0f} msg/s (rerun {rerun:,.0f} msg/s)")

            async with postgres_database(args.postgres) as pg_url:
                if pg_url is not None:
                    await run("sqlite -> postgres", sqlite_src, pg_url)
            await run("sqlite -> sqlite", sqlite_src, f"sqlite:///{Path(tmp) / 'copy1.db'}")
            await run("memory -> sqlite", memory_src, f"sqlite:///{Path(tmp) / 'copy2.db'}")
        finally:
            await sqlite_src.close()
            await memory_src.close()

    print_table(
        f"copy_store: {args.sessions} sessions x {args.messages:,} messages "
        f"(batch {args.batch_size}, {args.concurrency} sessions at once)\n{environment()}",
        ["copy", "msg/s", "rerun msg/s (verify only)"],
        rows,
    )


if __name__ == "__main__":
    asyncio.run(main())
