"""threadline-openai: the ``openai`` model provider for threadline.

Streams chat completions from OpenAI or any OpenAI-compatible server over httpx,
with retries before the first byte, typed errors and size-capped SSE parsing::

    from threadline_openai import OpenAIProvider

    provider = OpenAIProvider(base_url="http://localhost:11434/v1", model="llama3.2")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threadline_openai.config import Secret
    from threadline_openai.provider import OpenAIProvider
    from threadline_openai.retry import RetryPolicy
    from threadline_openai.sse import EventStream

__all__ = ["EventStream", "OpenAIProvider", "RetryPolicy", "Secret"]

_WHERE = {
    "Secret": "config",
    "OpenAIProvider": "provider",
    "RetryPolicy": "retry",
    "EventStream": "sse",
}
"""The module each name lives in: loaded on first use, so that loading the plugin (the
``threadline`` entry point, on every ``threadline`` command) does not import httpx."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
