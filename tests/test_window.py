"""The sliding-window selection shared by every store."""

from __future__ import annotations

import pytest

from threadline import Message, ToolCall, ValidationError
from threadline.ids import new_id
from threadline.storekit.window import select_window

T, S = new_id(), new_id()


def msg(role: str, content: str = "", **fields: object) -> Message:
    return Message(session_id=S, tenant_id=T, role=role, content=content, **fields)  # type: ignore[arg-type]


def call(cid: str) -> Message:
    return msg("assistant", tool_calls=[ToolCall(id=cid, name="f")])


def test_rounds_start_at_user_turns_and_keep_the_system_prompt() -> None:
    log = [
        msg("system", "sys"),
        msg("user", "1"),
        msg("assistant", "a1"),
        msg("user", "2"),
        call("c2"),
        msg("tool", "r2", tool_call_id="c2"),
        msg("assistant", "a2"),
        msg("user", "3"),
        msg("assistant", "a3"),
    ]
    assert select_window(log, 1) == [log[0], *log[7:]]
    assert select_window(log, 2) == [log[0], *log[3:]]
    assert select_window(log, 3) == log
    assert select_window(log, 10) == log
    assert select_window(log, None) == log
    assert select_window(log, 0) == [log[0]]


def test_a_tool_result_never_loses_its_call() -> None:
    log = [
        msg("user", "1"),
        call("slow"),
        msg("user", "still there?"),
        msg("tool", "late", tool_call_id="slow"),
        msg("assistant", "yes"),
    ]
    assert select_window(log, 1) == log


def test_a_call_with_no_visible_origin_is_left_alone() -> None:
    log = [msg("user", "1"), msg("tool", "stray", tool_call_id="ghost"), msg("user", "2")]
    assert select_window(log, 1) == [log[2]]
    assert select_window(log, 2) == log


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_window_size_is_checked(bad: object) -> None:
    with pytest.raises(ValidationError):
        select_window([], bad)  # type: ignore[arg-type]


def test_unanswered_calls_get_a_placeholder_for_the_request_only() -> None:
    from threadline.storekit.window import OPEN_CALL_RESULT, answer_open_calls

    two = msg("assistant", tool_calls=[ToolCall(id="a", name="f"), ToolCall(id="b", name="g")])
    log = [msg("user", "1"), two, msg("tool", "ra", tool_call_id="a"), msg("user", "2")]
    fixed = answer_open_calls(log)
    assert [m.role for m in fixed] == ["user", "assistant", "tool", "tool", "user"]
    assert fixed[2] is log[2]
    assert (fixed[3].tool_call_id, fixed[3].name, fixed[3].content) == ("b", "g", OPEN_CALL_RESULT)
    complete = [*log[:3], msg("tool", "rb", tool_call_id="b"), log[3]]
    assert answer_open_calls(complete) == complete
    assert [m.tool_call_id for m in answer_open_calls([log[0], two])[2:]] == ["a", "b"]
