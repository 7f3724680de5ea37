"""``threadline agents-sdk items``: what a Runner would read, from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agents_sample_items import EVERY_ITEM

from threadline_openai_agents import ThreadlineSession

pytest.importorskip("threadline_sqlite")


def threadline(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, THREADLINE_LOAD_PLUGINS="threadline-sqlite,threadline-openai-agents")
    return subprocess.run(
        [sys.executable, "-m", "threadline.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_items_prints_one_json_item_a_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    async with ThreadlineSession("cli-chat", url) as session:
        await session.add_items(EVERY_ITEM)
    done = threadline("agents-sdk", "items", "cli-chat", "--store", url)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == EVERY_ITEM
    done = threadline("agents-sdk", "items", "cli-chat", "--store", url, "--limit", "2")
    assert [json.loads(line) for line in done.stdout.splitlines()] == EVERY_ITEM[-2:]


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    done = threadline("agents-sdk", "items", "x", "--store", missing)
    assert done.returncode == 1
    assert done.stderr.startswith("error: StoreNotFoundError")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nope.db").exists()
    done = threadline("agents-sdk", "items", "x", "--store", missing, "--tenant", "bad")
    assert done.returncode == 1 and "tenant_id must be a UUID" in done.stderr
