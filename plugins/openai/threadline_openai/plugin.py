"""The pluggy hook implementation that registers the ``openai`` provider with threadline.

Loaded through the ``threadline`` entry point group, so ``threadline.get_provider("openai",
base_url=..., model=...)`` builds an :class:`~threadline_openai.OpenAIProvider`.
"""

from __future__ import annotations

from collections.abc import Callable

from threadline.hookspecs import hookimpl
from threadline_openai.provider import OpenAIProvider

__all__ = ["threadline_register_providers"]


@hookimpl
def threadline_register_providers(register: Callable[..., None]) -> None:
    """Register ``openai``: any OpenAI-compatible chat completions server, by base URL."""
    register(
        "openai",
        OpenAIProvider,
        "OpenAI-compatible streaming chat completions (OpenAI, Ollama, vLLM, llama.cpp, ...)",
    )
