"""The token window: system kept, whole rounds, tool calls never split from their results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline import Message, ToolCall, ValidationError
from threadline.ids import new_id
from threadline.runtime.tokens import (
    MESSAGE_OVERHEAD,
    default_counter,
    estimate_tokens,
    message_tokens,
    tiktoken_counter,
)
from threadline.storekit.window import select_token_window, select_window

T, S = new_id(), new_id()


def msg(role: str, content: str = "", **fields: object) -> Message:
    return Message(session_id=S, tenant_id=T, role=role, content=content, **fields)  # type: ignore[arg-type]


def size(message: Message) -> int:
    """One token per character: budgets in the tests read as lengths."""
    return len(message.content)


def test_newest_whole_rounds_that_fit_and_the_system_prompt() -> None:
    log = [
        msg("system", "ss"),
        msg("user", "u1"),
        msg("assistant", "aaaa"),
        msg("user", "u2"),
        msg("assistant", "bbbb"),
        msg("user", "u3"),
        msg("assistant", "cccc"),
    ]
    assert select_token_window(log, 8, size) == [log[0], log[5], log[6]]
    assert select_token_window(log, 13, size) == [log[0], log[5], log[6]]
    assert select_token_window(log, 14, size) == [log[0], *log[3:]]
    assert select_token_window(log, 20, size) == log
    assert select_token_window(log, None, size) == log


def test_the_last_round_is_kept_even_over_budget() -> None:
    log = [msg("system", "s" * 50), msg("user", "u1"), msg("user", "x" * 100)]
    assert select_token_window(log, 1, size) == [log[0], log[2]]


def test_a_tool_call_is_never_split_from_its_result() -> None:
    call = ToolCall(id="c1", name="f", arguments={"a": 1})
    log = [
        msg("system", "s"),
        msg("user", "u1"),
        msg("assistant", "", tool_calls=[call]),
        msg("user", "interjection"),  # a user turn between the call and its result
        msg("tool", "result" * 5, tool_call_id="c1", name="f"),
        msg("assistant", "done"),
    ]
    window = select_token_window(log, 1, size)
    assert window == log  # the last round's result pulls its call's round in
    called = {c.id for m in window for c in m.tool_calls}
    assert all(m.tool_call_id in called for m in window if m.role == "tool")


def test_a_prefix_before_the_first_user_turn_is_kept_only_when_it_fits() -> None:
    log = [msg("assistant", "greeting!"), msg("user", "u"), msg("assistant", "a")]
    assert select_token_window(log, 100, size) == log
    assert select_token_window(log, 5, size) == log[1:]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", 2**63])
def test_budget_is_checked(bad: object) -> None:
    with pytest.raises(ValidationError):
        select_token_window([], bad, size)  # type: ignore[arg-type]


@given(
    st.lists(st.tuples(st.sampled_from(["user", "assistant", "system"]), st.integers(0, 30))),
    st.integers(1, 200),
)
def test_the_token_window_is_a_round_window_within_budget(
    shape: list[tuple[str, int]], budget: int
) -> None:
    log = [msg(role, "x" * n) for role, n in shape]
    window = select_token_window(log, budget, size)
    rounds = sum(1 for m in log if m.role == "user")
    # Always one of the count windows (so the same invariants hold) ...
    assert any(window == select_window(log, n) for n in range(0, rounds + 2)) or window == log
    # ... within budget unless it is just the last round.
    kept_rounds = sum(1 for m in window if m.role == "user")
    if kept_rounds > 1:
        assert sum(size(m) for m in window) <= budget
    assert [m for m in log if m.role == "system"] == [m for m in window if m.role == "system"]


def test_the_offline_estimate_and_message_overhead() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    call = ToolCall(id="c", name="lookup", arguments={"q": "x"})
    m = msg("assistant", "hello world!", tool_calls=[call])
    assert message_tokens(m) == MESSAGE_OVERHEAD + 3 + 2 + estimate_tokens('{"q": "x"}')


def test_tiktoken_is_used_only_when_its_encoding_is_cached(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing cached
    assert tiktoken_counter() is None  # not installed, or installed without its encoding
    assert default_counter() is estimate_tokens


async def test_persistence_context_reads_a_token_window() -> None:
    import threadline
    from threadline import PersistenceContext

    store = await threadline.connect("memory://")
    ctx = await PersistenceContext.open(store, tenant_id=new_id())
    await ctx.save_system_message("be brief")
    for n in range(5):
        await ctx.save_user_message(f"question {n} " + "x" * 40)
        await ctx.save_assistant_message(f"answer {n} " + "y" * 40)
    everything = await ctx.get_history()
    window = await ctx.get_history(max_tokens=70)
    assert window[0].content == "be brief"
    assert [m.content[:10] for m in window[1:]] == ["question 4", "answer 4 y"]
    assert await ctx.get_history(max_tokens=10_000) == everything
    assert await ctx.get_history(2, max_tokens=10_000) == [everything[0], *everything[-4:]]
    await store.close()
