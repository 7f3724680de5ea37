"""docs/writing-a-store-plugin.md quotes this example's code, and the core's, as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
ROOT = EXAMPLE.parents[1]
TUTORIAL = ROOT / "docs" / "writing-a-store-plugin.md"
QUOTE = re.compile(r"<!-- from (\S+) -->\n<!-- fmt: off -->\n```\w*\n(.*?)\n```", re.S)


def test_every_quote_matches_its_file() -> None:
    if not TUTORIAL.exists():
        pytest.skip("outside the threadline repository")
    quotes = QUOTE.findall(TUTORIAL.read_text(encoding="utf-8"))
    assert len(quotes) >= 10
    assert sum(path.startswith("examples/third_party_plugin/") for path, _ in quotes) >= 8
    for path, code in quotes:
        assert code in (ROOT / path).read_text(encoding="utf-8"), f"stale quote of {path}"


def test_the_store_code_is_at_most_300_lines() -> None:
    """The tutorial's promise: the whole contract, durable, in 300 lines of store code."""
    assert len((EXAMPLE / "threadline_jsonl" / "store.py").read_text().splitlines()) <= 300
