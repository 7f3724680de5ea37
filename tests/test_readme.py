"""README's quickstart names commands that exist, and its examples are real files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quickstart_commands_are_dev_py_tasks() -> None:
    commands = re.findall(r"^python dev\.py (\w+)", README, flags=re.M)
    assert commands == ["demo", "test"]
    out = subprocess.run([sys.executable, str(ROOT / "dev.py")], capture_output=True, text=True)
    assert out.returncode == 2
    for task in commands:
        assert f"python dev.py {task}" in out.stdout


def test_ci_runs_the_readme_test_command() -> None:
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_linked_docs_exist() -> None:
    for link in re.findall(r"\]\(((?:docs|benchmarks|examples)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), f"README links to missing {link}"
