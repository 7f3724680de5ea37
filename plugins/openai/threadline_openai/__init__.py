"""threadline-openai: the ``openai`` model provider for threadline.

Streams chat completions from OpenAI or any OpenAI-compatible server over httpx,
with retries before the first byte, typed errors and size-capped SSE parsing::

    from threadline_openai import OpenAIProvider

    provider = OpenAIProvider(base_url="http://localhost:11434/v1", model="llama3.2")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

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

__getattr__ = lazy_attributes(__name__, _WHERE)
