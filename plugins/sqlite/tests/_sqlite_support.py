"""Helpers of the sqlite store tests (a uniquely named module: plugins' tests share sys.path)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

CHILD = Path(__file__).with_name("_child.py")


def integrity_ok(path: Path) -> None:
    """Assert ``PRAGMA integrity_check`` and ``foreign_key_check`` pass on ``path``."""
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        connection.close()


def child_env() -> dict[str, str]:
    """The environment of a child process: this plugin only."""
    return {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-sqlite"}


def run_together(go_dir: Path, commands: list[list[str]], timeout: float = 60) -> list[object]:
    """Start one ``_child.py`` process per command, release them at once, return their JSON.

    Each child touches ``go_dir/ready-NAME`` when ready (NAME is its third argument) and
    waits for ``go_dir/go``, so the work of all of them overlaps.
    """
    go_dir.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for command in commands
    ]
    try:
        deadline = time.monotonic() + timeout
        while len(list(go_dir.glob("ready-*"))) < len(procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        (go_dir / "go").touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"child failed:\n{err}"
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
