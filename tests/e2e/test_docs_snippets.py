"""Every code block in README.md, docs/*.md and the plugins' READMEs runs as pasted.

The convention for writing docs:

- A ```` ```python ```` or ```` ```bash ```` block is a complete program a user can paste:
  Python with its imports, ids and ``asyncio.run(...)``; shell commands in an empty folder
  with ``threadline`` on ``PATH``. This test runs each one in a fresh temporary folder,
  offline: ``THREADLINE_STORE`` names a SQLite file there, no ``OPENAI_*`` variable is set
  (the built-in ``echo`` provider answers) and only our own plugins load.
- A block that is not a whole program (a signature, a method, a command that needs a
  server or installs packages) says so on the line right before its fence:
  ``<!-- fragment: why it does not run as pasted -->``. A block quoting a file
  (``<!-- from PATH -->``, checked by that example's own test) is a fragment too.
- Output, data and configuration are ``text``, ``json``, ``toml`` or ``ini`` blocks; they
  are not run. Every block names its language, so none is skipped by accident.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("threadline_sqlite", reason="needs the store plugins (the e2e tox env)")
pytest.importorskip("threadline_fsspec", reason="needs the store plugins (the e2e tox env)")

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS += sorted((ROOT / "plugins").glob("*/README.md"))
RUNNABLE = {"python", "bash"}
NOT_RUN = {"text", "json", "toml", "ini"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
FRAGMENT = re.compile(r"^<!-- fragment: \S.* -->$")
QUOTE = re.compile(r"^<!-- from \S+ -->$")
# Variables that would send a block to a real endpoint or another store.
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "DATABASE_URL", "THREADLINE_STORE")
TIMEOUT = 300  # a hang guard only: on a loaded 2-core machine one `threadline` call took 15 s


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language, its text, and its markers."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    comments: tuple[str, ...]  # the HTML comment lines right before the fence

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def fragment(self) -> bool:
        return any(FRAGMENT.match(c) or QUOTE.match(c) for c in self.comments)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file (indented fences in list items included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        comments: list[str] = []
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("<!--"):
            comments.insert(0, lines[j].strip())
            j -= 1
        end = i + 1
        while end < len(lines) and not re.fullmatch(
            rf" *{re.escape(fence[0])}{{{len(fence)},}} *", lines[end]
        ):
            end += 1
        body = [line[indent:] if line[:indent].isspace() else line for line in lines[i + 1 : end]]
        info = opening["info"].strip()
        language = info.split()[0] if info else ""
        found.append(Block(path, i + 1, language, "\n".join(body) + "\n", tuple(comments)))
        i = end + 1
    return found


ALL = [block for doc in DOCS for block in blocks(doc)]


def environment(folder: Path) -> dict[str, str]:
    """An offline environment: a SQLite store in ``folder``, the venv's commands first."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["THREADLINE_STORE"] = f"sqlite:///{folder}/threadline.db"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(block: Block) -> str | None:
    """Run ``block`` in a fresh folder; ``None`` when it succeeds, else what went wrong."""
    with tempfile.TemporaryDirectory(prefix="threadline-doc-") as tmp:
        folder = Path(tmp)
        if block.language == "python":
            command = [sys.executable, "-c", block.code]
        else:
            command = ["bash", "-e", "-u", "-o", "pipefail", "-c", block.code]
        try:
            done = subprocess.run(
                command,
                cwd=folder,
                env=environment(folder),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return f"{block.where}: still running after {TIMEOUT} s"
        if done.returncode == 0:
            return None
        output = (done.stdout + done.stderr).strip().splitlines()[-15:]
        return f"{block.where}: exit {done.returncode}\n    " + "\n    ".join(output)


def test_the_docs_have_blocks_to_run() -> None:
    runnable = [b for b in ALL if b.language in RUNNABLE and not b.fragment]
    assert len(runnable) >= 10, [b.where for b in runnable]
    assert any(b.path.name == "README.md" and b.path.parent == ROOT for b in runnable)


def test_every_block_names_a_known_language() -> None:
    unknown = [
        f"{b.where}: {b.language or 'no language'}"
        for b in ALL
        if b.language not in RUNNABLE | NOT_RUN
    ]
    assert not unknown, "label each block python, bash, text, json, toml or ini:\n" + "\n".join(
        unknown
    )


def test_fragment_markers_give_a_reason() -> None:
    bare = [
        b.where
        for b in ALL
        if any(c.startswith("<!-- fragment") and not FRAGMENT.match(c) for c in b.comments)
    ]
    assert not bare, f"write <!-- fragment: REASON --> before: {bare}"


def test_every_runnable_block_runs_as_pasted() -> None:
    runnable = [b for b in ALL if b.language in RUNNABLE and not b.fragment]
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(run, runnable) if f is not None]
    assert not failures, (
        f"{len(failures)} of {len(runnable)} doc blocks fail as pasted (fix the block, or mark "
        "it <!-- fragment: REASON -->):\n" + "\n".join(failures)
    )
