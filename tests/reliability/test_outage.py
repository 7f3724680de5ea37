"""PostgreSQL stops and starts while 16 tasks write through one store.

Twelve tasks append to one session (single messages and batches) and four create
checkpoints on it (parent chains), all through one store object and its pool. The
server, a throwaway cluster of the test's own (``postgres_cluster``: ``initdb`` into a
temporary folder, another port, deleted afterwards), is stopped for a moment, then
started again. What must hold:

* while it is down every operation fails fast (within a bound derived from the
  configured timeouts, measured) with the typed :class:`threadline.StoreUnavailableError`,
  reads included, and nothing is acknowledged (no fallback to memory);
* after the restart the same store object works again (its pool recovers);
* every write acknowledged before, during or after the outage is stored, once, where it
  was acknowledged; writes that failed, retried with the same ids, are stored once and
  leave no gap in the seqs or versions.

The server is always started again (in a ``finally``) before the checks. The shared
server (``_servers.postgres_url``, a database created for this module) is never stopped:
the fixture checks that its postmaster start time did not change. Without PostgreSQL's
server binaries the outage test skips with the reason, or fails when ``CI`` is set.

A second test holds a session's row lock from another connection for a few seconds:
the server is up but writes cannot proceed, so they must give up within
``acquire_timeout + command_timeout``, typed, and go through once the lock is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

import threadline
from threadline import Checkpoint, Message, Session, StoreUnavailableError
from threadline.ids import new_id
from threadline.urls import StoreURL
from threadline_postgres.cluster import TempCluster

from ._record import record
from ._servers import (
    postgres_cluster,  # noqa: F401  (fixture)
    postgres_url,  # noqa: F401  (fixture)
    reliability_seed,
)

T = TypeVar("T")

APPENDERS = 12
CHECKPOINTERS = 4
PAUSE = 0.02  # between one task's operations: ~800 writes/s in all
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 3.0
ACQUIRE_TIMEOUT = 3.0
FAIL_FAST = COMMAND_TIMEOUT + 0.5
"""The longest a failing operation may take while the server is down.

A refused connection fails at once; the slowest honest failure is a statement cut off
by ``command_timeout`` (an acquire waits at most ``acquire_timeout`` = the same 3 s).
"""
DOWN_FOR = 1.0  # seconds the server stays stopped (after the stop completes)
RECOVERED_AFTER = 10  # acknowledged writes per task, after the restart, to call it recovered
CHAIN = 20  # checkpoints per parent chain before a task starts a fresh one

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


# -- the server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest) -> str:
    """The module's own database (``_servers.postgres_url``)."""
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> TempCluster:
    """A throwaway server of the test's own to stop (``_servers.postgres_cluster``)."""
    made: TempCluster = request.getfixturevalue("postgres_cluster")
    return made


async def _bring_back(cluster: TempCluster) -> None:
    """Start the server unless it runs; returns once it accepts connections."""
    if not await asyncio.to_thread(cluster.running):
        await asyncio.to_thread(cluster.start)


# -- bookkeeping -------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the writers were told: acknowledgements and failures, with times."""

    messages: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (seq, at)
    checkpoints: dict[str, tuple[Checkpoint, float]] = field(default_factory=dict)
    failures: list[tuple[str, float, float]] = field(default_factory=list)  # (what, took, at)
    retried: set[str] = field(default_factory=set)  # ids that failed at least once
    pending: list[tuple[str, Callable[[], Awaitable[Any]], list[str]]] = field(
        default_factory=list
    )  # unacknowledged when the writers stopped: retried afterwards
    unexpected: list[BaseException] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def acks_between(self, start: float, end: float) -> int:
        return sum(start < at < end for _, at in self.messages.values()) + sum(
            start < at < end for _, at in self.checkpoints.values()
        )

    def acks(self) -> int:
        return len(self.messages) + len(self.checkpoints)

    async def until_acked(
        self, what: str, ids: list[str], call: Callable[[], Awaitable[T]]
    ) -> T | None:
        """Run ``call`` until it succeeds, retrying the *same* write on StoreUnavailableError.

        ``None``: the writers were told to stop before it succeeded (then it is pending).
        """
        while True:
            started = time.monotonic()
            try:
                return await call()
            except StoreUnavailableError:
                now = time.monotonic()
                self.failures.append((what, now - started, now))
                self.retried.update(ids)
                if self.stop.is_set():
                    self.pending.append((what, call, ids))
                    return None
                await asyncio.sleep(0.05)


