"""Mapping of HTTP statuses and in-stream ``error`` objects to threadline's typed errors.

OpenAI-compatible servers word their errors differently (OpenAI and llama.cpp send
``{"error": {"message", "type", "code"}}``, vLLM ``{"object": "error", "message", "code": 404}``,
others ``{"error": "text"}`` or HTML); :func:`parse_error_body` reads them all. Every
message goes through a :class:`Scrubber` so an API key never reaches an error text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from threadline.errors import (
    AuthenticationError,
    ModelNotFoundError,
    ProviderError,
    ProviderServerError,
    RateLimitError,
    StreamError,
)

__all__ = [
    "ErrorInfo",
    "Scrubber",
    "error_for_status",
    "error_from_stream",
    "error_info",
    "parse_error_body",
]

_MAX_MESSAGE = 500
_TOKENISH = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{4,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")

_RATE_LIMIT_WORDS = ("rate_limit", "ratelimit", "rate limit", "too_many_requests")
_AUTH_WORDS = ("invalid_api_key", "authentication", "unauthorized", "permission_denied")
_MODEL_WORDS = ("model_not_found",)


class Scrubber:
    """Removes secrets from text: the given keys, ``Bearer ...`` and ``sk-...`` tokens."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # keys shorter than 4 characters are not real secrets and would garble messages
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _BEARER.sub("Bearer ***", text)
        return _TOKENISH.sub(lambda m: m.group()[:3] + "***", text)

    def __repr__(self) -> str:
        return f"Scrubber(<{len(self._secrets)} secret(s)>)"


@attrs.frozen
class ErrorInfo:
    """What a server said about an error: message, type and code, each when it said so."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    status: int | None = None  # a numeric code carried in the body (vLLM does this)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def error_info(obj: object) -> ErrorInfo:
    """Read an error object (the value of ``"error"``, or a whole vLLM-style body)."""
    if isinstance(obj, str):
        return ErrorInfo(message=obj)
    if not isinstance(obj, Mapping):
        return ErrorInfo(message=None if obj is None else str(obj))
    message = obj.get("message") or obj.get("detail") or obj.get("msg")
    code: Any = obj.get("code")
    status: int | None = None
    if isinstance(code, int) and not isinstance(code, bool):
        status, code = code, None
    elif code is not None:
        code = str(code)
    for key in ("status", "status_code"):
        value = obj.get(key)
        if status is None and isinstance(value, int) and not isinstance(value, bool):
            status = value
    kind = obj.get("type")
    return ErrorInfo(
        message=None if message is None else str(message),
        type=None if kind is None else str(kind),
        code=code,
        status=status,
    )


def parse_error_body(body: bytes, content_type: str = "") -> ErrorInfo:
    """Read an error response body, JSON or not; a non-JSON body becomes the message."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return ErrorInfo()
    try:
        data = json.loads(text)
    except ValueError:
        if "html" in content_type.lower() or text.lstrip()[:1] == "<":
            text = re.sub(r"<[^>]*>", " ", text)  # keep the words of an HTML error page
        return ErrorInfo(message=text)
    if isinstance(data, Mapping):
        if data.get("error"):
            return error_info(data["error"])
        return error_info(data)
    return ErrorInfo(message=text)


def _mentions(info: ErrorInfo, words: tuple[str, ...]) -> bool:
    fields = " ".join(f.lower() for f in (info.code, info.type) if f)
    return any(word in fields for word in words)


def error_for_status(
    status: int,
    info: ErrorInfo,
    *,
    context: str,
    scrub: Scrubber,
    retry_after: float | None = None,
) -> ProviderError:
    """The typed error for a non-2xx answer.

    :param status: the HTTP status.
    :param info: what the body said (:func:`parse_error_body`).
    :param context: who answered, e.g. ``"POST http://host/v1/chat/completions"``.
    :param scrub: removes secrets from the text.
    :param retry_after: seconds the server asked to wait (429).
    """
    said = f": {_short(info.message)}" if info.message else ""
    code = info.code or info.type
    if status in (401, 403):
        return AuthenticationError(
            scrub(f"{context} refused the credentials ({status}){said}"),
            status_code=status,
            code=code,
        )
    if status == 404 or _mentions(info, _MODEL_WORDS):
        hint = (
            ""
            if _mentions(info, _MODEL_WORDS)
            else " (the model does not exist, or base_url is not the API root)"
        )
        return ModelNotFoundError(
            scrub(f"{context} answered {status}{said}{hint}"), status_code=status, code=code
        )
    if status == 429:
        wait = "" if retry_after is None else f" (retry after {retry_after:g} s)"
        return RateLimitError(
            scrub(f"{context} is rate limiting (429){said}{wait}"),
            status_code=status,
            code=code,
            retry_after=retry_after,
        )
    if 400 <= status < 500:
        return ProviderError(
            scrub(f"{context} rejected the request ({status}){said}"),
            status_code=status,
            code=code,
        )
    return ProviderServerError(
        scrub(f"{context} failed with {status}{said}"), status_code=status, code=code
    )


def error_from_stream(obj: object, *, scrub: Scrubber) -> ProviderError:
    """The typed error for an ``error`` object sent inside a 200 event stream.

    A rate-limit, authentication or unknown-model code gives that error class;
    anything else is a :class:`~threadline.errors.StreamError` carrying the code.
    """
    info = error_info(obj)
    said = _short(info.message) if info.message else "no message"
    code = info.code or info.type
    text = scrub(f"the server sent an error in the stream: {said}")
    if info.status == 429 or _mentions(info, _RATE_LIMIT_WORDS):
        return RateLimitError(text, status_code=info.status or 429, code=code)
    if info.status in (401, 403) or _mentions(info, _AUTH_WORDS):
        return AuthenticationError(text, status_code=info.status, code=code)
    if info.status == 404 or _mentions(info, _MODEL_WORDS):
        return ModelNotFoundError(text, status_code=info.status, code=code)
    return StreamError(text, status_code=info.status, code=code)
