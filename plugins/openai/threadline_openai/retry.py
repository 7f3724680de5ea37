"""When to retry a request and how long to wait; tenacity runs the attempts.

Retries happen only before the first byte of a response body is read, so a retried
request can never duplicate text the caller has already seen. A server's
``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms`` is honoured when it is
no longer than :attr:`RetryPolicy.max_retry_after`; a longer wait is not slept through:
the error is raised at once with ``retry_after`` set so the caller can decide.

tenacity rather than stamina: stamina is tenacity with defaults this provider would have
to undo (a 45 s budget for all attempts, a jitter added on top of the backoff, process-wide
switches that turn retries off or their waits to zero, and a warning per retry on its
own logger with the cause's ``repr``). tenacity gives just the parts: stop after n
attempts, a wait read from the failure, a retry predicate, and a hook that logs through
the provider's key scrubber.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import attrs
import tenacity

from threadline.errors import ProviderError

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "Retryable", "parse_retry_after"]

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429})
"""Statuses below 500 worth retrying: request timeout, lock conflict, rate limit."""


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{attr.name} must be a number >= 0, got {value!r}")


def _count(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attr.name} must be an int >= 0, got {value!r}")


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After``; ``None`` when absent or bad.

    :param headers: the response headers (case-insensitive mapping, as httpx gives).
    :param now: the current time, for an HTTP-date value (default: now, UTC).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            pass
        else:
            if math.isfinite(ms):
                return max(0.0, ms / 1000)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        now = now or datetime.now(timezone.utc)
        return max(0.0, (when - now).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


@attrs.frozen
class RetryPolicy:
    """How often and how long to retry a request that failed before its body arrived.

    The n-th retry (n = 0, 1, ...) waits ``min(initial_delay * 2**n, max_delay)`` less a
    random fraction (up to ``jitter``) of it, unless the server said how long to wait.
    """

    max_retries: int = attrs.field(default=2, validator=_count)
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    def is_retryable_status(self, status: int, headers: Mapping[str, str] | None = None) -> bool:
        """True for 408, 409, 429 and 5xx, or when the server says ``x-should-retry: true``."""
        should = (headers or {}).get("x-should-retry", "").strip().lower()
        if should == "true":
            return True
        if should == "false":
            return False
        return status in RETRYABLE_STATUSES or status >= 500

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        base = min(self.initial_delay * math.pow(2.0, min(attempt, 62)), self.max_delay)
        draw = rng.random() if rng is not None else random.random()
        fraction = draw * min(self.jitter, 1.0)
        return base * (1.0 - fraction)

    def retrying(
        self,
        *,
        rng: random.Random | None = None,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> tenacity.AsyncRetrying:
        """A tenacity controller that retries :class:`Retryable` failures by this policy.

        It gives up after :attr:`max_retries` retries, or at once when the server asked for a
        wait longer than :attr:`max_retry_after`, raising the last :class:`Retryable`.
        """

        def may_retry(exc: BaseException) -> bool:
            if not isinstance(exc, Retryable):
                return False
            return exc.retry_after is None or exc.retry_after <= self.max_retry_after

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, Retryable) and exc.retry_after is not None:
                return exc.retry_after
            return self.backoff(state.attempt_number - 1, rng)

        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            retry=tenacity.retry_if_exception(may_retry),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
            sleep=sleep,
        )


class Retryable(Exception):
    """A failure before the body began that may be retried: the error to raise in the end,
    the server's ``Retry-After`` in seconds, and a short reason for the log."""

    def __init__(self, error: ProviderError, *, retry_after: float | None = None, why: str) -> None:
        super().__init__(why)
        self.error = error
        self.retry_after = retry_after
        self.why = why
