"""Benchmark the threadline Redis store against raw redis-py sending the same commands.

Usage::

    python benchmarks/bench_redis.py [--url redis://127.0.0.1:6379/0] [--quick]

Workloads (as in ``bench_postgres.py``):

* **W1** 2,000 single appends to one session, one after the other.
* **W2** 10,000 appends to one session in batches of 100.
* **W3** the last 20 messages of a 10,000-message session (10 rounds of the sliding
  window), read 500 times: p50 and p95 latency.
* **W4** 200 sessions x 20 appends (and creating each session), from 16 concurrent tasks.

Systems:

* ``threadline``: ``threadline.connect("redis://...")`` and the public ``Store`` API.
* ``raw redis-py``: the store's own Lua scripts (``EVALSHA``) on a plain
  ``redis.asyncio`` pool with the same arguments encoded in advance, replies left as
  strings: what Redis and the client cost without the store around them.
* ``agents RedisSession``: openai-agents' ``RedisSession`` (``add_items``/``get_items``)
  when installed (skipped otherwise).

Each system writes under a key prefix of its own, deleted at the end (nothing else on the
server is touched). Ratios are threadline / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from typing import Any

import redis.asyncio as aioredis

import threadline
from threadline import Message, Session
from threadline.ids import new_id

os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-redis")

from _common import best, run_concurrently

from threadline_redis.codec import encode_message, session_row, time_key
from threadline_redis.scripts import SCRIPTS

DEFAULT_URL = os.environ.get("THREADLINE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POOL = 16
USER = new_id()
_EPOCH_US = 62_135_596_800 * 1_000_000


class Sizes:
    """Workload sizes (``--quick`` divides them by 10)."""

    def __init__(self, quick: bool) -> None:
        d = 10 if quick else 1
        self.w1 = 2000 // d
        self.w2 = 10_000 // d
        self.batch = 100
        self.w3_session = 10_000 // d
        self.w3_reads = 500 // d
        self.w3_last = 20
        self.w4_sessions = 200 // d
        self.w4_messages = 20
        self.w4_tasks = 16


def text(i: int) -> str:
    """A message body of typical chat length."""
    return f"message {i}: " + "lorem ipsum dolor sit amet " * 6


def role(i: int) -> str:
    return "user" if i % 2 == 0 else "assistant"


class System:
    """One store under test; subclasses do each workload with their own API."""

    name = "?"
    prefix = ""

    async def open(self, url: str) -> None: ...

    async def close(self) -> None: ...

    async def w1(self, n: int) -> None: ...

    async def w2(self, n: int, batch: int) -> None: ...

    async def w3_prepare(self, n: int) -> None: ...

    async def w3_read(self, last: int) -> int:
        return 0

    async def w4_session(self, index: int, messages: int) -> None: ...


class ThreadlineSystem(System):
    """The threadline Redis store through the public ``Store`` API."""

    name = "threadline"

    async def open(self, url: str) -> None:
        self.prefix = f"bench-tl-{secrets.token_hex(4)}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.store = await threadline.connect(
                f"{url}?prefix={self.prefix}&max_connections={POOL}"
            )
        self.tenant = new_id()

    async def close(self) -> None:
        await self.store.close()

    async def _session(self) -> str:
        return (await self.store.create_session(Session(tenant_id=self.tenant))).id

    def _message(self, sid: str, i: int) -> Message:
        return Message(session_id=sid, tenant_id=self.tenant, user_id=USER, role=role(i),
                       content=text(i))  # fmt: skip

    async def w1(self, n: int) -> None:
        sid = await self._session()
        for i in range(n):
            await self.store.save_message(self._message(sid, i))

    async def w2(self, n: int, batch: int) -> None:
        sid = await self._session()
        for start in range(0, n, batch):
            await self.store.save_messages(
                [self._message(sid, i) for i in range(start, start + batch)]
            )

    async def w3_prepare(self, n: int) -> None:
        self.w3 = await self._session()
        for start in range(0, n, 500):
            await self.store.save_messages(
                [self._message(self.w3, i) for i in range(start, min(n, start + 500))]
            )

    async def w3_read(self, last: int) -> int:
        return len(await self.store.load_window(self.tenant, self.w3, last // 2))

    async def w4_session(self, index: int, messages: int) -> None:
        sid = await self._session()
        for i in range(messages):
            await self.store.save_message(self._message(sid, i))


class RawSystem(System):
    """The store's scripts on a plain redis-py pool: no models, no dispatch, no decoding."""

    name = "raw redis-py"

    async def open(self, url: str) -> None:
        self.prefix = f"bench-raw-{secrets.token_hex(4)}"
        self.redis = aioredis.Redis.from_url(url, decode_responses=True, max_connections=POOL)
        self.scripts = {n: self.redis.register_script(s) for n, s in SCRIPTS.items()}
        self.tenant = new_id()

    async def close(self) -> None:
        await self.redis.aclose()

    async def _run(self, name: str, *args: str | int) -> Any:
        now = time.time_ns() // 1000
        argv = [self.prefix, now // 1000, f"{now + _EPOCH_US:018d}", *args]
        return await self.scripts[name](args=argv)

    async def _session(self) -> str:
        session = Session(tenant_id=self.tenant)
        created = time_key(session.created_at)
        await self._run("create_session", self.tenant, session.id, "", "",
                        session_row(session), created, created, "")  # fmt: skip
        return session.id

    def _args(self, sid: str, first: int, count: int) -> list[str | int]:
        args: list[str | int] = [self.tenant, sid, count]
        now = datetime.now(timezone.utc)
        for i in range(first, first + count):
            m = Message(session_id=sid, tenant_id=self.tenant, user_id=USER, role=role(i),
                        content=text(i), created_at=now)  # fmt: skip
            args += (m.id, m.role, encode_message(m))
        return args

    async def w1(self, n: int) -> None:
        sid = await self._session()
        for _ in range(n):
            await self._run("save_messages", *self._args(sid, 0, 1))

    async def w2(self, n: int, batch: int) -> None:
        sid = await self._session()
        for start in range(0, n, batch):
            await self._run("save_messages", *self._args(sid, start, batch))

    async def w3_prepare(self, n: int) -> None:
        self.w3 = await self._session()
        for start in range(0, n, 500):
            await self._run("save_messages", *self._args(self.w3, start, min(500, n - start)))

    async def w3_read(self, last: int) -> int:
        # what the store's window sends: a page backwards, then the system messages before it
        page = await self._run("read_messages", self.tenant, self.w3, 0, "", 80, "1", "")
        lowest = page[-1]
        await self._run("read_messages", self.tenant, self.w3, 0, lowest, "", "0", "system")
        return min(last, len(page) // 2)

    async def w4_session(self, index: int, messages: int) -> None:
        sid = await self._session()
        for i in range(messages):
            await self._run("save_messages", *self._args(sid, i, 1))


class AgentsRedisSystem(System):
    """openai-agents' ``RedisSession``."""

    name = "agents RedisSession"

    async def open(self, url: str) -> None:
        from agents.extensions.memory.redis_session import RedisSession

        self.prefix = f"bench-agents-{secrets.token_hex(4)}"
        self.redis = aioredis.Redis.from_url(url, max_connections=POOL)
        self.cls = RedisSession

    def _session(self) -> Any:
        return self.cls(new_id(), redis_client=self.redis, key_prefix=self.prefix)

    async def close(self) -> None:
        await self.redis.aclose()

    async def w1(self, n: int) -> None:
        session = self._session()
        for i in range(n):
            await session.add_items([{"role": "user", "content": text(i)}])

    async def w2(self, n: int, batch: int) -> None:
        session = self._session()
        for start in range(0, n, batch):
            await session.add_items(
                [{"role": role(i), "content": text(i)} for i in range(start, start + batch)]
            )

    async def w3_prepare(self, n: int) -> None:
        self.w3 = self._session()
        for start in range(0, n, 500):
            await self.w3.add_items(
                [{"role": role(i), "content": text(i)} for i in range(start, min(n, start + 500))]
            )

    async def w3_read(self, last: int) -> int:
        return len(await self.w3.get_items(limit=last))

    async def w4_session(self, index: int, messages: int) -> None:
        session = self._session()
        for i in range(messages):
            await session.add_items([{"role": role(i), "content": text(i)}])


async def measure(system: System, sizes: Sizes) -> dict[str, float]:
    """Run W1..W4 on ``system``; throughputs in messages/s, latencies in ms."""
    out: dict[str, float] = {}
    started = time.perf_counter()
    await system.w1(sizes.w1)
    out["W1"] = sizes.w1 / (time.perf_counter() - started)
    started = time.perf_counter()
    await system.w2(sizes.w2, sizes.batch)
    out["W2"] = sizes.w2 / (time.perf_counter() - started)
    await system.w3_prepare(sizes.w3_session)
    for _ in range(20):
        await system.w3_read(sizes.w3_last)
    latencies = []
    for _ in range(sizes.w3_reads):
        started = time.perf_counter()
        got = await system.w3_read(sizes.w3_last)
        latencies.append((time.perf_counter() - started) * 1000)
        assert got == sizes.w3_last, (system.name, got)
    latencies.sort()
    out["W3 p50"] = statistics.median(latencies)
    out["W3 p95"] = latencies[int(len(latencies) * 0.95) - 1]
    total = sizes.w4_sessions * sizes.w4_messages
    started = time.perf_counter()
    await run_concurrently(
        sizes.w4_tasks, sizes.w4_sessions, lambda i: system.w4_session(i, sizes.w4_messages)
    )
    out["W4"] = total / (time.perf_counter() - started)
    return out


def print_table(results: dict[str, dict[str, float] | str], sizes: Sizes) -> None:
    """A Markdown table of the results, with threadline / other ratios."""
    rows = [
        ("W1", f"W1 {sizes.w1:,} single appends (msg/s)"),
        ("W2", f"W2 {sizes.w2:,} in batches of {sizes.batch} (msg/s)"),
        ("W3 p50", f"W3 last {sizes.w3_last} of {sizes.w3_session:,}, p50 (ms)"),
        ("W3 p95", f"W3 last {sizes.w3_last} of {sizes.w3_session:,}, p95 (ms)"),
        ("W4", f"W4 {sizes.w4_sessions}x{sizes.w4_messages}, {sizes.w4_tasks} tasks (msg/s)"),
    ]
    names = list(results)
    print("| workload | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    ours = results.get("threadline")
    for key, label in rows:
        cells = []
        for name in names:
            value = results[name]
            if isinstance(value, str):
                cells.append(value)
                continue
            number = value[key]
            cell = f"{number:,.2f}" if key.startswith("W3") else f"{number:,.0f}"
            if isinstance(ours, dict) and name != "threadline" and number:
                cell += f" ({ours[key] / number:.2f}x)"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n(x) = threadline / that system: above 1 means threadline is faster for msg/s,")
    print("      below 1 means threadline is faster for ms.")


async def _delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.unlink(*keys[i : i + 500])
    finally:
        await client.aclose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="the Redis server")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeat", type=int, default=2, help="runs of threadline and raw")
    args = parser.parse_args()
    sizes = Sizes(args.quick)
    info = await aioredis.Redis.from_url(args.url).info("server")
    results: dict[str, dict[str, float] | str] = {}
    prefixes: list[str] = []
    try:
        core: list[type[System]] = [RawSystem, ThreadlineSystem]
        runs: dict[str, list[dict[str, float]]] = {cls.name: [] for cls in core}
        for _ in range(max(1, args.repeat)):  # interleaved, so drift hits both alike
            for cls in core:
                system = cls()
                await system.open(args.url)
                prefixes.append(system.prefix)
                try:
                    runs[cls.name].append(await measure(system, sizes))
                finally:
                    await system.close()
        results["threadline"] = best(runs["threadline"])
        results["raw redis-py"] = best(runs["raw redis-py"])
        other = AgentsRedisSystem()
        try:
            await other.open(args.url)
        except ImportError as exc:
            results[other.name] = f"not installed ({exc.name})"
        else:
            prefixes.append(other.prefix)
            try:
                results[other.name] = await measure(other, sizes)
            except Exception as exc:  # a third-party failure must not hide our numbers
                results[other.name] = f"failed: {type(exc).__name__}"
            finally:
                await other.close()
    finally:
        for prefix in prefixes:
            await _delete_prefix(args.url, prefix)
    print(
        f"\nthreadline-redis benchmark: Redis {info['redis_version']} at {args.url}, pool {POOL}, "
        f"Python {sys.version.split()[0]}, best of {max(1, args.repeat)} for threadline and raw\n"
    )
    print_table(results, sizes)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