async def _appender(
    store: threadline.Store, session: Session, n: int, ledger: Ledger, seed: int
) -> None:
    rng = random.Random(seed + n)
    t, s = session.tenant_id, session.id
    i = 0
    try:
        while not ledger.stop.is_set():
            size = 1 if rng.random() < 0.6 else rng.randint(2, 5)
            batch = [
                Message(session_id=s, tenant_id=t, role="user" if (i + k) % 2 == 0 else "assistant",
                        content=f"a{n}-{i + k}")
                for k in range(size)
            ]  # fmt: skip
            i += size
            ids = [m.id for m in batch]
            if size == 1:
                one = await ledger.until_acked(
                    "save_message", ids, functools.partial(store.save_message, batch[0])
                )
                stored = None if one is None else [one]
            else:
                stored = await ledger.until_acked(
                    "save_messages", ids, functools.partial(store.save_messages, batch)
                )
            if stored is None:
                return
            now = time.monotonic()
            assert [m.id for m in stored] == ids
            seqs = [m.seq or 0 for m in stored]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a batch was split"
            for m in stored:
                ledger.messages[m.id] = (m.seq or 0, now)
            await asyncio.sleep(PAUSE)
    except Exception as exc:  # anything but the typed error is a finding
        ledger.unexpected.append(exc)


async def _checkpointer(store: threadline.Store, session: Session, n: int, ledger: Ledger) -> None:
    t, s = session.tenant_id, session.id
    parent: Checkpoint | None = None
    i = 0
    try:
        while not ledger.stop.is_set():
            if i % CHAIN == 0:
                parent = None  # a fresh run: a snapshot, not a delta
            new = (
                Message(session_id=s, tenant_id=t, role="user", content=f"c{n} q{i}"),
                Message(session_id=s, tenant_id=t, role="assistant", content=f"c{n} a{i}"),
            )
            wanted = Checkpoint(
                tenant_id=t,
                session_id=s,
                node_id=f"c{n}-{i}",
                input={"step": i},
                history=(*(parent.history if parent else ()), *new),
                state={"task": n, "step": i},
                parent_id=parent.id if parent else None,
            )
            i += 1
            stored = await ledger.until_acked(
                "create_checkpoint", [wanted.id], functools.partial(store.create_checkpoint, wanted)
            )
            if stored is None:
                return
            assert stored.id == wanted.id and stored.history == wanted.history
            ledger.checkpoints[stored.id] = (stored, time.monotonic())
            parent = stored
            await asyncio.sleep(PAUSE)
    except Exception as exc:
        ledger.unexpected.append(exc)


async def _open_and_close(url: str) -> None:
    opened = await threadline.connect(url)
    await opened.close()


