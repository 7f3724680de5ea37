"""Compaction and the token window end to end on SQLite and PostgreSQL (and memory): what
the model is sent, what is stored, a crash mid-summarize, and ``threadline sessions compact``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("threadline_sqlite")

from reliability._servers import postgres_url

import threadline
from threadline.cli import cli
from threadline.ids import new_id
from threadline.models import Message
from threadline.runtime.compaction import SUMMARY_KEY, load_budgeted, summary_range
from threadline.runtime.providers import ChatRequest, EchoProvider, StreamEvent
from threadline.runtime.tokens import message_tokens

__all__ = ["postgres_url"]

CHILD = str(Path(__file__).resolve().parent / "compaction_child.py")
TENANT = "019bda9f-0000-7000-8000-0000000000c1"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield f"memory://compaction-{new_id()}"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'compaction.db'}"
    else:
        pytest.importorskip("threadline_postgres")
        yield request.getfixturevalue("postgres_url")


class Recording(EchoProvider):
    """The echo model, keeping every request it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        async for event in super().stream(request):
            yield event


def question(n: int) -> str:
    return f"question {n}: " + "about the weather in the mountains " * 2


async def test_compaction_sends_the_summary_and_keeps_every_original(url: str) -> None:
    seen: list[list[Message]] = []

    def summarize(messages: Sequence[Message]) -> str:
        seen.append(list(messages))
        return f"S{len(seen)}: " + " | ".join(m.content[:12] for m in messages)

    model = Recording()
    store = await threadline.connect(url)
    sid = new_id()
    agent = await (
        threadline.AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_session_id(sid)
        .with_provider(model)
        .with_compaction(max_tokens=120, keep_rounds=1, summarizer=summarize)
        .build()
    )
    try:
        for n in range(6):
            await agent.chat(question(n))
        stored = await store.get_messages(TENANT, sid)
        summaries = [m for m in stored if summary_range(m) is not None]
        assert len(summaries) >= 2 and len(seen) == len(summaries)
        # Every original is still stored: system prompt, 6 questions, 6 replies.
        originals = [m for m in stored if summary_range(m) is None]
        assert [m.role for m in originals] == ["system"] + ["user", "assistant"] * 6
        # A later summary summarizes the previous one with the rounds after it.
        assert seen[1][0].id == summaries[0].id
        first, last = summary_range(summaries[-1]) or (0, 0)
        assert first == originals[1].seq
        assert summaries[-1].metadata[SUMMARY_KEY]["previous"] == summaries[-2].id
        # The last request: system prompt, the latest summary, then only what it does not cover.
        sent = list(model.requests[-1].messages)
        assert sent[0].content == "You are terse."
        assert sent[1].id == summaries[-1].id
        assert all(m.seq is None or m.seq > last for m in sent[2:])
        assert sent[-1].content == question(5)
        assert all(summary_range(m) is None for m in sent[2:])
    finally:
        await agent.close()
        await store.close()


