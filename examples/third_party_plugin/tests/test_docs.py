"""docs/writing-a-store-plugin.md quotes this example's code as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
TUTORIAL = EXAMPLE.parents[1] / "docs" / "writing-a-store-plugin.md"
QUOTE = re.compile(
    r"<!-- from examples/third_party_plugin/(\S+) -->\n<!-- fmt: off -->\n```\w*\n(.*?)\n```", re.S
)


def test_every_quote_matches_its_file() -> None:
    if not TUTORIAL.exists():
        pytest.skip("outside the threadline repository")
    quotes = QUOTE.findall(TUTORIAL.read_text(encoding="utf-8"))
    assert len(quotes) >= 10
    for path, code in quotes:
        assert code in (EXAMPLE / path).read_text(encoding="utf-8"), f"stale quote of {path}"
