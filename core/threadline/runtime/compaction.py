"""Compaction: older rounds replaced, in what the model sees, by a stored summary.

When the history an agent would send is over its budget, the rounds before the last
``keep_rounds`` are summarized (by the model, or a summarizer callable you give) and the
summary is saved as one ``system`` message whose ``metadata["summary"]`` records the seqs it
covers. From then on a request holds the system prompt, the latest summary and the messages
after it covers. The originals stay stored (export, audit and erasure see them); the summary
is written in one write after it is complete, so a crash while summarizing changes nothing.
A later compaction summarizes the previous summary with the rounds after it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import attrs

from threadline.errors import ValidationError
from threadline.ids import IdLike, check_id, optional_id
from threadline.models import Message
from threadline.runtime.providers import ChatRequest, Provider, StreamEnd, TextDelta
from threadline.runtime.streaming import RequestTimer
from threadline.runtime.tokens import TokenCounter, estimate_tokens, message_tokens
from threadline.runtime.turn import api_status
from threadline.store import Store
from threadline.storekit.window import check_tokens, select_token_window, window_start

__all__ = [
    "SUMMARY_KEY",
    "Compaction",
    "Summarizer",
    "compact_messages",
    "compact_session",
    "fit_history",
    "load_budgeted",
    "model_summarizer",
    "summary_range",
    "visible",
]

SUMMARY_KEY = "summary"
"""The metadata key of a summary message: ``{"first_seq": .., "last_seq": .., "messages": ..}``."""

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
_INSTRUCTION = (
    "Summarize the conversation below for your own later use: keep the facts, names, "
    "numbers, decisions and open questions; leave out pleasantries. Reply with the summary only."
)

Summarizer = Callable[[Sequence[Message]], "Awaitable[str] | str"]
"""Turns the messages to compact (oldest first; a previous summary first) into a summary."""


def _keep_rounds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"keep_rounds must be an int >= 1, got {value!r}")
    return value


def _max_tokens(value: object) -> int:
    checked = check_tokens(value)
    if checked is None:
        raise ValidationError("max_tokens must be an int >= 1, got None")
    return checked


@attrs.frozen
class Compaction:
    """When to compact (history over ``max_tokens``), what to keep (``keep_rounds``) and
    who writes the summary (``summarizer``; ``None``: the agent's own model)."""

    max_tokens: int = attrs.field(converter=_max_tokens)
    keep_rounds: int = attrs.field(default=2, converter=_keep_rounds)
    summarizer: Summarizer | None = None


def summary_range(message: Message) -> tuple[int, int] | None:
    """The seqs ``(first, last)`` a summary message covers; ``None`` for other messages."""
    info = message.metadata.get(SUMMARY_KEY) if message.role == "system" else None
    if not isinstance(info, dict):
        return None
    first, last = info.get("first_seq"), info.get("last_seq")
    if not isinstance(first, int) or not isinstance(last, int):
        return None
    return first, last


def _latest_summary(messages: Sequence[Message]) -> Message | None:
    summaries = [m for m in messages if summary_range(m) is not None]
    return max(summaries, key=lambda m: m.seq or 0) if summaries else None


def visible(messages: Sequence[Message]) -> list[Message]:
    """What a model sees of ``messages``: the latest summary in place of what it covers."""
    latest = _latest_summary(messages)
    if latest is None:
        return list(messages)
    covered = summary_range(latest)
    assert covered is not None
    last = covered[1]

    def shown(m: Message) -> bool:
        if summary_range(m) is not None:
            return m is latest
        return m.role == "system" or m.seq is None or m.seq > last

    return [m for m in messages if shown(m)]


def _transcript(messages: Sequence[Message]) -> str:
    lines = []
    for m in messages:
        calls = "; ".join(f"calls {c.name}({c.arguments})" for c in m.tool_calls)
        lines.append(f"{m.role}: {m.content}" + (f" [{calls}]" if calls else ""))
    return "\n".join(lines)


def model_summarizer(
    provider: Provider,
    model: str,
    *,
    store: Store | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
) -> Summarizer:
    """A summarizer that asks ``model`` (one request, the messages as a transcript); with
    ``store``, the request is recorded as an :class:`ApiCall` (``metadata.purpose`` is
    ``"compaction"``) like any other, so usage reports count it."""

    async def summarize(messages: Sequence[Message]) -> str:
        sid, tenant = messages[0].session_id, messages[0].tenant_id
        request = ChatRequest(
            model=model,
            messages=[
                Message(session_id=sid, tenant_id=tenant, role="system", content=_INSTRUCTION),
                Message(
                    session_id=sid, tenant_id=tenant, role="user", content=_transcript(messages)
                ),
            ],
        )
        timer, parts = RequestTimer(), []
        end: StreamEnd | None = None
        failure: BaseException | None = None
        stream = provider.stream(request)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    timer.token()
                    parts.append(event.text)
                else:
                    end = event
        except BaseException as exc:
            failure = exc
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            if store is not None:
                template = {
                    "session_id": sid,
                    "tenant_id": tenant,
                    "user_id": user_id,
                    "agent_id": agent_id,
                    "model": model,
                    "response_id": end.response_id if end else None,
                    "metadata": {"purpose": "compaction"},
                }
                error = failure if isinstance(failure, Exception) else None
                usage = end.usage if end else None
                status = api_status(failure)
                await store.save_api_call(
                    timer.api_call(template, status=status, usage=usage, error=error)
                )
        return "".join(parts)

    return summarize


async def compact_messages(
    messages: Sequence[Message],
    keep_rounds: int,
    summarizer: Summarizer,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
) -> Message | None:
    """The summary message (not saved) of what ``messages`` show before their last
    ``keep_rounds`` rounds, or ``None`` when there is nothing older to compact."""
    keep = _keep_rounds(keep_rounds)
    shown = visible(messages)
    start = window_start(shown, keep)
    previous = _latest_summary(shown)
    older = [m for m in shown[:start] if m.role != "system" and m.seq is not None]
    if not older:
        return None
    text = summarizer(([previous] if previous else []) + older)
    if inspect.isawaitable(text):
        text = await text
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"the summarizer must return a non-empty str, got {text!r}")
    prev = summary_range(previous) if previous else None
    first_seq = prev[0] if prev else min(m.seq or 0 for m in older)
    last_seq = max(m.seq or 0 for m in older)
    info: dict[str, Any] = {"first_seq": first_seq, "last_seq": last_seq, "messages": len(older)}
    if previous is not None:
        info["previous"] = previous.id
    return Message(
        session_id=older[0].session_id,
        tenant_id=older[0].tenant_id,
        user_id=user_id,
        agent_id=agent_id,
        role="system",
        content=SUMMARY_PREFIX + text.strip(),
        metadata={SUMMARY_KEY: info},
    )


