"""threadline: durable LLM agents. Messages, checkpoints and agent configs in a real store.

Open a store with :func:`connect`, persist a conversation with
:class:`PersistenceContext`; stores and providers come from plugins
(``threadline-sqlite``, ``threadline-postgres``, ``threadline-openai``, ...).
"""

from __future__ import annotations

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

__all__ = [
    "AgentConfig",
    "AgentRecord",
    "ApiCall",
    "Checkpoint",
    "ConfigurationError",
    "ConflictError",
    "Message",
    "NotFoundError",
    "PersistenceContext",
    "PluginNotInstalledError",
    "ProviderError",
    "ProviderRecord",
    "Session",
    "Store",
    "StoreError",
    "StoreURL",
    "StoreUnavailableError",
    "ThreadlineError",
    "ToolCall",
    "ValidationError",
    "__version__",
    "connect",
    "hookimpl",
    "hookspecs",
    "new_id",
]

from threadline import hookspecs
