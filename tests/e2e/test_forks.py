"""Forks of a compacted conversation end to end on SQLite and PostgreSQL: an agent that
regenerated (a gap in its seqs) and compacted is forked by the CLI (its own connection);
an agent continuing the fork sends the model what the source would send; the forks are
listed from the index by a new connection."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite (the e2e tox env)")

from reliability._servers import postgres_url

import threadline
from threadline import Message
from threadline.cli import cli
from threadline.ids import new_id
from threadline.runtime.compaction import summary_range, visible
from threadline.runtime.providers import ChatRequest, StreamEnd, TextDelta, Usage
from threadline.store.branching import forked_from

__all__ = ["postgres_url"]

TENANT = "019bda9f-0000-7000-8000-0000000000c1"
USER = "019bda9f-0000-7000-8000-0000000000c2"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'forks.db'}"
    else:
        pytest.importorskip("threadline_postgres")
        yield request.getfixturevalue("postgres_url")


class RecordingProvider:
    """Answers ``reply N to <last user text>`` and keeps every request."""

    name = "recording"
    default_model = "recording-1"

    def __init__(self) -> None:
        self.count = itertools.count(1)
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | StreamEnd]:
        self.requests.append(request)
        asked = [m for m in request.messages if m.role == "user"][-1].content
        yield TextDelta(f"reply {next(self.count)} to {asked}")
        yield StreamEnd(finish_reason="stop", usage=Usage(5, 3, 8), model="recording-1")

    async def aclose(self) -> None:
        return None


def summarize(messages: Sequence[Message]) -> str:
    return "so far: " + " / ".join(m.content for m in messages if m.role == "user")


async def make_agent(store: threadline.Store, provider: RecordingProvider) -> threadline.Agent:
    builder = (
        threadline.AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider(provider)  # type: ignore[arg-type]
        .with_session_id(new_id())
        .with_compaction(max_tokens=60, keep_rounds=1, summarizer=summarize)
    )
    return await builder.build()


async def invoke(*args: str) -> Result:
    """The CLI in a thread of its own (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def sent(provider: RecordingProvider) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in provider.requests[-1].messages]


async def test_a_fork_of_a_compacted_session_sends_what_the_source_sends(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await threadline.connect(url)
    provider = RecordingProvider()
    agent = await make_agent(store, provider)
    sid = agent.session_id
    try:
        await agent.chat("plan a trip to Rome for three days please")
        await agent.regenerate()  # the old reply goes to a branch: a gap in the seqs
        await agent.regenerate()  # and a wider one
        for text in ("make it cheaper than before", "add a museum on day two", "and food?"):
            await agent.chat(text)
        source = await store.get_messages(TENANT, sid)
        assert [m.seq for m in source] != list(range(1, len(source) + 1))  # the gap
        summaries = [m for m in source if summary_range(m) is not None]
        assert summaries, "the agent compacted"

        monkeypatch.setenv("THREADLINE_STORE", url)
        monkeypatch.setenv("TENANT_ID", TENANT)
        forked = await invoke("sessions", "fork", sid, "--at", source[-1].id, "--json")
        assert forked.exit_code == 0, forked.output
        fork_id = json.loads(forked.output)["id"]
        assert json.loads(forked.output)["messages"] == len(source)

        # What the model is shown of the fork is what it is shown of the source.
        copied = await store.get_messages(TENANT, fork_id)
        assert [(m.role, m.content) for m in visible(copied)] == [
            (m.role, m.content) for m in visible(source)
        ]
        # The next question, asked of the source and of the fork: the same request.
        await agent.chat("what about the weather", session_id=fork_id)
        from_fork = sent(provider)
        await agent.chat("what about the weather", session_id=sid)
        assert from_fork == sent(provider)
        assert [role for role, _ in from_fork[:2]] == ["system", "system"]  # prompt, summary
        assert from_fork[1][1].endswith(summaries[-1].content.split(": ", 1)[-1])
    finally:
        await agent.close()
        await store.close()

    again = await threadline.connect(url)  # a new connection reads the forks from the index
    try:
        branches = await again.list_branches(TENANT, sid)
        reasons = [b.metadata.get("branch_reason") for b in branches]
        assert reasons == ["regenerate", "regenerate", None]
        assert forked_from(branches[-1]) == {
            "session_id": sid,
            "at": source[-1].id,
            "kind": "message",
            "seq": source[-1].seq,
        }
        listed = await again.list_sessions(TENANT, forked_from=sid)
        assert {s.id for s in listed} == {b.id for b in branches}
        assert await again.list_sessions(TENANT, forked_from=fork_id) == []
        copied = await again.get_messages(TENANT, fork_id)
        for original, copy in zip(source, copied):
            covered, mapped = summary_range(original), summary_range(copy)
            if covered is not None:
                seqs = {m.seq: c.seq for m, c in zip(source, copied)}
                assert mapped == (seqs[covered[0]], seqs[covered[1]])
    finally:
        await again.close()
    shown = await invoke("sessions", "branches", sid, "--json")
    assert shown.exit_code == 0, shown.output
    assert [b["id"] for b in json.loads(shown.output)] == [b.id for b in branches]