async def _timed(call: Callable[[], Awaitable[object]]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        await call()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# -- the test ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_server_outage_under_sixteen_writers(cluster: TempCluster, mode: str) -> None:
    """``fast``: backends are terminated, transactions rolled back, a clean shutdown.
    ``immediate``: the server quits at once, like a crash, and recovers from its WAL
    when it starts (what it acknowledged must still be there)."""
    url = (
        f"{cluster.url}?schema=outage_{mode}&min_size=2&max_size=4"
        f"&connect_timeout={CONNECT_TIMEOUT:g}"
        f"&command_timeout={COMMAND_TIMEOUT:g}&acquire_timeout={ACQUIRE_TIMEOUT:g}"
    )
    seed = reliability_seed()
    store = await threadline.connect(url)
    session = await store.create_session(Session(tenant_id=new_id(), title="outage"))
    t, s = session.tenant_id, session.id
    ledger = Ledger()
    tasks = [
        asyncio.create_task(_appender(store, session, n, ledger, seed)) for n in range(APPENDERS)
    ]
    tasks += [
        asyncio.create_task(_checkpointer(store, session, n, ledger)) for n in range(CHECKPOINTERS)
    ]
    probes: list[tuple[str, float, BaseException | None]] = []
    started = time.monotonic()
    try:
        await asyncio.sleep(0.5)
        assert ledger.acks() > 0 and not ledger.unexpected, ledger.unexpected
        before = ledger.acks()
        stopping = time.monotonic()
        await asyncio.to_thread(cluster.stop, mode)
        stopped = time.monotonic()
        # Down: reads and writes raise the typed error, promptly; nothing is acknowledged.
        probe = Message(session_id=s, tenant_id=t, role="user", content="probe while down")
        down_calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("get_messages", lambda: store.get_messages(t, s)),
            ("load_window", lambda: store.load_window(t, s, 2)),
            ("list_checkpoints", lambda: store.list_checkpoints(t, session_id=s)),
            ("save_message", lambda: store.save_message(probe)),
            ("connect", lambda: _open_and_close(url)),  # a new store: no memory stand-in
        ]
        for name, call in down_calls:
            took, error = await _timed(call)
            probes.append((name, took, error))
        await asyncio.sleep(max(0.0, DOWN_FOR - (time.monotonic() - stopped)))
        starting = time.monotonic()
        acked_while_down = ledger.acks_between(stopped, starting)
        await _bring_back(cluster)
        up = time.monotonic()
        # Up again: the same store object, the same pool, writes acknowledged by every task.
        counts = {"m": len(ledger.messages), "c": len(ledger.checkpoints)}
        deadline = time.monotonic() + 20
        while (
            len(ledger.messages) < counts["m"] + APPENDERS * RECOVERED_AFTER
            or len(ledger.checkpoints) < counts["c"] + CHECKPOINTERS * RECOVERED_AFTER
        ):
            assert not ledger.unexpected, ledger.unexpected
            assert time.monotonic() < deadline, "the store did not recover after the restart"
            await asyncio.sleep(0.05)
        recovered = time.monotonic()
    finally:
        try:
            await _bring_back(cluster)  # always: whatever failed above
        finally:
            ledger.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    try:
        assert not ledger.unexpected, f"untyped failures: {ledger.unexpected[:3]!r}"
        # Writes left unacknowledged are retried with the same ids: stored once at most.
        for _, retry, _ in ledger.pending:
            await retry()
        probe_retry = await store.save_message(probe)  # failed while down: now it goes in
        pending_messages = {
            i for what, _, ids in ledger.pending if what != "create_checkpoint" for i in ids
        }
        pending_checkpoints = {
            i for what, _, ids in ledger.pending if what == "create_checkpoint" for i in ids
        }
    finally:
        await store.close()

    # Read back through a new store object (a new pool): what is there is in PostgreSQL.
    check = await threadline.connect(url, migrate=False)
    try:
        stored = await check.get_messages(t, s)
        counted = await check.count_messages(t, s)
        listed = await check.list_checkpoints(t, session_id=s)
        retried_checkpoints = [i for i in ledger.checkpoints if i in ledger.retried]
        reread = {i: await check.get_checkpoint(t, i) for i in retried_checkpoints}
    finally:
        await check.close()

    seq_of = {m.id: m.seq for m in stored}
    ids = [m.id for m in stored]
    lost_messages = [i for i in ledger.messages if i not in seq_of]
    moved = [i for i, (seq, _) in ledger.messages.items() if i in seq_of and seq_of[i] != seq]
    by_id = {c.id: c for c in listed}
    lost_checkpoints = [i for i in ledger.checkpoints if i not in by_id]
    damaged = [i for i, (c, _) in ledger.checkpoints.items() if i in by_id and by_id[i] != c] + [
        i for i, c in reread.items() if c != ledger.checkpoints[i][0]
    ]
    fail_times = [took for _, took, _ in ledger.failures]
    attempted = ledger.acks() + len(pending_messages) + len(pending_checkpoints)
    record(
        f"outage.postgres_restart_{mode}",
        store="postgres",
        what=f"server stopped ({mode} mode) and restarted under {APPENDERS + CHECKPOINTERS} "
        "writing tasks (appends, batches, checkpoints) on one store",
        faults=1,
        operations=attempted + len(ledger.failures),
        lost=len(lost_messages) + len(moved) + len(lost_checkpoints) + len(damaged),
        seed=seed,
        notes=f"{len(ledger.failures)} typed failures, slowest {max(fail_times, default=0):.2f} s "
        f"(bound {FAIL_FAST:g} s); {len(ledger.retried)} ids retried; {before} writes before "
        f"the stop, {acked_while_down} while down; stop took {stopped - stopping:.1f} s, "
        f"start {up - starting:.1f} s, recovery {recovered - up:.1f} s; "
        f"{time.monotonic() - started:.1f} s in all",
    )

    for name, took, error in probes:
        assert isinstance(error, StoreUnavailableError), f"{name} while down: {error!r}"
        assert took < FAIL_FAST, f"{name} took {took:.2f} s to fail"
    assert ledger.failures, "no writer saw the server go away"
    assert max(fail_times) < FAIL_FAST, f"a write took {max(fail_times):.2f} s to fail"
    assert acked_while_down == 0, "writes were acknowledged while the server was down"
    assert ledger.retried & set(ledger.messages), "no failed append was retried"
    assert lost_messages == [] and moved == [], (len(lost_messages), len(moved))
    assert len(ids) == len(set(ids)), "a retried append was stored twice"
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1)), "seq gap or twin"
    assert set(ids) == set(ledger.messages) | pending_messages | {probe.id}
    assert seq_of[probe.id] == probe_retry.seq
    assert counted == len(stored)
    assert lost_checkpoints == [] and damaged == [], (lost_checkpoints, damaged)
    assert [c.version for c in listed] == list(range(1, len(listed) + 1)), "version gap or twin"
    assert set(by_id) == set(ledger.checkpoints) | pending_checkpoints
    assert len(listed) == len(by_id)


