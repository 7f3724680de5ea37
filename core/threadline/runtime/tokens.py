"""Counting tokens for the token window and compaction, offline by default.

A counter is any ``Callable[[str], int]``. :func:`estimate_tokens` (characters / 4, rounded
up) needs nothing; :func:`tiktoken_counter` uses ``tiktoken`` when it is installed *and* its
encoding is already cached on disk (tiktoken downloads encodings on first use, and this
never makes a network call). :func:`default_counter` picks the latter when it can.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from threadline.models import Message

__all__ = [
    "MESSAGE_OVERHEAD",
    "TokenCounter",
    "default_counter",
    "estimate_tokens",
    "message_tokens",
    "messages_tokens",
    "tiktoken_counter",
]

TokenCounter = Callable[[str], int]
"""Counts the tokens of a text."""

MESSAGE_OVERHEAD = 4
"""Tokens each message costs beyond its text (role and separators, as OpenAI's chat format)."""

_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def estimate_tokens(text: str) -> int:
    """About one token per 4 characters of English (rounded up): the offline estimate."""
    return (len(text) + 3) // 4


def message_tokens(message: Message, count: TokenCounter = estimate_tokens) -> int:
    """Tokens of one message as sent: its text, name, tool calls and the per-message overhead."""
    total = MESSAGE_OVERHEAD + count(message.content)
    if message.name:
        total += count(message.name)
    for call in message.tool_calls:
        total += count(call.name) + count(json.dumps(call.arguments, ensure_ascii=False))
    return total


def messages_tokens(messages: list[Message], count: TokenCounter = estimate_tokens) -> int:
    """Tokens of a request's messages."""
    return sum(message_tokens(m, count) for m in messages)


def _tiktoken_cache_dir() -> Path:
    # The directory tiktoken itself reads its cached encodings from.
    for env in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(env):
            return Path(os.environ[env])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def tiktoken_counter(encoding: str = "o200k_base") -> TokenCounter | None:
    """A counter by tiktoken's ``encoding``, or ``None`` when tiktoken is not installed or the
    encoding is not cached (then it would be downloaded: never done here)."""
    try:
        tiktoken = importlib.import_module("tiktoken")
    except ImportError:
        return None
    key = hashlib.sha1(_ENCODING_URL.format(encoding).encode()).hexdigest()
    if not (_tiktoken_cache_dir() / key).is_file():
        return None
    enc = tiktoken.get_encoding(encoding)
    return lambda text: len(enc.encode(text, disallowed_special=()))


def default_counter() -> TokenCounter:
    """tiktoken's ``o200k_base`` when it is available offline, else :func:`estimate_tokens`."""
    return tiktoken_counter() or estimate_tokens
