"""The sliding window: the rounds of a conversation a model gets to see.

A *round* starts at a user message and runs to the next one, so it holds the
user turn, the assistant's replies, its tool calls and their results. The window
of ``n`` rounds keeps every system message, then the last ``n`` rounds; it never
keeps a tool result without the assistant message that called it (the window
grows back to that call's round instead). Every store answers
``threadline_load_window`` with exactly this selection.

The token window (:func:`select_token_window`) applies the same rule with a budget
instead of a count: the system messages, then as many of the newest whole rounds as fit
(the last round always, even when it alone is over the budget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from threadline.errors import ValidationError
from threadline.models import MAX_INT, Message

__all__ = [
    "answer_open_calls",
    "check_rounds",
    "check_tokens",
    "for_request",
    "orphaned_tool_results",
    "round_start",
    "select_token_window",
    "select_window",
    "window_start",
]


def check_rounds(last_rounds: object) -> int | None:
    """Validate a window size: ``None`` (everything) or an int from 0 to 2**63-1 (the
    largest count every store can bind)."""
    if last_rounds is None:
        return None
    if isinstance(last_rounds, bool) or not isinstance(last_rounds, int) or last_rounds < 0:
        raise ValidationError(f"last_rounds must be None or an int >= 0, got {last_rounds!r}")
    if last_rounds > MAX_INT:
        raise ValidationError(
            f"last_rounds must be at most {MAX_INT} (2**63-1), got {last_rounds!r}"
        )
    return last_rounds


def round_start(messages: Sequence[Message], last_rounds: int | None) -> int:
    """Index in ``messages`` where the last ``last_rounds`` rounds begin (0: everything)."""
    if last_rounds is None:
        return 0
    seen = 0
    if last_rounds == 0:
        return len(messages)
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            seen += 1
            if seen == last_rounds:
                return index
    return 0


def orphaned_tool_results(messages: Sequence[Message]) -> set[str]:
    """Tool-call ids answered by a tool message in ``messages`` but called outside it."""
    called: set[str] = set()
    orphans: set[str] = set()
    for message in messages:
        if message.tool_calls:
            called.update(call.id for call in message.tool_calls)
        elif message.role == "tool" and message.tool_call_id not in called:
            orphans.add(message.tool_call_id or "")
    return orphans


def window_start(messages: Sequence[Message], last_rounds: int | None) -> int:
    """Index where the window's rounds begin, grown back so no tool result loses its call.

    Scans backwards from the end, so its cost is that of the window, not the session.
    """
    return _grow_back(messages, round_start(messages, check_rounds(last_rounds)))


def _grow_back(messages: Sequence[Message], start: int) -> int:
    """``start`` moved back to the round whose calls the results from ``start`` on answer."""
    while start > 0:
        orphans = orphaned_tool_results(messages[start:])
        earliest = None
        for index in range(start - 1, -1, -1):  # backwards, only as far as the calls lie
            if not orphans:
                break
            found = {c.id for c in messages[index].tool_calls} & orphans
            if found:
                earliest = index
                orphans -= found
        if earliest is None:  # nothing answered in the window was called before it
            break
        start = earliest
        while start > 0 and messages[start].role != "user":  # back to that round's start
            start -= 1
    return start


def select_window(messages: Sequence[Message], last_rounds: int | None) -> list[Message]:
    """The window of ``last_rounds`` rounds over ``messages`` (ordered by seq)."""
    start = window_start(messages, last_rounds)
    head = [m for m in messages[:start] if m.role == "system"]
    return head + list(messages[start:])


def check_tokens(max_tokens: object) -> int | None:
    """Validate a token budget: ``None`` (no budget) or an int from 1 to 2**63-1."""
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValidationError(f"max_tokens must be None or an int >= 1, got {max_tokens!r}")
    if max_tokens > MAX_INT:
        raise ValidationError(f"max_tokens must be at most {MAX_INT} (2**63-1), got {max_tokens!r}")
    return max_tokens


def select_token_window(
    messages: Sequence[Message], max_tokens: int | None, tokens: Callable[[Message], int]
) -> list[Message]:
    """The system messages plus the newest whole rounds whose tokens fit in ``max_tokens``.

    ``tokens(message)`` counts one message. Rounds are taken whole, grown back like
    :func:`select_window` so no tool result loses its call; the last round is kept even
    when it does not fit (the question must reach the model).
    """
    limit = check_tokens(max_tokens)
    if limit is None:
        return list(messages)
    sizes = [tokens(m) for m in messages]
    budget = limit - sum(n for m, n in zip(messages, sizes) if m.role == "system")
    after = [0] * (len(messages) + 1)  # after[i]: tokens of the non-system messages from i
    for i in range(len(messages) - 1, -1, -1):
        after[i] = after[i + 1] + (0 if messages[i].role == "system" else sizes[i])
    starts = [i for i, m in enumerate(messages) if m.role == "user"]
    # Candidate starts, newest first; 0 last so a prefix before the first round fits too.
    candidates = [_grow_back(messages, i) for i in reversed(starts)] + [0]
    start = candidates[0]
    for candidate in candidates[1:]:
        if after[candidate] > budget:
            break
        start = min(start, candidate)
    head = [m for m in messages[:start] if m.role == "system"]
    return head + list(messages[start:])


OPEN_CALL_RESULT = "error: this tool call did not complete (the turn was cancelled or crashed)"


def answer_open_calls(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with a placeholder result for every tool call that has none.

    A turn cancelled while its tools ran, or a crash between a call and its result, leaves
    an unanswered call in the history, and OpenAI-compatible APIs refuse such a history.
    The placeholders follow the call's existing results; they are for the request only
    and never stored.
    """
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    if all(c.id in answered for m in messages for c in m.tool_calls):
        return list(messages)
    out: list[Message] = []
    placeholders: list[Message] = []
    for message in messages:
        if placeholders and message.role != "tool":
            out.extend(placeholders)
            placeholders = []
        out.append(message)
        placeholders.extend(
            Message(
                session_id=message.session_id,
                tenant_id=message.tenant_id,
                role="tool",
                content=OPEN_CALL_RESULT,
                tool_call_id=call.id,
                name=call.name,
            )
            for call in message.tool_calls
            if call.id not in answered
        )
    out.extend(placeholders)
    return out


def for_request(messages: Sequence[Message]) -> list[Message]:
    """What to send a model: system messages first, then the rest with open calls answered."""
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    return system + answer_open_calls(rest)