STUCK_FOR = 2.5  # seconds another transaction holds the session row
STUCK_COMMAND_TIMEOUT = 1.0
STUCK_ACQUIRE_TIMEOUT = 1.0
STUCK_BOUND = STUCK_ACQUIRE_TIMEOUT + STUCK_COMMAND_TIMEOUT + 0.5
"""A write may wait ``acquire_timeout`` for a connection, then ``command_timeout`` on it."""


async def test_writes_stuck_behind_a_lock_fail_within_the_timeouts(database_url: str) -> None:
    """The server is up but a session row is locked (a stuck transaction elsewhere).

    Writers must not hang: each attempt fails within acquire + command timeout with the
    typed error (the statement is cancelled, possibly after it committed: the retry
    with the same ids finds it), and once the lock goes they all go through, once.
    """
    import asyncpg

    schema = "stuck"
    url = (
        f"{database_url}?schema={schema}&min_size=2&max_size=4&connect_timeout={CONNECT_TIMEOUT:g}"
        f"&command_timeout={STUCK_COMMAND_TIMEOUT:g}&acquire_timeout={STUCK_ACQUIRE_TIMEOUT:g}"
    )
    seed = reliability_seed()
    store = await threadline.connect(url)
    session = await store.create_session(Session(tenant_id=new_id(), title="stuck"))
    t, s = session.tenant_id, session.id
    ledger = Ledger()
    tasks = [asyncio.create_task(_appender(store, session, n, ledger, seed)) for n in range(6)]
    tasks += [asyncio.create_task(_checkpointer(store, session, n, ledger)) for n in range(2)]
    blocker = await asyncpg.connect(database_url, timeout=5)
    started = time.monotonic()
    try:
        await asyncio.sleep(0.3)
        assert ledger.acks() > 0 and not ledger.unexpected, ledger.unexpected
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(
            f'SELECT 1 FROM "{schema}".entity_session WHERE id = $1 FOR UPDATE', s
        )
        locked = time.monotonic()
        await asyncio.sleep(STUCK_FOR)
        released = time.monotonic()
        acked_while_locked = ledger.acks_between(locked + STUCK_BOUND, released)
        failures_while_locked = len(ledger.failures)
        await transaction.rollback()
        counts = (len(ledger.messages), len(ledger.checkpoints))
        deadline = time.monotonic() + 15
        while (
            len(ledger.messages) < counts[0] + 6 * RECOVERED_AFTER
            or len(ledger.checkpoints) < counts[1] + 2 * RECOVERED_AFTER
        ):
            assert not ledger.unexpected, ledger.unexpected
            assert time.monotonic() < deadline, "writers did not resume after the lock went"
            await asyncio.sleep(0.05)
    finally:
        await blocker.close()
        ledger.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    try:
        assert not ledger.unexpected, f"untyped failures: {ledger.unexpected[:3]!r}"
        for _, retry, _ in ledger.pending:
            await retry()
        pending = {i for _, _, ids in ledger.pending for i in ids}
        stored = await store.get_messages(t, s)
        listed = await store.list_checkpoints(t, session_id=s)
    finally:
        await store.close()

    seq_of = {m.id: m.seq for m in stored}
    by_id = {c.id: c for c in listed}
    lost = [i for i, (seq, _) in ledger.messages.items() if seq_of.get(i) != seq]
    lost += [i for i, (c, _) in ledger.checkpoints.items() if by_id.get(i) != c]
    fail_times = [took for _, took, _ in ledger.failures]
    record(
        "outage.postgres_stuck_lock",
        store="postgres",
        what="a session row locked by a stuck transaction for "
        f"{STUCK_FOR:g} s under 8 writing tasks (appends, batches, checkpoints)",
        faults=1,
        operations=ledger.acks() + len(pending) + len(ledger.failures),
        lost=len(lost),
        seed=seed,
        notes=f"{failures_while_locked} typed failures while locked, slowest "
        f"{max(fail_times, default=0):.2f} s (bound {STUCK_BOUND:g} s); "
        f"{len(ledger.retried)} ids retried; {time.monotonic() - started:.1f} s in all",
    )
    assert failures_while_locked > 0, "nothing waited on the lock"
    assert max(fail_times) < STUCK_BOUND, f"a write took {max(fail_times):.2f} s to fail"
    assert min(fail_times) > STUCK_COMMAND_TIMEOUT * 0.9  # they did wait, then gave up
    assert acked_while_locked == 0, "a write went through a locked session row"
    assert lost == [], f"{len(lost)} acknowledged writes missing or changed"
    ids = [m.id for m in stored]
    assert len(ids) == len(set(ids)), "a retried append was stored twice"
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1)), "seq gap or twin"
    assert set(ids) | set(by_id) == set(ledger.messages) | set(ledger.checkpoints) | pending
    assert [c.version for c in listed] == list(range(1, len(listed) + 1)), "version gap or twin"


