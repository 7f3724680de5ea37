"""Conformance: what a store must do from an index, and what its storage may grow with.

A window, a count or an id lookup must not cost more as the session or the store grows,
and checkpoint storage must follow the history, not the number of checkpoints times it.

* With the optional ``rows_touched`` fixture (a callable returning how many stored rows
  or records the store has read or examined so far) the checks count rows: exact, fast.
* Without it they compare timings at two sizes (medians of interleaved runs, a generous
  factor, one second chance): marked ``slow``.
* ``storage_bytes`` (optional; a callable, sync or async, returning the bytes the
  store's data takes now) enables the checkpoint storage check.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from threadline import ApiCall, Checkpoint, Message, Store
from threadline.testing._support import (
    Conversation,
    measured,
    new_conversation,
    optional_fixture,
)

SMALL = 100
"""Messages in the small session (or store) of a comparison."""
LARGE = 10_000
"""Messages in the large one, for timings."""
LARGE_COUNTED = 1_000
"""Messages in the large one when rows are counted (exact, so smaller suffices)."""
FACTOR = 5
"""How much slower the large side may be, on timings' medians."""
FLOOR = 20e-6
"""Timings below this (seconds) count as this: noise, not cost."""
RUNS = 15
"""Interleaved runs per operation and size."""

Op = Callable[[], Awaitable[object]]


async def fill(store: Store, conv: Conversation, n: int) -> list[Message]:
    """``n`` messages in ``conv``: a system message, then user/assistant turns, in batches."""
    out: list[Message] = []
    if n:
        out += await store.save_messages([conv.message("system", "you are terse")])
    while len(out) < n:
        size = min(500, n - len(out))
        start = len(out)
        out += await store.save_messages(
            [
                conv.message("user" if (start + i) % 2 else "assistant", f"turn {start + i} " * 8)
                for i in range(size)
            ]
        )
    return out


async def _time(op: Op) -> float:
    started = time.perf_counter()
    await op()
    return time.perf_counter() - started


async def compare_timings(pairs: dict[str, tuple[Op, Op]]) -> dict[str, tuple[float, float]]:
    """Median seconds of each (small, large) pair, runs interleaved so load hits both."""
    samples: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in pairs}
    gc.collect()
    gc.disable()
    try:
        for name, (small, large) in pairs.items():
            await small()  # warm caches and prepared statements
            await large()
            for _ in range(RUNS):
                samples[name][0].append(await _time(small))
                samples[name][1].append(await _time(large))
    finally:
        gc.enable()
    return {k: (statistics.median(s), statistics.median(b)) for k, (s, b) in samples.items()}


def too_slow(medians: dict[str, tuple[float, float]]) -> dict[str, str]:
    """The operations whose large median exceeds ``FACTOR`` times the small one."""
    return {
        name: f"{small * 1e6:.0f}us at the small size, {large * 1e6:.0f}us at the large"
        for name, (small, large) in medians.items()
        if large > FACTOR * max(small, FLOOR)
    }


async def assert_timings_hold(pairs: dict[str, tuple[Op, Op]]) -> None:
    """Fail when an operation's cost grows with size; a failure is measured once more."""
    slow = too_slow(await compare_timings(pairs))
    if slow:  # a second chance on a loaded machine
        slow = too_slow(await compare_timings({k: pairs[k] for k in slow}))
    assert not slow, f"cost grows with the size (more than {FACTOR}x): {slow}"


async def _rows(rows_touched: Callable[[], Any], op: Op) -> int:
    before = await measured(rows_touched())
    await op()
    return await measured(rows_touched()) - before


async def assert_rows_hold(
    rows_touched: Callable[[], Any], pairs: dict[str, tuple[Op, Op]]
) -> None:
    """Fail when an operation touches more rows at the large size than at the small one
    (beyond double plus a few: a page rounding, a B-tree level)."""
    grown = {}
    for name, (small, large) in pairs.items():
        await small()
        await large()
        counts = (await _rows(rows_touched, small), await _rows(rows_touched, large))
        if counts[1] > 2 * counts[0] + 8:
            grown[name] = f"{counts[0]} rows at the small size, {counts[1]} at the large"
    assert not grown, f"rows touched grow with the size: {grown}"


def session_ops(store: Store, conv: Conversation, stored: list[Message]) -> dict[str, Op]:
    """Reads and writes whose cost must follow the window or the id, not the session."""
    t, s = conv.tenant_id, conv.id
    early = stored[1]
    return {
        "load_window(2)": lambda: store.load_window(t, s, 2),
        "count_messages": lambda: store.count_messages(t, s),
        "get_messages(tail)": lambda: store.get_messages(t, s, after_seq=len(stored) - 3),
        "update_message(early)": lambda: store.update_message(
            attrs.evolve(early, content="edited", metadata={"edited": True})
        ),
        "save_message(retry early)": lambda: store.save_message(early),
        "save_message(new)": lambda: conv.add("user", "one more"),
    }


async def _sessions(store: Store, large: int) -> dict[str, tuple[Op, Op]]:
    small = await new_conversation(store)
    big = await new_conversation(store, tenant_id=small.tenant_id)
    small_ops = session_ops(store, small, await fill(store, small, SMALL))
    large_ops = session_ops(store, big, await fill(store, big, large))
    return {name: (small_ops[name], large_ops[name]) for name in small_ops}


