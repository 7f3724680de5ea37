"""Human in the loop across processes: ``interrupt()`` in one, ``Command(resume=...)`` in another.

The first process runs the approval graph until it asks; it exits with the run waiting.
A second process, sharing nothing but the store's URL, resumes it with the answer and the
graph finishes from where it stopped (the draft node does not run again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def run_child(*args: str) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(HERE / "_graphs.py"), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_interrupt_resumes_in_another_process(kind: str, store_url: Callable[[str], str]) -> None:
    url = store_url(kind)
    first = run_child(url, "refund-7", "start")
    assert first["next"] == ["approve"]
    assert first["interrupts"] == [{"question": "approve refund?", "amount": 42}]
    assert first["result"] == {"amount": 42, "log": ["drafted 42"]}

    second = run_child(url, "refund-7", "resume", "yes, 40")
    assert second["next"] == []
    assert second["result"] == {
        "amount": 42,
        "approved": "yes, 40",
        "log": ["drafted 42", "answer yes, 40"],
    }
