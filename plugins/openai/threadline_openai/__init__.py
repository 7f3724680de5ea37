"""threadline-openai: the ``openai`` model provider for threadline.

Streams chat completions from OpenAI or any OpenAI-compatible server over httpx,
with retries before the first byte, typed errors and size-capped SSE parsing::

    from threadline_openai import OpenAIProvider

    provider = OpenAIProvider(base_url="http://localhost:11434/v1", model="llama3.2")
"""

from __future__ import annotations

from threadline_openai.config import Secret
from threadline_openai.provider import OpenAIProvider
from threadline_openai.retry import RetryPolicy
from threadline_openai.sse import EventStream

__all__ = ["EventStream", "OpenAIProvider", "RetryPolicy", "Secret"]
