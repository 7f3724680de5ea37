"""Run store work in several real processes at once (for multi-process store tests).

A child script touches ``GO_DIR/ready-NAME`` when it is ready and waits for
``GO_DIR/go`` (see :func:`wait_for_go`), so the work of all children overlaps; each
prints its result as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_together", "wait_for_go"]


def run_together(
    script: Path,
    go_dir: Path,
    commands: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> list[Any]:
    """Start ``script`` once per command, release them together, return their JSON outputs."""
    go_dir.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env) if env is not None else None,
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
                proc.wait()


def wait_for_go(go_dir: str | os.PathLike[str], name: str, timeout: float = 60) -> None:
    """In a child: say ``name`` is ready, then wait until the parent releases everyone."""
    folder = Path(go_dir)
    (folder / f"ready-{name}").touch()
    deadline = time.monotonic() + timeout
    while not (folder / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.002)
