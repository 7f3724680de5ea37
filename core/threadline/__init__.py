"""threadline: durable LLM agents. Messages, checkpoints and agent configs in a real store.

Open a store with :func:`connect`, persist a conversation with
:class:`PersistenceContext`; stores and providers come from plugins
(``threadline-sqlite``, ``threadline-postgres``, ``threadline-openai``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PluginNotInstalledError,
    ProviderError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    ThreadlineError,
    ValidationError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from threadline import hookspecs
    from threadline.blocking import RunningLoopError
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
    from threadline.queries import MessageRange, SessionCursor, SessionQuery
    from threadline.runtime.agent import Agent
    from threadline.runtime.approvals import ApprovalRequired, requires_approval
    from threadline.runtime.blocking import BlockingAgent, BlockingPersistenceContext
    from threadline.runtime.builder import AgentBuilder, quick_agent
    from threadline.runtime.context import PersistenceContext
    from threadline.runtime.settings import PersistencePlugin
    from threadline.runtime.tools import Tool
    from threadline.runtime.waiting import NotWaitingError, WaitingRun, list_waiting
    from threadline.store import Store, connect
    from threadline.store.blocking import BlockingStore, connect_sync
    from threadline.store.follow import ReplyUpdate
    from threadline.urls import StoreURL

# Everything but the errors loads on first use: `import threadline` stays cheap (attrs,
# pluggy and importlib.metadata cost tens of milliseconds), and a name costs only when used.
_LAZY = {
    "Agent": "threadline.runtime.agent",
    "AgentBuilder": "threadline.runtime.builder",
    "PersistencePlugin": "threadline.runtime.settings",
    "quick_agent": "threadline.runtime.builder",
    "PersistenceContext": "threadline.runtime.context",
    "BlockingAgent": "threadline.runtime.blocking",
    "BlockingPersistenceContext": "threadline.runtime.blocking",
    "BlockingStore": "threadline.store.blocking",
    "connect_sync": "threadline.store.blocking",
    "RunningLoopError": "threadline.blocking",
    "ApprovalRequired": "threadline.runtime.approvals",
    "requires_approval": "threadline.runtime.approvals",
    "NotWaitingError": "threadline.runtime.waiting",
    "WaitingRun": "threadline.runtime.waiting",
    "list_waiting": "threadline.runtime.waiting",
    "hookimpl": "threadline.hookspecs",
    "new_id": "threadline.ids",
    "AgentConfig": "threadline.models",
    "AgentRecord": "threadline.models",
    "ApiCall": "threadline.models",
    "Checkpoint": "threadline.models",
    "Message": "threadline.models",
    "ProviderRecord": "threadline.models",
    "Session": "threadline.models",
    "ToolCall": "threadline.models",
    "MessageRange": "threadline.queries",
    "SessionCursor": "threadline.queries",
    "SessionQuery": "threadline.queries",
    "Store": "threadline.store",
    "connect": "threadline.store",
    "ReplyUpdate": "threadline.store.follow",
    "Tool": "threadline.runtime.tools",
    "StoreURL": "threadline.urls",
}
_SUBMODULES = {
    *("hookspecs", "graph", "testing", "runtime", "storekit", "errors", "models", "blocking"),
}


def __getattr__(name: str) -> object:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"threadline.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'threadline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "AgentBuilder",
    "AgentConfig",
    "AgentRecord",
    "ApiCall",
    "ApprovalRequired",
    "BlockingAgent",
    "BlockingPersistenceContext",
    "BlockingStore",
    "Checkpoint",
    "ConfigurationError",
    "ConflictError",
    "Message",
    "MessageRange",
    "NotFoundError",
    "NotWaitingError",
    "PersistenceContext",
    "PersistencePlugin",
    "PluginNotInstalledError",
    "ProviderError",
    "ProviderRecord",
    "ReplyUpdate",
    "RunningLoopError",
    "Session",
    "SessionCursor",
    "SessionQuery",
    "Store",
    "StoreError",
    "StoreNotFoundError",
    "StoreURL",
    "StoreUnavailableError",
    "ThreadlineError",
    "Tool",
    "ToolCall",
    "ValidationError",
    "WaitingRun",
    "__version__",
    "connect",
    "connect_sync",
    "hookimpl",
    "hookspecs",
    "list_waiting",
    "new_id",
    "quick_agent",
    "requires_approval",
]