async def compact_session(
    store: Store,
    tenant_id: IdLike,
    session_id: IdLike,
    summarizer: Summarizer,
    *,
    keep_rounds: int = 2,
    user_id: IdLike | None = None,
    agent_id: IdLike | None = None,
) -> Message | None:
    """Summarize a stored session's rounds before its last ``keep_rounds`` and save the
    summary (one write); returns it, or ``None`` when there was nothing to compact."""
    _keep_rounds(keep_rounds)
    tenant, sid = check_id(tenant_id, "tenant_id"), check_id(session_id, "session_id")
    messages = await store.load_window(tenant, sid, None)
    summary = await compact_messages(
        messages,
        keep_rounds,
        summarizer,
        user_id=optional_id(user_id, "user_id"),
        agent_id=optional_id(agent_id, "agent_id"),
    )
    return None if summary is None else await store.save_message(summary)


FIRST_LOAD_ROUNDS = 4
"""Rounds a budgeted turn reads first; doubled until the budget is passed or nothing is left."""


def _counted(messages: Iterable[Message], count: TokenCounter) -> int:
    return sum(message_tokens(m, count) for m in messages if m.role != "system")


async def load_budgeted(
    store: Store, tenant_id: str, session_id: str, budget: int, counter: TokenCounter | None
) -> tuple[list[Message], bool]:
    """The window a turn with a token budget needs, and whether it is complete.

    Reads 4, 8, 16, ... rounds (one indexed window read each) until what the model would
    see is over ``budget`` (then it is incomplete: a compaction reads the rest), reaches
    what the latest summary covers, or is the whole session; so a turn's read is bounded
    by its budget, not by the session's length.
    """
    count = counter or estimate_tokens
    rounds = FIRST_LOAD_ROUNDS
    while True:
        window = await store.load_window(tenant_id, session_id, rounds)
        if sum(m.role == "user" for m in window) < rounds:
            return window, True  # the whole session
        latest = _latest_summary(window)
        covered = summary_range(latest) if latest is not None else None
        seqs = [m.seq for m in window if m.role != "system" and m.seq is not None]
        if covered is not None and seqs and min(seqs) <= covered[1] + 1:
            return window, True  # reaches what the summary covers
        if _counted(visible(window), count) > budget:
            return window, False
        rounds *= 2


async def fit_history(
    store: Store,
    history: Sequence[Message],
    *,
    compaction: Compaction | None,
    window_tokens: int | None,
    counter: TokenCounter | None,
    summarizer: Summarizer,
    user_id: str | None,
    agent_id: str | None,
    reload: Callable[[], Awaitable[list[Message]]] | None = None,
) -> list[Message]:
    """What a turn sends of ``history`` (system first): compacted first when it is over
    the compaction budget, then cut to the token window. ``reload`` (given when
    ``history`` is a partial window) reads everything a compaction must summarize."""
    count = counter or estimate_tokens

    def tokens(m: Message) -> int:
        return message_tokens(m, count)

    shown = visible(history)
    if compaction is not None and sum(tokens(m) for m in shown) > compaction.max_tokens:
        if reload is not None:
            full = await reload()
            stored = {m.id for m in full}
            shown = visible([*full, *(m for m in history if m.id not in stored)])
            shown.sort(key=lambda m: m.role != "system")
        summary = await compact_messages(
            shown,
            compaction.keep_rounds,
            compaction.summarizer or summarizer,
            user_id=user_id,
            agent_id=agent_id,
        )
        if summary is not None:
            shown = visible([*shown, await store.save_message(summary)])
    shown.sort(key=lambda m: m.role != "system")
    return select_token_window(shown, window_tokens, tokens)
