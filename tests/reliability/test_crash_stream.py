"""Crash mid-stream: a process streaming a reply into the store is killed with SIGKILL.

One long-lived OpenAI-compatible server (:class:`~._servers.StreamingServer`, in a thread)
streams a long reply, ``PIECES`` words ``PIECE_DELAY`` s apart. A child forked from the
fork server (``_crash_child.py``) runs one turn of one session through the real
``threadline-openai`` provider and agent runtime, with a flush interval of
``FLUSH_INTERVAL`` s, and reports every token it received and every write its store
acknowledged. The test kills it with SIGKILL at a random moment (seeded: the seed is
printed and recorded) and then, with a fresh store object in the test process, opens the
session as a new process would and checks:

* the sequence numbers are 1..n, none duplicated or skipped;
* every user message whose turn was acknowledged (the store confirmed it, or a token
  reached the caller: it is durable before the first token) is there, once;
* the partial reply is there with status ``interrupted`` (or ``complete`` when the kill
  came after the end), its text a prefix of what the server sent, holding at least what
  the last acknowledged flush wrote, and missing at most the text that arrived in the last
  ``FLUSH_INTERVAL`` (+ ``WRITE_ALLOWANCE`` for the write in flight) before the kill;
* no row is left ``streaming``; SQLite's ``PRAGMA integrity_check`` says ``ok``;
* the conversation goes on: a next turn completes and is stored.

All turns go to one session per store, so every kill also checks that nothing written by
the turns before it was damaged. ``THREADLINE_CRASH_KILLS`` changes the number of kills
(default 30 per store).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import threadline
from threadline.ids import new_id
from threadline.models import ApiCall, Message

from ._crash_child import ChildRun, ForkServer, read_report
from ._record import record
from ._servers import (
    Reply,
    ServedRequest,
    StreamingServer,
    migrate_store,
    postgres_url,  # noqa: F401  (fixture)
    reliability_seed,
    sqlite_integrity,
    store_label,
)

KILLS = int(os.environ.get("THREADLINE_CRASH_KILLS", "30"))
FLUSH_INTERVAL = 0.05
PIECES = 160
PIECE_DELAY = 0.003
WRITE_ALLOWANCE = 0.15
"""Seconds allowed on top of one flush interval: the write in flight when the process died
and scheduling delays on a loaded machine. The largest value seen is recorded."""
PAUSE_FLUSH = 0.5
"""The pause test's flush interval: longer than the whole burst, so that nothing after the
first word is flushed while the words arrive, however the reads group them."""
PAUSE_DELAYS = (0.0,) + (0.02,) * 9 + (2.0,)
"""The pause test: seconds before each word. Ten words in 0.2 s, then the model thinks for
2 s before the last ones."""
PAUSE_KILL = 1.3
"""Seconds after the child is ready: inside the pause, about two flush intervals after the
last word arrived (a flush was due 0.5 s after the first)."""
PAUSE_KILLS = 3
KILL_AFTER_FIRST_TOKEN = 0.25
"""Seconds after the first token reached the caller: more than a flush interval plus
``WRITE_ALLOWANCE``, so the reply's ``streaming`` row must be stored (the runtime writes it
at the first token), and less than the rest of the reply (``PIECES * PIECE_DELAY``, 0.48 s)."""
SYSTEM_PROMPT = "You are a patient narrator."
MODEL = "reliability-model"


def long_reply(turn: int) -> str:
    """What the server streams for ``long <turn>``: ``PIECES`` numbered words."""
    return " ".join(f"t{turn}w{i:03d}" for i in range(PIECES))


def short_reply(turn: int) -> str:
    """What the server answers to ``short <turn>``."""
    return f"ok {turn}"


def pause_reply(turn: int) -> str:
    """What the server streams for ``pause <turn>`` (timed by ``PAUSE_DELAYS``)."""
    return " ".join(f"p{turn}w{i:02d}" for i in range(len(PAUSE_DELAYS) + 4))


def respond(request: ServedRequest) -> Reply:
    kind, _, number = request.last_user_text.partition(" ")
    if kind == "long":
        words = long_reply(int(number)).split(" ")
        return Reply([w if i == 0 else " " + w for i, w in enumerate(words)], delay=PIECE_DELAY)
    if kind == "short":
        return Reply([short_reply(int(number))])
    if kind == "pause":
        words = pause_reply(int(number)).split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        return Reply(pieces, delay=PIECE_DELAY, delays=PAUSE_DELAYS)
    return Reply(["?"])


@pytest.fixture(scope="module")
def server() -> Iterator[StreamingServer]:
    with StreamingServer(respond) as running:
        yield running


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer() as started:
        yield started


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    database: str = request.getfixturevalue("postgres_url")
    return f"{database}?schema=crash_stream_{secrets.token_hex(3)}&max_size=2"


@attrs.define
class Turn:
    """One turn of the conversation as the test knows it."""

    prompt: str
    reply: str
    required: bool
    """Whether the user message must be stored (acknowledged before the kill, or completed)."""


@attrs.define
class Tally:
    kills: int = 0
    before_first_token: int = 0
    mid_stream: int = 0
    after_reply: int = 0
    turns: int = 0
    lost: int = 0
    max_missing_s: float = 0.0
    worst: str = ""
    problems: list[str] = attrs.Factory(list)


def check_history(messages: list[Message], turns: list[Turn], tally: Tally, where: str) -> None:
    """The whole session against what the test knows: seqs, user messages, replies."""
    problems = tally.problems
    seqs = [m.seq for m in messages]
    if seqs != list(range(1, len(messages) + 1)):
        problems.append(f"{where}: seqs are not 1..{len(messages)}: {seqs}")
    systems = [m for m in messages if m.role == "system"]
    if len(systems) != 1 or messages[0].role != "system" or systems[0].content != SYSTEM_PROMPT:
        problems.append(f"{where}: expected one system prompt first, got {len(systems)}")
    stuck = [m.seq for m in messages if m.status == "streaming"]
    if stuck:
        problems.append(f"{where}: rows still 'streaming' after the session was opened: {stuck}")
    # Group the rows after each user message.
    rounds: list[tuple[Message, list[Message]]] = []
    for m in messages:
        if m.role == "user":
            rounds.append((m, []))
        elif m.role != "system":
            if not rounds:
                problems.append(f"{where}: {m.role} row seq {m.seq} before any user message")
                continue
            rounds[-1][1].append(m)
    j = 0
    for turn in turns:
        if j < len(rounds) and rounds[j][0].content == turn.prompt:
            user, replies = rounds[j]
            j += 1
            if user.status != "complete":
                problems.append(f"{where}: user message {turn.prompt!r} has status {user.status}")
            if len(replies) > 1 or any(r.role != "assistant" for r in replies):
                shown = [(r.role, r.status) for r in replies]
                problems.append(f"{where}: {turn.prompt!r} has replies {shown}")
                continue
            if not replies:
                if turn.prompt.startswith("short"):
                    problems.append(f"{where}: the completed turn {turn.prompt!r} has no reply")
                continue
            reply = replies[0]
            if not turn.reply.startswith(reply.content):
                problems.append(
                    f"{where}: reply to {turn.prompt!r} is not a prefix of what was sent: "
                    f"{reply.content[-40:]!r}"
                )
            if reply.status == "complete" and reply.content != turn.reply:
                problems.append(f"{where}: reply to {turn.prompt!r} complete but cut short")
            if reply.status not in ("complete", "interrupted"):
                problems.append(f"{where}: reply to {turn.prompt!r} has status {reply.status}")
        elif turn.required:
            tally.lost += 1
            problems.append(f"{where}: acknowledged user message {turn.prompt!r} is missing")
    if j != len(rounds):
        extra = [u.content for u, _ in rounds[j:]]
        problems.append(f"{where}: unexpected or duplicated user messages {extra}")


def check_killed_turn(
    messages: list[Message],
    turn: Turn,
    run: ChildRun,
    events: list[dict[str, Any]],
    tally: Tally,
) -> None:
    """The reply of the turn that was killed: what it kept compared with what had arrived."""
    received = [(float(e["t"]), int(e["n"])) for e in events if e["e"] == "recv"]
    acked = [e for e in events if e["e"] == "ack" and e["role"] == "assistant"]
    acked_chars = max((int(e["n"]) for e in acked), default=0)
    if not received:
        tally.before_first_token += 1
    elif any(e["e"] == "done" for e in events) or any(e["status"] == "complete" for e in acked):
        tally.after_reply += 1
    else:
        tally.mid_stream += 1
    users = [i for i, m in enumerate(messages) if m.role == "user" and m.content == turn.prompt]
    reply: Message | None = None
    if users:
        after = messages[users[-1] + 1 :]
        reply = after[0] if after and after[0].role == "assistant" else None
    kept = len(reply.content) if reply is not None else 0
    if kept < acked_chars:
        tally.lost += 1
        tally.problems.append(
            f"{turn.prompt}: the store acknowledged {acked_chars} chars of the reply, "
            f"{kept} are left"
        )
    if reply is not None and reply.status == "complete":
        return
    assert run.killed_at is not None
    missing = [t for t, n in received if n > kept]
    if missing:
        gap = run.killed_at - missing[0]
        if gap > tally.max_missing_s:
            tally.max_missing_s = gap
            last_ack = max((float(e["t"]) for e in acked), default=run.started)
            tally.worst = (
                f"{turn.prompt}: kept {kept}/{received[-1][1]} chars received; kill "
                f"{(run.killed_at - received[-1][0]) * 1000:.1f} ms after the last token, "
                f"{(run.killed_at - last_ack) * 1000:.1f} ms after the last acknowledged write"
            )
        if gap > FLUSH_INTERVAL + WRITE_ALLOWANCE:
            tally.problems.append(
                f"{turn.prompt}: {received[-1][1] - kept} chars received in the last "
                f"{gap * 1000:.0f} ms before the kill are missing (flush interval "
                f"{FLUSH_INTERVAL * 1000:.0f} ms)"
            )


@attrs.define
class Children:
    """Forks stream children for one session of one store."""

    forks: ForkServer
    server: StreamingServer
    url: str
    ids: dict[str, str]
    folder: Path

    def __call__(
        self,
        prompt: str,
        kill_after: float | None,
        after: str | None = None,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> tuple[ChildRun, list[dict[str, Any]]]:
        """Run one turn with ``prompt`` in a child; kill it ``kill_after`` s after the fork
        (or after it reported the event ``after``: "ready", or "recv", its first token handed
        to the caller). Returns how it ended and what it reported."""
        args = {
            **self.ids,
            "url": self.url,
            "base_url": self.server.base_url,
            "prompt": prompt,
            "system_prompt": SYSTEM_PROMPT,
            "flush_interval": flush_interval,
        }
        name = prompt.replace(" ", "-")
        report, log = self.folder / f"{name}.jsonl", self.folder / f"{name}.log"
        run = self.forks.run(
            "stream",
            args,
            report=report,
            log=log,
            kill_after=kill_after,
            after_event=after,
        )
        if run.status not in (0, -9):
            pytest.fail(f"child of {prompt!r} failed ({run.status}):\n{log.read_text()}")
        return run, read_report(report)


async def reopen_and_continue(
    url: str, ids: dict[str, str], base_url: str, turn: int
) -> tuple[list[Message], str, list[Message]]:
    """As a new process would: open the session (crashed replies become ``interrupted``),
    read it, then chat one short turn. Returns (rows after opening, reply, rows after)."""
    store = await threadline.connect(url)
    try:
        agent = await (
            threadline.AgentBuilder(SYSTEM_PROMPT)
            .with_store(store)
            .with_provider("openai", base_url=base_url, max_retries=0)
            .with_model(MODEL)
            .with_tenant_id(ids["tenant_id"])
            .with_user_id(ids["user_id"])
            .with_agent_id(ids["agent_id"])
            .with_session_id(ids["session_id"])
            .with_flush_interval(FLUSH_INTERVAL)
            .build()
        )
        try:
            await agent.open_session()
            opened = await store.get_messages(ids["tenant_id"], ids["session_id"])
            reply = await asyncio.wait_for(agent.chat(f"short {turn}"), 30)
            after = await store.get_messages(ids["tenant_id"], ids["session_id"])
        finally:
            await agent.close()
    finally:
        await store.close()
    return opened, reply, after


def test_sigkill_mid_stream_loses_at_most_one_flush_interval(
    store_url: str, server: StreamingServer, forks: ForkServer, tmp_path: Path
) -> None:
    kind = store_label(store_url)
    seed = reliability_seed()
    rng = random.Random(f"{seed}:stream:{kind}")
    ids = {
        "tenant_id": new_id(),
        "user_id": new_id(),
        "agent_id": new_id(),
        "session_id": new_id(),
    }
    sqlite_path = Path(store_url.removeprefix("sqlite:///")) if kind == "sqlite" else None
    tally = Tally()
    turns: list[Turn] = []

    child = Children(forks, server, store_url, ids, tmp_path)

    # Migrate first, so that the calibration turn measures an ordinary start.
    asyncio.run(migrate_store(store_url))
    # An uninterrupted turn first: it must complete, and its timing aims the kills.
    calibration, events = child("long 0", None)
    turns.append(Turn("long 0", long_reply(0), True))
    assert calibration.status == 0 and events[-1]["e"] == "done"
    # kills are timed by this turn: a child that imports on its own clock would be late
    assert events[-1]["imported"] == [], f"the child imported {events[-1]['imported']}"
    ready = next(float(e["t"]) for e in events if e["e"] == "ready")
    first_token = next(float(e["t"]) for e in events if e["e"] == "recv")
    startup = ready - calibration.started  # fork, connect, build the agent
    to_first = first_token - ready  # open the session, save the user message, ask
    duration = float(events[-1]["t"]) - ready  # the whole turn after "ready"
    opened, _, after = asyncio.run(reopen_and_continue(store_url, ids, server.base_url, 0))
    turns.append(Turn("short 0", short_reply(0), True))
    check_history(after, turns, tally, "after the first turn")
    assert not tally.problems, tally.problems

    turn = 0
    while tally.kills < KILLS and turn < 3 * KILLS and len(tally.problems) < 20:
        turn += 1
        tally.turns += 1
        # Most kills anywhere in the turn; some aimed at its start (connect, open the
        # session, save the user message, send the request) and some at its end (the
        # final write), where a stream is most fragile.
        aim = rng.random()
        if aim < 0.15:
            run, events = child(f"long {turn}", rng.uniform(0.0, startup + to_first))
        elif aim < 0.35:
            run, events = child(f"long {turn}", duration * rng.uniform(0.9, 1.01), "ready")
        else:
            run, events = child(f"long {turn}", duration * rng.uniform(0.0, 1.0), "ready")
        required = any(e["e"] == "recv" for e in events) or any(
            e["e"] == "ack" and e["role"] == "user" for e in events
        )
        turns.append(Turn(f"long {turn}", long_reply(turn), required))
        if sqlite_path is not None:
            verdict = sqlite_integrity(sqlite_path)
            if verdict != "ok":
                tally.problems.append(f"long {turn}: integrity_check after the kill: {verdict}")
        opened, reply, after = asyncio.run(
            reopen_and_continue(store_url, ids, server.base_url, turn)
        )
        if run.killed:
            tally.kills += 1
            check_killed_turn(opened, turns[-1], run, events, tally)
        if reply != short_reply(turn):
            tally.problems.append(f"short {turn}: the next turn answered {reply!r}")
        turns.append(Turn(f"short {turn}", short_reply(turn), True))
        check_history(after, turns, tally, f"after kill {tally.kills} (turn {turn})")

    if sqlite_path is not None:
        verdict = sqlite_integrity(sqlite_path)
        if verdict != "ok":
            tally.problems.append(f"integrity_check at the end: {verdict}")
    print(f"{kind}: {tally} (start {startup:.3f} s, turn {duration:.3f} s)")
    record(
        "crash mid-stream",
        store=kind,
        what=(
            "SIGKILL a process while a long reply streams (openai provider over HTTP, "
            "agent runtime, flush every 50 ms); reopen, check, chat on"
        ),
        faults=tally.kills,
        operations=2 * (tally.turns + 1),
        lost=tally.lost,
        seed=seed,
        notes=(
            f"kills: {tally.before_first_token} before the first token, {tally.mid_stream} "
            f"mid-stream, {tally.after_reply} after the reply; most text missing at a kill: "
            f"{tally.max_missing_s * 1000:.0f} ms of stream (flush interval "
            f"{FLUSH_INTERVAL * 1000:.0f} ms); problems: {len(tally.problems)}"
        ),
    )
    assert tally.kills >= KILLS, f"only {tally.kills} kills landed in {turn} turns"
    assert not tally.problems, "\n".join(tally.problems)


def test_sigkill_while_the_model_pauses_keeps_what_arrived_before(
    store_url: str, server: StreamingServer, forks: ForkServer, tmp_path: Path
) -> None:
    """The model streams a burst, then thinks for ``PAUSE`` s; the kill comes in the pause,
    many flush intervals after the last token: everything received must be in the row."""
    kind = store_label(store_url)
    ids = {
        "tenant_id": new_id(),
        "user_id": new_id(),
        "agent_id": new_id(),
        "session_id": new_id(),
    }
    asyncio.run(migrate_store(store_url))
    child = Children(forks, server, store_url, ids, tmp_path)
    problems: list[str] = []
    lost = 0
    for turn in range(1, PAUSE_KILLS + 1):
        prompt = f"pause {turn}"
        run, events = child(prompt, PAUSE_KILL, "ready", flush_interval=PAUSE_FLUSH)
        received = [(float(e["t"]), int(e["n"])) for e in events if e["e"] == "recv"]
        assert run.killed and run.killed_at is not None and received
        opened, reply, _ = asyncio.run(reopen_and_continue(store_url, ids, server.base_url, turn))
        users = [i for i, m in enumerate(opened) if m.role == "user" and m.content == prompt]
        assert users, f"{prompt}: the user message is missing"
        row = opened[users[0] + 1] if len(opened) > users[0] + 1 else None
        kept = len(row.content) if row is not None and row.role == "assistant" else 0
        if row is not None and row.status != "interrupted":
            problems.append(f"{prompt}: the reply has status {row.status}")
        idle = run.killed_at - received[-1][0]
        if kept < received[-1][1] and idle > PAUSE_FLUSH + WRITE_ALLOWANCE:
            lost += 1
            problems.append(
                f"{prompt}: {received[-1][1] - kept} of {received[-1][1]} chars received "
                f"{idle * 1000:.0f} ms before the kill are missing (flush interval "
                f"{PAUSE_FLUSH * 1000:.0f} ms)"
            )
        if reply != short_reply(turn):
            problems.append(f"short {turn}: the next turn answered {reply!r}")
    record(
        "crash during a pause in the stream",
        store=kind,
        what=(
            f"SIGKILL while the model pauses mid-reply (flush every {PAUSE_FLUSH} s; kill "
            f"{PAUSE_KILL} s after start, inside a 2 s pause): text received before it kept?"
        ),
        faults=PAUSE_KILLS,
        operations=2 * PAUSE_KILLS,
        lost=lost,
        notes="; ".join(problems[:2]) or "all text received before the pause was kept",
    )
    assert not problems, "\n".join(problems)


async def list_api_calls(url: str, ids: dict[str, str]) -> list[ApiCall]:
    store = await threadline.connect(url)
    try:
        return await store.list_api_calls(ids["tenant_id"], ids["session_id"])
    finally:
        await store.close()


def test_a_reply_broken_off_by_a_crash_keeps_its_api_call_record(
    store_url: str, server: StreamingServer, forks: ForkServer, tmp_path: Path
) -> None:
    """Killed mid-stream, then reopened: the interrupted reply has its ApiCall (TTFT known).

    The kill comes ``KILL_AFTER_FIRST_TOKEN`` s after the child handed the reply's first
    token to its caller (its "recv" event), not after a fixed time from its start: how long
    a child takes to reach its first token depends on the machine (and took 0.2-0.4 s more
    in tox, where the HTTP stack's lazy imports compiled from source), and a kill before it
    leaves no reply to interrupt."""
    kind = store_label(store_url)
    ids = {
        "tenant_id": new_id(),
        "user_id": new_id(),
        "agent_id": new_id(),
        "session_id": new_id(),
    }
    asyncio.run(migrate_store(store_url))
    child = Children(forks, server, store_url, ids, tmp_path)
    kills = 2
    for turn in range(1, kills + 1):
        run, events = child(f"long {turn}", KILL_AFTER_FIRST_TOKEN, "recv")
        finished = [e for e in events if e["e"] == "done" or e.get("role") == "assistant"]
        assert run.killed and all(e.get("status") == "streaming" for e in finished), (
            f"long {turn} was not killed mid-stream"
        )
        asyncio.run(reopen_and_continue(store_url, ids, server.base_url, turn))
    opened, _, _ = asyncio.run(reopen_and_continue(store_url, ids, server.base_url, kills + 1))
    interrupted = [m.id for m in opened if m.role == "assistant" and m.status == "interrupted"]
    calls = {c.response_message_id for c in asyncio.run(list_api_calls(store_url, ids))}
    missing = [mid for mid in interrupted if mid not in calls]
    record(
        "crash: ApiCall of an interrupted reply",
        store=kind,
        what="SIGKILL mid-stream, reopen: is there an ApiCall record for the cut reply?",
        faults=kills,
        operations=3 * kills + 2,
        lost=len(missing),
        notes=f"{len(missing)} of {len(interrupted)} interrupted replies have no ApiCall",
    )
    assert len(interrupted) == kills
    assert not missing, f"{len(missing)} interrupted replies have no ApiCall record"
