"""Helpers of the fsspec store tests (a uniquely named module: plugins' tests share sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from threadline.testing import processes

CHILD = Path(__file__).with_name("_fsspec_child.py")


def child_env() -> dict[str, str]:
    """The environment of a child process: this plugin only."""
    return {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-fsspec"}


def start_child(*args: str) -> subprocess.Popen[str]:
    """Start ``_fsspec_child.py ARGS...`` with its output captured."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def run_child(*args: str, timeout: float = 60) -> Any:
    """Run ``_fsspec_child.py ARGS...`` to the end and return the JSON it printed."""
    proc = start_child(*args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed:\n{err}"
    return json.loads(out)


def run_together(go_dir: Path, commands: list[list[str]], timeout: float = 60) -> list[Any]:
    """Start one child per command, release them at once, return their JSON outputs."""
    return processes.run_together(CHILD, go_dir, commands, env=child_env(), timeout=timeout)


def visible_files(root: Path) -> list[Path]:
    """Every file a reader of the store could open (temporary ``.tmp-*`` files excluded)."""
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(p for p in files if not p.name.startswith(".") and p.name != "lock")


def temporary_files(root: Path) -> list[Path]:
    """Temporary files left under ``root`` (a failed write must remove its own)."""
    return sorted(root.rglob(".tmp-*"))


def forget_memory_folder(folder: str) -> None:
    """Remove ``folder`` (``/name``) from fsspec's process-wide memory file system.

    The entries are filtered directly: fsspec's recursive ``rm`` there walks every file of
    the process for each one it removes (minutes after a 10,000-message test).
    """
    import fsspec

    fs = fsspec.filesystem("memory")
    inside = [path for path in fs.store if (path + "/").startswith(folder + "/")]
    for path in inside:
        del fs.store[path]
    fs.pseudo_dirs[:] = [d for d in fs.pseudo_dirs if not (d + "/").startswith(folder + "/")]
    assert not fs.exists(folder)
