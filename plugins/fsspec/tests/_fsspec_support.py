"""Helpers of the fsspec store tests (a uniquely named module: plugins' tests share sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from threadline import Checkpoint, Message, Session
from threadline.testing import processes
from threadline_fsspec import FsspecStore

CHILD = Path(__file__).with_name("_fsspec_child.py")


def child_env() -> dict[str, str]:
    """The environment of a child process: this plugin only."""
    return {**os.environ, "THREADLINE_LOAD_PLUGINS": "threadline-fsspec"}


def start_child(*args: str) -> subprocess.Popen[str]:
    """Start ``_fsspec_child.py ARGS...`` with its output captured."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
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


def write_old_format_checkpoints(
    plugin: FsspecStore, session: Session, history: list[Message]
) -> list[Checkpoint]:
    """Hand-write two checkpoints of ``session`` in the format from before the shared records.

    The first holds ``history[:1]`` as a snapshot, the second (its child) adds ``history[1:2]``
    as a delta on version 1; both have an id index file. Returns them, oldest first.
    """
    t, s = session.tenant_id, session.id
    old: list[Checkpoint] = []
    for version, (messages, base) in enumerate([(history[:1], None), (history[1:], 1)], 1):
        checkpoint = Checkpoint(tenant_id=t, session_id=s, node_id="n", version=version,
                                history=history[:version],
                                parent_id=old[-1].id if old else None)  # fmt: skip
        header = checkpoint.to_dict()
        header.pop("history")
        doc = {"checkpoint": header, "depth": version - 1,
               "history": {"base": base, "messages": [m.to_dict() for m in messages]}}  # fmt: skip
        index = {"tenant_id": t, "session_id": s, "version": version}
        plugin.backend.write(f"ids/checkpoints/{checkpoint.id[-2:]}/{checkpoint.id}.json",
                             json.dumps(index).encode())  # fmt: skip
        path = f"tenants/{t}/sessions/{s}/checkpoints/{version:012d}.json"
        plugin.backend.create(path, json.dumps(doc).encode())
        old.append(checkpoint)
    return old
