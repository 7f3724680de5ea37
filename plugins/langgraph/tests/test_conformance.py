"""LangGraph's own conformance suite (``langgraph-checkpoint-conformance``) on every store.

Every base capability (put, put_writes, get_tuple, list, delete_thread) and every extended
one (delete_for_runs, copy_thread, prune) must be detected and pass, each suite on a fresh
store of the kind under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from conftest import KINDS
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from threadline_langgraph import ThreadlineSaver


@pytest.mark.parametrize("kind", KINDS)
async def test_conformance(kind: str, store_url: Callable[[str], str]) -> None:
    async def factory() -> AsyncIterator[ThreadlineSaver]:
        async with ThreadlineSaver.afrom_conn_string(store_url(kind)) as saver:
            yield saver

    registered = checkpointer_test(name=f"ThreadlineSaver[{kind}]")(factory)
    report = await validate(registered)
    failures = {
        name: result.failures
        for name, result in report.results.items()
        if not (result.detected and result.passed)
    }
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    assert not failures, failures
