#!/usr/bin/env python
"""How long from the writer's token to a follower in another process? (issue #18)

    python benchmarks/bench_follow.py                  # SQLite, PostgreSQL, Redis
    python benchmarks/bench_follow.py --tokens 400 --rate 200 --stores postgres,redis

The writer is a ``ReplyRecorder`` (what ``chat_stream`` uses) adding ``--tokens`` pieces at
``--rate`` per second; the follower is another process running ``store.follow_reply`` and
stamping each update's arrival (both clocks are this machine's ``time.time()``). A token's
latency is the first arrival at which the follower's text covers it. A warm-up reply is
followed first, so connections are open and the subscription live.

Reference rows (the database alone, same process layout): ``NOTIFY`` per token into a bare
``asyncpg`` ``LISTEN`` connection, and ``PUBLISH`` per token into a bare ``redis-py``
subscriber. SQLite has no push: its followers poll the row, which the writer flushes at most
every ``flush_interval`` (0.1 s), every ``poll_interval`` (0.1 s). Goal: p95 <= 50 ms on
PostgreSQL and Redis. PostgreSQL (``THREADLINE_BENCH_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``) runs in a schema of its own, dropped after;
Redis (``THREADLINE_BENCH_REDIS``) under a key prefix of its own, deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault(
    "THREADLINE_LOAD_PLUGINS", "threadline-sqlite,threadline-postgres,threadline-redis"
)

from _common import environment, percentile, print_table, ratio

import threadline
from threadline.models import Message, Session
from threadline.runtime.streaming import ReplyRecorder

PG = os.environ.get("THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("THREADLINE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
TENANT = "019bda9f-0000-7000-8000-0000000000b5"
CHANNEL = "tl_bench_follow"


# -- the follower process ---------------------------------------------------------------------


def emit(length: int) -> None:
    print(json.dumps([time.time(), length]), flush=True)


async def follow(url: str, session_id: str, replies: int) -> None:
    store = await threadline.connect(url)
    print('"ready"', flush=True)
    for _ in range(replies):
        length = 0
        async for update in store.follow_reply(TENANT, session_id, wait_next=True):
            length += len(update.text)
            emit(length)
        print('"end"', flush=True)
    await store.close()


async def raw_postgres(url: str, tokens: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    done = asyncio.Event()
    length = 0

    def on(_c: Any, _p: int, _ch: str, payload: str) -> None:
        nonlocal length
        length += len(payload)
        emit(length)
        if payload == "$":
            done.set()

    await conn.add_listener(CHANNEL, on)
    print('"ready"', flush=True)
    await done.wait()
    await conn.close()


async def raw_redis(url: str, tokens: int) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    await pubsub.get_message(timeout=5)  # the confirmation
    print('"ready"', flush=True)
    length = 0
    while True:
        msg = await pubsub.get_message(timeout=5)
        if msg is None or msg["type"] != "message":
            continue
        length += len(msg["data"])
        emit(length)
        if msg["data"] == b"$":
            break
    await pubsub.aclose()
    await client.aclose()


# -- the writer -------------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True
    )


def read_until(proc: subprocess.Popen[str], marker: str | None) -> list[tuple[float, int]]:
    """The arrivals the follower printed until ``marker`` (``None``: until it exits)."""
    assert proc.stdout is not None
    seen: list[tuple[float, int]] = []
    for line in proc.stdout:
        value = json.loads(line)
        if value == marker:
            return seen
        if isinstance(value, list):
            seen.append((value[0], value[1]))
    if marker is not None:
        raise RuntimeError(f"follower ended before {marker!r}")
    return seen


def latencies(sent: list[tuple[float, int]], seen: list[tuple[float, int]]) -> list[float]:
    out, j = [], 0
    for at, end in sent:
        while j < len(seen) and seen[j][1] < end:
            j += 1
        if j == len(seen):
            break
        out.append(seen[j][0] - at)
    return out


async def stream(store: threadline.Store, session_id: str, tokens: int, rate: float) -> list:
    template = Message(session_id=session_id, tenant_id=TENANT, role="assistant", content="")
    recorder = ReplyRecorder(store, template, flush_interval=0.1)
    sent, length = [], 0
    for i in range(tokens):
        piece = f" tok{i}"
        length += len(piece)
        sent.append((time.time(), length))
        recorder.add(piece)
        await asyncio.sleep(1 / rate)
    await recorder.finish("complete")
    return sent


async def bench_store(url: str, tokens: int, rate: float) -> list[float]:
    store = await threadline.connect(url)
    try:
        await store.migrate()
        session = await store.create_session(Session(id=threadline.new_id(), tenant_id=TENANT))
        follower = spawn("follow", url, session.id)
        read_until(follower, "ready")
        await asyncio.sleep(0.5)  # the follower subscribes and waits for the next reply
        await stream(store, session.id, 10, rate)  # warm-up
        await asyncio.to_thread(read_until, follower, "end")
        got = asyncio.create_task(asyncio.to_thread(read_until, follower, "end"))
        await asyncio.sleep(0.2)
        sent = await stream(store, session.id, tokens, rate)
        seen = await got
        follower.wait(timeout=30)
        return latencies(sent, seen)
    finally:
        await store.close()


async def bench_raw(kind: str, url: str, tokens: int, rate: float) -> list[float]:
    follower = spawn(kind, url, str(tokens))
    read_until(follower, "ready")
    got = asyncio.create_task(asyncio.to_thread(read_until, follower, None))
    sent, length = [], 0
    if kind == "raw-postgres":
        import asyncpg

        conn = await asyncpg.connect(url)
        send: Any = lambda text: conn.execute("SELECT pg_notify($1, $2)", CHANNEL, text)  # noqa: E731
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        send = lambda text: client.publish(CHANNEL, text)  # noqa: E731
    for i in range(tokens):
        piece = f" tok{i}"
        length += len(piece)
        sent.append((time.time(), length))
        await send(piece)
        await asyncio.sleep(1 / rate)
    await send("$")
    seen = await got
    follower.wait(timeout=30)
    if kind == "raw-postgres":
        await conn.close()
    else:
        await client.aclose()
    return latencies(sent, seen)


async def main(args: argparse.Namespace) -> None:
    print(f"follow latency, writer token -> follower in another process; {environment()}")
    print(f"{args.tokens} tokens at {args.rate:g}/s per store")
    rows = []
    wanted = args.stores.split(",")

    reference: dict[str, float] = {}

    def row(name: str, samples: list[float], note: str, against: str = "") -> None:
        p50, p95 = percentile(samples, 50) * 1000, percentile(samples, 95) * 1000
        if name.startswith("reference"):
            reference[note] = p95
        versus = ratio(p95, reference.get(against)) if against else "-"
        rows.append((name, len(samples), f"{p50:.1f}", f"{p95:.1f}", versus, note))

    if "sqlite" in wanted:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/follow.db"
            row("threadline SQLite", await bench_store(url, args.tokens, args.rate), "polling")
    if "postgres" in wanted:
        schema = f"bench_follow_{secrets.token_hex(3)}"
        import asyncpg

        try:
            admin = await asyncpg.connect(PG)
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"PostgreSQL skipped: {exc}")
        else:
            try:
                samples = await bench_raw("raw-postgres", PG, args.tokens, args.rate)
                row("reference: asyncpg NOTIFY -> LISTEN", samples, "one NOTIFY per token")
                url = f"{PG}?schema={schema}"
                samples = await bench_store(url, args.tokens, args.rate)
                row("threadline PostgreSQL", samples, "LISTEN/NOTIFY", "one NOTIFY per token")
            finally:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await admin.close()
    if "redis" in wanted:
        prefix = f"bench-follow-{secrets.token_hex(3)}"
        import redis

        client = redis.Redis.from_url(REDIS)
        try:
            client.ping()
        except redis.ConnectionError as exc:
            print(f"Redis skipped: {exc}")
        else:
            try:
                samples = await bench_raw("raw-redis", REDIS, args.tokens, args.rate)
                row("reference: redis-py PUBLISH -> SUBSCRIBE", samples, "one PUBLISH per token")
                samples = await bench_store(f"{REDIS}?prefix={prefix}", args.tokens, args.rate)
                row("threadline Redis", samples, "pub/sub", "one PUBLISH per token")
            finally:
                keys = list(client.scan_iter(match=f"{prefix}:*"))
                if keys:
                    client.unlink(*keys)
                client.close()
    print_table(
        "Writer token -> follower (ms)",
        ["store", "tokens", "p50", "p95", "p95 vs reference", "how"],
        rows,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, url, arg = sys.argv[2:5]
        if kind == "follow":
            asyncio.run(follow(url, arg, 2))
        elif kind == "raw-postgres":
            asyncio.run(raw_postgres(url, int(arg)))
        else:
            asyncio.run(raw_redis(url, int(arg)))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        parser.add_argument("--tokens", type=int, default=300)
        parser.add_argument("--rate", type=float, default=100.0, help="tokens per second")
        parser.add_argument("--stores", default="sqlite,postgres,redis")
        asyncio.run(main(parser.parse_args()))
