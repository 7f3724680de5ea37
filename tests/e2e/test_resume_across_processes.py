"""A session saved through PersistenceContext in one process resumes whole in another."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite (the e2e tox env)")

ROOT = Path(__file__).resolve().parents[2]
TENANT = "019bda9f-0000-7000-8000-0000000000aa"

WRITE = """
import asyncio, sys, threadline
from threadline import ToolCall
async def main():
    store = await threadline.connect(sys.argv[1])
    ctx = await threadline.PersistenceContext.open(store, tenant_id=sys.argv[2])
    await ctx.save_system_message("system prompt")
    await ctx.save_user_message("what time is it?", metadata={"lang": "en"})
    await ctx.save_assistant_message("", tool_calls=[ToolCall(id="c1", name="clock")])
    await ctx.save_tool_message("c1", "12:00", name="clock")
    await ctx.save_assistant_message("It is noon.", metadata={"model": "echo"})
    print(ctx.session_id)
    await store.close()
asyncio.run(main())
"""

READ = """
import asyncio, sys, threadline
async def main():
    store = await threadline.connect(sys.argv[1])
    ctx = await threadline.PersistenceContext.open(store, tenant_id=sys.argv[2],
                                                   session_id=sys.argv[3])
    for m in await ctx.get_history():
        print(m.seq, m.role, repr(m.content), [c.name for c in m.tool_calls], m.tool_call_id,
              m.metadata)
    await store.close()
asyncio.run(main())
"""


def python(code: str, *args: str) -> str:
    env = {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-sqlite"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_history_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    session_id = python(WRITE, url, TENANT).strip()
    lines = python(READ, url, TENANT, session_id).splitlines()
    assert lines == [
        "1 system 'system prompt' [] None {}",
        "2 user 'what time is it?' [] None {'lang': 'en'}",
        "3 assistant '' ['clock'] None {}",
        "4 tool '12:00' [] c1 {}",
        "5 assistant 'It is noon.' [] None {'model': 'echo'}",
    ]


def test_the_manual_persistence_example_resumes(tmp_path: Path) -> None:
    example = ROOT / "examples" / "streaming_manual_persistence.py"
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-sqlite"}
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(var, None)
    run = [sys.executable, str(example), "--store", url]
    first = subprocess.run([*run, "--new"], env=env, capture_output=True, text=True, check=True)
    assert "new session" in first.stdout
    assert "assistant> Echo: Hello! My name is Ada." in first.stdout
    second = subprocess.run([*run, "--resume"], env=env, capture_output=True, text=True, check=True)
    assert "resumed session" in second.stdout
    assert "[2] user: Hello! My name is Ada." in second.stdout
    assert "assistant> Echo: Do you still remember my name?" in second.stdout