class _Probe:
    """A session in a store that grows around it: id lookups on it must stay as cheap."""

    def __init__(self, store: Store, conv: Conversation, checkpoint: Checkpoint) -> None:
        self.store, self.conv, self.checkpoint = store, conv, checkpoint

    @classmethod
    async def make(cls, store: Store) -> _Probe:
        conv = await new_conversation(store)
        await fill(store, conv, 4)
        cp = await store.create_checkpoint(Checkpoint(tenant_id=conv.tenant_id, session_id=conv.id))
        return cls(store, conv, cp)

    def ops(self) -> dict[str, Op]:
        store, t, s = self.store, self.conv.tenant_id, self.conv.id
        return {
            "get_session": lambda: store.get_session(t, s),
            "get_checkpoint": lambda: store.get_checkpoint(t, self.checkpoint.id),
            "get_latest_checkpoint": lambda: store.get_latest_checkpoint(t, s),
            "save_message(new id)": lambda: self.conv.add("user", "x"),
            "save_api_call(new id)": lambda: store.save_api_call(
                ApiCall(tenant_id=t, session_id=s, model="m", status="success")
            ),
        }


async def grow(store: Store, messages: int) -> None:
    """Other tenants' sessions with ``messages`` messages, checkpoints and API calls."""
    per_session = 500
    for start in range(0, messages, per_session):
        conv = await new_conversation(store)
        history = await fill(store, conv, min(per_session, messages - start))
        parent: Checkpoint | None = None
        for i in range(10):
            parent = await store.create_checkpoint(
                Checkpoint(
                    tenant_id=conv.tenant_id,
                    session_id=conv.id,
                    history=history[: 2 * i + 1],
                    parent_id=None if parent is None else parent.id,
                )
            )
            await store.save_api_call(
                ApiCall(tenant_id=conv.tenant_id, session_id=conv.id, model="m", status="success")
            )


async def medians(ops: dict[str, Op]) -> dict[str, float]:
    """Median seconds of each operation over ``RUNS`` runs (after one warm-up run)."""
    pairs = await compare_timings({name: (op, op) for name, op in ops.items()})
    return {name: statistics.median(pair) for name, pair in pairs.items()}


async def assert_lookups_hold(store: Store, large: int) -> None:
    """Time the probe's id lookups in a small store, grow it, time them again; a lookup
    over the limit is timed once more before it fails (the machine may be loaded)."""
    probe = await _Probe.make(store)
    await grow(store, SMALL)
    small = await medians(probe.ops())
    await grow(store, large)
    large_ops = probe.ops()
    slow = too_slow({k: (small[k], v) for k, v in (await medians(large_ops)).items()})
    if slow:
        again = await medians({k: large_ops[k] for k in slow})
        slow = too_slow({k: (small[k], v) for k, v in again.items()})
    assert not slow, f"id lookups cost more in a larger store (more than {FACTOR}x): {slow}"


@pytest.mark.asyncio
class ScalingConformance:
    """Cost follows the window and the id, storage follows the history."""

    async def test_session_reads_touch_rows_independent_of_its_length(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        rows = optional_fixture(request, "rows_touched", "rows are not counted (see timings)")
        await assert_rows_hold(rows, await _sessions(store, LARGE_COUNTED))

    async def test_id_lookups_touch_rows_independent_of_the_store(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        rows = optional_fixture(request, "rows_touched", "rows are not counted (see timings)")
        probe = await _Probe.make(store)
        await grow(store, SMALL)
        before = probe.ops()
        small = {k: await _rows(rows, op) for k, op in before.items()}
        await grow(store, LARGE_COUNTED)
        large = {k: await _rows(rows, op) for k, op in probe.ops().items()}
        grown = {
            k: f"{small[k]} rows in a small store, {large[k]} in a large one"
            for k in small
            if large[k] > 2 * small[k] + 8
        }
        assert not grown, f"id lookups touch rows in proportion to the store: {grown}"

    @pytest.mark.slow
    async def test_session_reads_take_time_independent_of_its_length(self, store: Store) -> None:
        """A window, a count, a tail page and id updates in 100 vs 10,000 messages."""
        await assert_timings_hold(await _sessions(store, LARGE))

    @pytest.mark.slow
    async def test_id_lookups_take_time_independent_of_the_store(self, store: Store) -> None:
        """A session, checkpoint, message and API call id looked up among ~100 vs ~10,000."""
        await assert_lookups_hold(store, LARGE)

    async def test_checkpoint_storage_follows_the_history(
        self, store: Store, request: pytest.FixtureRequest
    ) -> None:
        """200 checkpoints of a growing history take a small multiple of its text, not
        200 copies of it (stores keep deltas on the parent, see storekit.delta)."""
        size = optional_fixture(request, "storage_bytes", "the store cannot report its size")
        conv = await new_conversation(store)
        start = await measured(size())
        history: list[Message] = []
        parent: Checkpoint | None = None
        for i in range(200):
            history = [
                *history,
                conv.message("user", f"question {i} " + "q" * 400),
                conv.message("assistant", f"answer {i} " + "a" * 400),
            ]
            parent = await store.create_checkpoint(
                Checkpoint(
                    tenant_id=conv.tenant_id,
                    session_id=conv.id,
                    history=history,
                    parent_id=None if parent is None else parent.id,
                    state={"i": i},
                )
            )
        grown = await measured(size()) - start
        text = sum(len(m.content.encode()) for m in history)
        allowed = 4 * text + 200 * 4096
        assert grown <= allowed, (
            f"200 checkpoints of a {text}-byte history took {grown} bytes (at most {allowed}):"
            " checkpoint storage grows faster than the history"
        )
        assert parent is not None
        assert await store.get_checkpoint(conv.tenant_id, parent.id) == parent
