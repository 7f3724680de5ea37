"""One chat turn: the loop the chat agent and a graph node share.

A turn sends the history to the provider (with every open tool call answered first:
:func:`~threadline.storekit.window.answer_open_calls`), streams the reply through a
:class:`~threadline.runtime.streaming.ReplyWriter`, times it, and records one
:class:`~threadline.models.ApiCall` per request with its status (``success``,
``failed``, ``timeout``, ``rate_limited``, ``cancelled``) however the stream ends. When
the reply calls tools, they run and the model is asked again, for at most
:data:`MAX_TOOL_ROUNDS` rounds; calls the turn does not run (the limit is reached, or no
tools were offered) are answered with an ``error: not run`` result, so the history never
keeps an open call. Where messages go is the caller's :class:`Transcript`: the store
for :class:`~threadline.Agent`, the run's history for a graph node.

When a reply calls a tool that needs approval (``TurnSettings.approval``), none of its
calls run: the reply is saved with ``metadata["approval"]`` naming the held calls,
``TurnSettings.hold`` records the wait, and the turn ends by yielding what it returns
(an :class:`~threadline.runtime.approvals.ApprovalRequired`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from threadline.errors import ProviderTimeoutError, RateLimitError
from threadline.models import ApiCall, ApiCallStatus, Message, MessageStatus, Role, ToolCall
from threadline.runtime.providers import ChatRequest, Provider, StreamEnd, TextDelta
from threadline.runtime.streaming import ReplyWriter, RequestTimer
from threadline.runtime.tools import Tool, ToolOutcome, run_tool
from threadline.storekit.window import answer_open_calls

if TYPE_CHECKING:
    from threadline.runtime.approvals import ApprovalPolicy

Hold = Callable[[Message, Sequence[ToolCall]], Awaitable[str]]
"""Records that a reply's calls wait for approval; returns the turn's last item."""

__all__ = [
    "MAX_TOOL_ROUNDS",
    "Transcript",
    "TurnSettings",
    "answer_call",
    "api_status",
    "reply_status",
    "stream_turn",
]

MAX_TOOL_ROUNDS = 8
"""How many rounds of tool calls one turn runs before it stops asking the model again."""

NOT_RUN_LIMIT = "max_tool_rounds"
NOT_RUN_NOT_OFFERED = "tools_not_offered"
_NOT_RUN_TEXT = {
    NOT_RUN_LIMIT: f"error: not run: the turn reached its limit of {MAX_TOOL_ROUNDS} rounds "
    "of tool calls",
    NOT_RUN_NOT_OFFERED: "error: not run: no tools were offered in this request",
}


def api_status(failure: BaseException | None) -> ApiCallStatus:
    """The :class:`ApiCall` status of a request that ended with ``failure`` (``None``: success)."""
    if failure is None:
        return "success"
    if isinstance(failure, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    if isinstance(failure, RateLimitError):
        return "rate_limited"
    if isinstance(failure, (ProviderTimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(failure, Exception):
        return "failed"
    return "cancelled"  # KeyboardInterrupt, SystemExit: the caller stopped it


def reply_status(failure: BaseException | None) -> MessageStatus:
    """The status of a reply whose stream ended with ``failure``: an error, or cancelled."""
    if failure is None:
        return "complete"
    return "error" if isinstance(failure, Exception) else "cancelled"


class Transcript(Protocol):
    """Where a turn reads its history from and writes its messages and API calls to."""

    def messages(self) -> Sequence[Message]:
        """The history the next request sends (before open calls are answered)."""
        ...

    def message(self, role: Role, content: str = "", **fields: Any) -> Message:
        """A new message of this session, tenant, user and agent."""
        ...

    def start_reply(self, template: Message) -> ReplyWriter:
        """The writer of one streaming reply (``template`` has its id and ids)."""
        ...

    async def save(self, message: Message) -> Message:
        """Persist a tool result where the transcript persists messages; return it stored."""
        ...

    def append(self, message: Message) -> None:
        """Add a finished reply or a saved tool result to the history."""
        ...

    async def save_api_call(self, api_call: ApiCall) -> None:
        """Record one model request."""
        ...


@attrs.frozen
class TurnSettings:
    """What each request of a turn sends: provider, model, tools and sampling settings."""

    provider: Provider
    model: str
    tools: Mapping[str, Tool] = attrs.field(factory=dict)
    run_tools: bool = True
    """Offer ``tools`` and run the calls the model makes (else calls are answered not run)."""
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    approval: ApprovalPolicy | None = None
    """Which calls wait for a person (with ``hold``); ``None``: every call runs."""
    hold: Hold | None = None

    def held(self, calls: Sequence[ToolCall]) -> list[ToolCall]:
        """The calls of one reply that wait for approval."""
        if self.approval is None or self.hold is None or not self.run_tools:
            return []
        return [c for c in calls if self.approval.needs(c, self.tools)]

    def request(self, messages: Sequence[Message]) -> ChatRequest:
        """The request sending ``messages`` with every open tool call answered."""
        return ChatRequest(
            model=self.model,
            messages=answer_open_calls(messages),
            tools=[t.spec for t in self.tools.values()] if self.run_tools else [],
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            response_format=self.response_format,
            extra=self.extra,
        )


async def answer_call(
    transcript: Transcript, tools: Mapping[str, Tool], call: ToolCall
) -> tuple[Message, ToolOutcome]:
    """Run ``call`` and save its result as a ``tool`` message in the history."""
    outcome = await run_tool(tools, call)
    message = transcript.message(
        "tool",
        outcome.content,
        tool_call_id=call.id,
        name=call.name,
        metadata=dict(outcome.metadata),
    )
    saved = await transcript.save(message)
    transcript.append(saved)
    return saved, outcome


async def _answer_not_run(transcript: Transcript, calls: Sequence[ToolCall], reason: str) -> None:
    for call in calls:
        message = transcript.message(
            "tool",
            _NOT_RUN_TEXT[reason],
            tool_call_id=call.id,
            name=call.name,
            metadata={"error": reason},
        )
        transcript.append(await transcript.save(message))


def _request_message_id(messages: Sequence[Message]) -> str | None:
    return next((m.id for m in reversed(messages) if m.role != "assistant"), None)


async def _close_stream(stream: AsyncIterator[Any]) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def stream_turn(
    transcript: Transcript,
    settings: TurnSettings,
    *,
    request_message_id: str | None = None,
    before_first_token: Awaitable[object] | None = None,
) -> AsyncGenerator[str, None]:
    """Ask the model, yield its reply's text as it streams, run its tool calls, repeat.

    ``before_first_token`` (the user message's write) is awaited before the first piece
    of text is recorded or yielded, and before the turn ends however it ends.
    ``request_message_id`` names the message each :class:`ApiCall` answers (default:
    the last message of the history that is not the assistant's). Close the iterator
    with ``aclose()`` when stopping early: the partial reply is then ``cancelled``.
    """
    gate = before_first_token
    try:
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            history = transcript.messages()
            request = settings.request(history)
            template = transcript.message("assistant", status="streaming")
            writer = transcript.start_reply(template)
            asked = request_message_id or _request_message_id(history)
            timer = RequestTimer()
            end: StreamEnd | None = None
            failure: BaseException | None = None
            stream = settings.provider.stream(request)
            try:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        if not event.text:
                            continue
                        timer.token()
                        if gate is not None:
                            await gate  # durable before the first token is shown
                            gate = None
                        writer.add(event.text)
                        yield event.text
                    else:
                        end = event
            except BaseException as exc:
                failure = exc
                raise
            finally:
                timer.stop()
                await _close_stream(stream)
                if gate is not None:
                    await gate
                    gate = None
                held = settings.held(end.tool_calls) if end is not None else []
                await _finish(
                    transcript, template, writer, request, asked, timer, end, failure, held
                )
            calls = end.tool_calls if end is not None else ()
            if not calls:
                return
            if held and settings.hold is not None:
                yield await settings.hold(transcript.messages()[-1], held)
                return
            if not settings.run_tools:
                await _answer_not_run(transcript, calls, NOT_RUN_NOT_OFFERED)
                return
            if round_ == MAX_TOOL_ROUNDS:
                await _answer_not_run(transcript, calls, NOT_RUN_LIMIT)
                return
            for call in calls:
                await answer_call(transcript, settings.tools, call)
    finally:
        if gate is not None:
            await gate


async def _finish(
    transcript: Transcript,
    template: Message,
    writer: ReplyWriter,
    request: ChatRequest,
    request_message_id: str | None,
    timer: RequestTimer,
    end: StreamEnd | None,
    failure: BaseException | None,
    held: Sequence[ToolCall] = (),
) -> None:
    """Write the reply's final text and status and the request's ApiCall, together."""
    metadata: dict[str, Any] = {"model": end.model if end and end.model else request.model}
    if held:
        metadata["approval"] = {"held": [c.id for c in held]}
    api_call = timer.api_call(
        {
            "tenant_id": template.tenant_id,
            "session_id": template.session_id,
            "user_id": template.user_id,
            "agent_id": template.agent_id,
            "model": request.model,
            "request_message_id": request_message_id,
            "response_message_id": writer.message_id,
            "response_id": end.response_id if end else None,
        },
        status=api_status(failure),
        usage=end.usage if end else None,
        error=failure if isinstance(failure, Exception) else None,
    )
    # Two independent writes: one round trip's wait instead of two in a row.
    reply, _ = await asyncio.gather(
        writer.finish(
            reply_status(failure),
            tool_calls=end.tool_calls if end else (),
            metadata=metadata,
        ),
        transcript.save_api_call(api_call),
    )
    transcript.append(reply)