# -- acknowledgements lost on the wire -----------------------------------------------------


class CuttingProxy:
    """A TCP relay to the server that can cut every open connection the bad way.

    :meth:`cut` stops relaying the server's answers on every open connection (the
    server still gets, runs and commits what the client sends) and closes them a
    moment later: the client learns nothing about writes the server has done. New
    connections relay normally. ``dropped`` holds the server's answers thrown away.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.dropped = bytearray()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._cut: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._unheard = asyncio.Event()  # set when a completed write's answer is dropped
        self._unheard_before = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for client, server in list(self._links):
            client.close()
            server.close()
        await self._server.wait_closed()

    async def _relay(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            server_in, server = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client.close()
            return
        link = (client, server)
        self._links.add(link)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, answers: bool) -> None:
            try:
                while data := await src.read(65536):
                    if answers and client in self._cut:
                        self.dropped += data
                        if self.completions_dropped() > self._unheard_before:
                            self._unheard.set()
                        continue
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                client.close()
                server.close()

        try:
            await asyncio.gather(pump(client_in, server, False), pump(server_in, client, True))
        finally:
            self._links.discard(link)
            self._cut.discard(client)

    def completions_dropped(self) -> int:
        """Writes the server completed whose answer was thrown away (INSERT or COMMIT tags)."""
        dropped = bytes(self.dropped)
        return dropped.count(b"INSERT 0 ") + dropped.count(b"COMMIT\x00")

    async def cut(self, after: float) -> int:
        """Drop the answers on every open connection; close them ``after`` s later, once
        a completed write's answer was among those dropped (an event, not a timer: on a
        loaded machine no write may complete within ``after``; at most 10 s more)."""
        links = list(self._links)
        self._cut.update(client for client, _ in links)
        self._unheard_before = self.completions_dropped()
        self._unheard.clear()
        await asyncio.sleep(after)
        if links:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._unheard.wait(), 10)
        for client, server in links:
            client.close()
            server.close()
        return len(links)


CUTS = 6
CUT_EVERY = 0.3


async def test_acknowledgements_lost_mid_write_are_retried_safely(database_url: str) -> None:
    """The server commits, the answer never arrives, the connection dies (a lost ack).

    Whether the store retries by itself or the caller retries with the same ids, each
    write is stored once, at the seq or version the caller was finally told, no gaps.
    """
    parsed = StoreURL.parse(database_url)
    seed = reliability_seed()
    async with CuttingProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        url = (
            f"{database_url}?schema=lost_acks&min_size=2&max_size=4"
            f"&host=127.0.0.1&port={proxy.listen_port}&connect_timeout={CONNECT_TIMEOUT:g}"
            f"&command_timeout={COMMAND_TIMEOUT:g}&acquire_timeout={ACQUIRE_TIMEOUT:g}"
        )
        store = await threadline.connect(url)
        session = await store.create_session(Session(tenant_id=new_id(), title="lost acks"))
        t, s = session.tenant_id, session.id
        ledger = Ledger()
        tasks = [asyncio.create_task(_appender(store, session, n, ledger, seed)) for n in range(6)]
        tasks += [asyncio.create_task(_checkpointer(store, session, n, ledger)) for n in range(2)]
        started = time.monotonic()
        cut = 0
        try:
            for _ in range(CUTS):
                await asyncio.sleep(CUT_EVERY)
                cut += await proxy.cut(after=0.1)
                await asyncio.sleep(0.01)  # the store's own retry, on a new connection...
                cut += await proxy.cut(after=0.1)  # ...loses its answer too: callers retry
            await asyncio.sleep(CUT_EVERY)
            assert not ledger.unexpected, ledger.unexpected
        finally:
            ledger.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        try:
            assert not ledger.unexpected, f"untyped failures: {ledger.unexpected[:3]!r}"
            for _, retry, _ in ledger.pending:
                await retry()
            pending = {i for _, _, ids in ledger.pending for i in ids}
            stored = await store.get_messages(t, s)
            listed = await store.list_checkpoints(t, session_id=s)
        finally:
            await store.close()
    done_unheard = proxy.completions_dropped()

    seq_of = {m.id: m.seq for m in stored}
    by_id = {c.id: c for c in listed}
    lost = [i for i, (seq, _) in ledger.messages.items() if seq_of.get(i) != seq]
    lost += [i for i, (c, _) in ledger.checkpoints.items() if by_id.get(i) != c]
    ids = [m.id for m in stored]
    record(
        "outage.postgres_lost_acks",
        store="postgres",
        what=f"{CUTS} times every connection cut after the server answered (answers dropped) "
        "under 8 writing tasks (appends, batches, checkpoints)",
        faults=cut,
        operations=ledger.acks() + len(pending) + len(ledger.failures),
        lost=len(lost) + len(ids) - len(set(ids)),
        seed=seed,
        notes=f"{done_unheard} completed writes whose answer was dropped; "
        f"{len(ledger.failures)} typed failures seen by callers; {len(ledger.retried)} ids "
        f"retried by callers; {time.monotonic() - started:.1f} s",
    )
    assert cut > 0 and done_unheard > 0, "no write lost its acknowledgement: nothing tested"
    assert lost == [], f"{len(lost)} acknowledged writes missing or moved"
    assert len(ids) == len(set(ids)), "a write whose ack was lost was stored twice"
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1)), "seq gap or twin"
    assert [c.version for c in listed] == list(range(1, len(listed) + 1)), "version gap or twin"
    assert set(ids) | set(by_id) == set(ledger.messages) | set(ledger.checkpoints) | pending
