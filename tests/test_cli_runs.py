"""``threadline runs`` and ``threadline approvals`` on a SQLite file: list what waits, answer
it from the command line, and the agent's next run goes on from there."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hitl_support import TENANT, ask_agent, chat_agent

import threadline
from threadline.cli import cli as root
from threadline.ids import new_id

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite")


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(root, [*args, "--store", url, "--tenant", TENANT])


async def _setup(url: str, log: str) -> tuple[str, str, str, str]:
    store = await threadline.connect(url)
    try:
        graph: Any = ask_agent(store, log)
        gsid = new_id()
        waiting = await graph.run("hi", session_id=gsid)
        chat: Any = await chat_agent(store, log, new_id())
        held = [p async for p in chat.chat_stream('tool:pay {"to": "ada", "amount": 3}')][-1]
        return gsid, waiting.interrupt_id, chat.session_id, held.calls[0].id
    finally:
        await store.close()


async def _finish(url: str, log: str, gsid: str, csid: str) -> tuple[Any, str]:
    store = await threadline.connect(url)
    try:
        graph: Any = ask_agent(store, log)
        result = await graph.run(None, session_id=gsid)
        chat: Any = await chat_agent(store, log, csid)
        text = "".join([p async for p in chat.continue_turn()])
        return result, text
    finally:
        await store.close()


def test_list_show_resume_and_approve(tmp_path: Path) -> None:
    url, log = f"sqlite:///{tmp_path / 'runs.db'}", str(tmp_path / "log.txt")
    gsid, interrupt_id, csid, call_id = asyncio.run(_setup(url, log))
    listed = invoke(url, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.output)
    assert [(r["kind"], r["session_id"]) for r in runs] == [
        ("interrupt", gsid),
        ("approval", csid),
    ]
    assert runs[0]["payload"]["question"] == "send this draft?"
    assert runs[1]["calls"] == [
        {"id": call_id, "name": "pay", "arguments": {"to": "ada", "amount": 3}}
    ]
    table = invoke(url, "runs", "list")
    assert interrupt_id in table.output and "pay " + call_id in table.output
    shown = invoke(url, "runs", "show", gsid)
    assert json.loads(shown.output)["id"] == interrupt_id
    bad = invoke(url, "runs", "resume", interrupt_id, "--value", "{not json")
    assert bad.exit_code == 1 and "ValidationError" in bad.output
    nul = invoke(url, "runs", "resume", interrupt_id, "--value", '"\\u0000"')
    assert nul.exit_code == 1 and "NUL" in nul.output
    resumed = invoke(url, "runs", "resume", interrupt_id, "--value", '"yes"')
    assert resumed.exit_code == 0, resumed.output
    again = invoke(url, "runs", "resume", interrupt_id, "--value", '"twice"')
    assert again.exit_code == 1 and "NotWaitingError" in again.output
    approved = invoke(url, "approvals", "approve", call_id, "--args", '{"to": "bo", "amount": 2}')
    assert approved.exit_code == 0, approved.output
    late = invoke(url, "approvals", "reject", call_id, "--reason", "late")
    assert late.exit_code == 1 and "NotWaitingError" in late.output
    result, text = asyncio.run(_finish(url, log, gsid, csid))
    assert result.index == 1 and result.payload["first"] == "yes"  # now at the second question
    assert text == "Echo: paid 2 to bo"
    assert Path(log).read_text().count("pay bo 2") == 1


def test_unknown_ids_are_one_line_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(_setup(url, str(tmp_path / "log.txt")))
    assert "no run waits" in invoke(url, "runs", "show", new_id()).output
    unknown = invoke(url, "approvals", "approve", "call_nope")
    assert unknown.exit_code == 1 and "NotWaitingError" in unknown.output
    bad_args = invoke(url, "approvals", "approve", "call_nope", "--args", "[1]")
    assert bad_args.exit_code == 2 and "JSON object" in bad_args.output
