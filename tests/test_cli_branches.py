"""``threadline sessions fork`` and ``sessions branches``, in process, on a named memory store."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner, Result

import threadline
from threadline import Message, Session
from threadline.cli import cli
from threadline.ids import new_id


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"THREADLINE_STORE": f"memory://branches-{new_id()}", "TENANT_ID": new_id()}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def seed(env: dict[str, str]) -> tuple[str, list[str]]:
    """A session of two rounds; returns its id and its message ids."""

    async def go() -> tuple[str, list[str]]:
        store = await threadline.connect(env["THREADLINE_STORE"])
        t = env["TENANT_ID"]
        session = await store.create_session(Session(tenant_id=t, title="chat"))
        ids = []
        for role, text in [
            ("user", "q1"),
            ("assistant", "a1"),
            ("user", "q2"),
            ("assistant", "a2"),
        ]:
            saved = await store.save_message(
                Message(session_id=session.id, tenant_id=t, role=role, content=text)  # type: ignore[arg-type]
            )
            ids.append(saved.id)
        await store.close()
        return session.id, ids

    return asyncio.run(go())


def test_fork_then_branches_then_show(env: dict[str, str]) -> None:
    sid, ids = seed(env)
    forked = run("sessions", "fork", sid, "--at", ids[1], "--json")
    assert forked.exit_code == 0, forked.output
    fork = json.loads(forked.output)
    assert fork["messages"] == 2
    assert fork["metadata"]["forked_from"]["session_id"] == sid
    assert fork["title"] == "chat"
    listed = run("sessions", "branches", sid, "--json")
    assert listed.exit_code == 0, listed.output
    assert [b["id"] for b in json.loads(listed.output)] == [fork["id"]]
    table = run("sessions", "branches", sid)
    assert fork["id"] in table.output and ids[1] in table.output
    shown = run("sessions", "show", fork["id"], "--json")
    assert [m["content"] for m in json.loads(shown.output)["messages"]] == ["q1", "a1"]
    plain = run("sessions", "fork", sid, "--at", ids[3], "--title", "again")
    assert plain.exit_code == 0 and plain.output.startswith(f"forked {sid} at {ids[3]} -> ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sessions", "fork", "SID", "--at", new_id()], "NotFoundError: no message"),
        (["sessions", "fork", new_id(), "--at", new_id()], "NotFoundError: no session"),
        (["sessions", "fork", "SID", "--at", "nope"], "ValidationError: at must be a UUID"),
        (["sessions", "branches", "nope"], "ValidationError: session_id must be a UUID"),
        (["sessions", "branches", new_id()], "NotFoundError: no session"),
    ],
)
def test_mistakes_are_one_line(env: dict[str, str], args: list[str], message: str) -> None:
    sid, _ = seed(env)
    result = CliRunner().invoke(cli, [sid if a == "SID" else a for a in args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.output
    missing = run("sessions", "fork", sid)
    assert missing.exit_code == 2 and "--at" in missing.output