async def test_the_model_summarizes_when_no_summarizer_is_given(url: str) -> None:
    store = await threadline.connect(url)
    sid = new_id()
    agent = await (
        threadline.AgentBuilder("Be brief.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_session_id(sid)
        .with_provider("echo")
        .with_compaction(max_tokens=10_000, keep_rounds=1)
        .build()
    )
    try:
        for n in range(3):
            await agent.chat(question(n))
        assert await agent.compact(keep_rounds=5) is None  # fewer rounds than kept
        summary = await agent.compact()
        assert summary is not None and summary.seq is not None
        # The echo model repeats the transcript it was asked to summarize.
        assert "user: " + question(0).strip() in summary.content
        assert question(2) not in summary.content
        assert summary_range(summary) == (2, 5)
        assert await store.count_messages(TENANT, sid) == 8
        # The summary request is an ApiCall like any other: usage reports count it.
        calls = await store.list_api_calls(TENANT, sid)
        compacting = [c for c in calls if c.metadata.get("purpose") == "compaction"]
        assert len(calls) == 4 and len(compacting) == 1
        assert compacting[0].status == "success" and compacting[0].prompt_tokens
    finally:
        await agent.close()
        await store.close()


async def test_the_token_window_sends_whole_recent_rounds(url: str) -> None:
    model = Recording()
    store = await threadline.connect(url)
    agent = await (
        threadline.AgentBuilder("Be brief.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_provider(model)
        .with_window_tokens(100)
        .build()
    )
    try:
        for n in range(5):
            await agent.chat(question(n))
        sent = list(model.requests[-1].messages)
        assert sent[0].role == "system" and sent[-1].content == question(4)
        assert sum(message_tokens(m) for m in sent) <= 100
        assert 1 < sum(m.role == "user" for m in sent) < 5
        assert await store.count_messages(TENANT, agent.session_id) == 11
    finally:
        await agent.close()
        await store.close()


@pytest.mark.parametrize("mode", ["compact", "chat"])
async def test_a_crash_mid_summarize_leaves_the_session_as_it_was(
    url: str, mode: str, tmp_path: Path
) -> None:
    if url.startswith("memory://"):
        pytest.skip("a memory store does not outlive its process")
    sid = new_id()
    store = await threadline.connect(url)
    agent = await (
        threadline.AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_session_id(sid)
        .with_provider("echo")
        .build()
    )
    for n in range(4):
        await agent.chat(question(n))
    before = await store.get_messages(TENANT, sid)
    marker = tmp_path / "summarizing"
    child = await asyncio.create_subprocess_exec(
        sys.executable, CHILD, url, TENANT, sid, str(marker), mode
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.returncode is None, "the child ended before summarizing"
            assert time.monotonic() < deadline, "the child never started summarizing"
            await asyncio.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        await child.wait()
    after = await store.get_messages(TENANT, sid)
    assert all(summary_range(m) is None for m in after)
    if mode == "compact":
        assert after == before
    else:  # the turn's question may have become durable; nothing else changed
        assert after[: len(before)] == before
        assert [m.role for m in after[len(before) :]] in ([], ["user"])
    # The session compacts fine afterwards.
    summary = await agent.compact(keep_rounds=1)
    last_round = max(i for i, m in enumerate(after) if m.role == "user")
    assert summary is not None and summary_range(summary) == (2, after[last_round - 1].seq)
    await agent.close()
    await store.close()


def test_cli_compact(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def seed() -> str:
        store = await threadline.connect(url)
        agent = await (
            threadline.AgentBuilder("Be brief.")
            .with_store(store)
            .with_tenant_id(TENANT)
            .with_provider("echo")
            .build()
        )
        for n in range(3):
            await agent.chat(question(n))
        await agent.close()
        await store.close()
        return agent.session_id

    sid = asyncio.run(seed())
    runner = CliRunner()
    base = ["--store", url, "--tenant", TENANT, "--provider", "echo"]
    out = runner.invoke(cli, ["sessions", "compact", sid, "--keep-rounds", "2", *base])
    assert out.exit_code == 0, out.output
    assert "covers seqs 2..3 (2 messages)" in out.output
    again = runner.invoke(cli, ["sessions", "compact", sid, "--keep-rounds", "1", "--json", *base])
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["metadata"][SUMMARY_KEY]["first_seq"] == 2
    assert data["metadata"][SUMMARY_KEY]["last_seq"] == 5
    assert data["metadata"][SUMMARY_KEY]["previous"]
    shown = runner.invoke(cli, ["sessions", "show", sid, "--store", url, "--tenant", TENANT])
    assert shown.output.count("system    Summary of the earlier conversation") == 2
    assert "question 0" in shown.output  # the originals stay
    nothing = runner.invoke(cli, ["sessions", "compact", sid, "--keep-rounds", "9", *base])
    assert nothing.exit_code == 0 and "nothing to compact" in nothing.output
    bad = runner.invoke(cli, ["sessions", "compact", sid, "--keep-rounds", "0", *base])
    assert bad.exit_code == 2 and "--keep-rounds" in bad.output

    async def purposes() -> list[object]:
        store = await threadline.connect(url)
        calls = await store.list_api_calls(TENANT, sid)
        await store.close()
        return [c.metadata.get("purpose") for c in calls]

    assert asyncio.run(purposes()) == [None, None, None, "compaction", "compaction"]
    missing = runner.invoke(cli, ["sessions", "compact", new_id(), *base])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [missing.output.strip()]
    assert "NotFoundError" in missing.output


async def test_a_long_session_is_read_by_its_budget_and_compacted_whole(url: str) -> None:
    store = await threadline.connect(url)
    sid = new_id()
    plain = await (
        threadline.AgentBuilder("Be brief.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_session_id(sid)
        .with_provider("echo")
        .build()
    )
    for n in range(40):
        await plain.chat(question(n))
    window, complete = await load_budgeted(store, TENANT, sid, 300, None)
    assert not complete and sum(m.role == "user" for m in window) in (4, 8)

    got: list[Sequence[Message]] = []

    def summarize(messages: Sequence[Message]) -> str:
        got.append(messages)
        return "forty questions about the weather"

    agent = await (
        threadline.AgentBuilder("Be brief.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_session_id(sid)
        .with_provider("echo")
        .with_compaction(max_tokens=300, keep_rounds=2, summarizer=summarize)
        .build()
    )
    try:
        await agent.chat(question(40))
        # The summary covers every round before the kept two: read whole for the compaction.
        assert [m.content for m in got[0] if m.role == "user"] == [question(n) for n in range(39)]
        stored = await store.get_messages(TENANT, sid)
        summary = next(m for m in stored if summary_range(m) is not None)
        assert summary_range(summary) == (2, 79)
        # From now on a turn reads only back to what the summary covers.
        window, complete = await load_budgeted(store, TENANT, sid, 300, None)
        assert complete and sum(m.role == "user" for m in window) == 4
    finally:
        await agent.close()
        await plain.close()
        await store.close()


async def test_a_turn_continued_after_approval_is_fitted_too() -> None:
    from threadline.runtime.approvals import ApprovalRequired, requires_approval

    @requires_approval
    def pay(to: str, amount: int) -> str:
        """Pay someone."""
        return f"paid {amount} to {to}"

    model = Recording()
    store = await threadline.connect("memory://")
    agent = await (
        threadline.AgentBuilder("Be brief.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_provider(model)
        .with_tools([pay])
        .with_window_tokens(100)
        .build()
    )
    try:
        for n in range(6):
            await agent.chat(question(n))
        pieces = [p async for p in agent.chat_stream('tool:pay {"to": "ada", "amount": 5}')]
        held = pieces[-1]
        assert isinstance(held, ApprovalRequired)
        text = "".join([p async for p in agent.approve(held.calls[0].id)])
        assert text == "Echo: paid 5 to ada"
        sent = list(model.requests[-1].messages)
        assert sent[0].role == "system" and sent[-1].role == "tool"
        assert not any(m.content == question(0) for m in sent)  # cut to the token window
    finally:
        await agent.close()
        await store.close()
