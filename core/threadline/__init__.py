"""threadline: durable LLM agents. Messages, checkpoints and agent configs in a real store.

Open a store with :func:`connect`, persist a conversation with
:class:`PersistenceContext`; stores and providers come from plugins
(``threadline-sqlite``, ``threadline-postgres``, ``threadline-openai``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline import hookspecs
from threadline.context import PersistenceContext
from threadline.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PluginNotInstalledError,
    ProviderError,
    StoreError,
    StoreUnavailableError,
    ThreadlineError,
    ValidationError,
)
from threadline.hookspecs import hookimpl
from threadline.ids import new_id
from threadline.models import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    ProviderRecord,
    Session,
    ToolCall,
)
from threadline.store import Store, connect
from threadline.urls import StoreURL

__version__ = "0.1.0"

if TYPE_CHECKING:
    from threadline.agent import Agent, AgentBuilder, PersistencePlugin, quick_agent
    from threadline.tools import Tool

# The agent runtime loads on first use, keeping `import threadline` cheap.
_LAZY = {
    "Agent": "threadline.agent",
    "AgentBuilder": "threadline.agent",
    "PersistencePlugin": "threadline.agent",
    "quick_agent": "threadline.agent",
    "Tool": "threadline.tools",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'threadline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "AgentBuilder",
    "AgentConfig",
    "AgentRecord",
    "ApiCall",
    "Checkpoint",
    "ConfigurationError",
    "ConflictError",
    "Message",
    "NotFoundError",
    "PersistenceContext",
    "PersistencePlugin",
    "PluginNotInstalledError",
    "ProviderError",
    "ProviderRecord",
    "Session",
    "Store",
    "StoreError",
    "StoreURL",
    "StoreUnavailableError",
    "ThreadlineError",
    "Tool",
    "ToolCall",
    "ValidationError",
    "__version__",
    "connect",
    "hookimpl",
    "hookspecs",
    "new_id",
    "quick_agent",
]
