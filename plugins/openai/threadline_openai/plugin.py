"""The pluggy hook implementation that registers the ``openai`` provider with threadline.

Loaded through the ``threadline`` entry point group, so ``threadline.get_provider("openai",
base_url=..., model=...)`` builds an :class:`~threadline_openai.OpenAIProvider`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadline.hookspecs import hookimpl

if TYPE_CHECKING:
    from threadline_openai.provider import OpenAIProvider

__all__ = ["openai_provider", "threadline_register_providers"]


def openai_provider(**options: Any) -> OpenAIProvider:
    """``OpenAIProvider(**options)``, imported on first use: loading the plugin (every
    ``threadline`` command) does not import httpx."""
    from threadline_openai.provider import OpenAIProvider

    return OpenAIProvider(**options)


@hookimpl
def threadline_register_providers(register: Callable[..., None]) -> None:
    """Register ``openai``: any OpenAI-compatible chat completions server, by base URL."""
    register(
        "openai",
        openai_provider,
        "OpenAI-compatible streaming chat completions (OpenAI, Ollama, vLLM, llama.cpp, ...)",
    )
