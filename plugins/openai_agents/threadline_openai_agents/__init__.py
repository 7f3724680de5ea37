"""threadline-openai-agents: the OpenAI Agents SDK's ``Session`` kept in any threadline store.

``ThreadlineSession("conversation-1", "sqlite:///chat.db")`` goes wherever the SDK takes a
session (``Runner.run(agent, input, session=...)``). See docs/openai-agents.md.

Names load on first use: the ``threadline`` entry point (the CLI command) must not import
the SDK, which takes seconds, every time ``threadline`` starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from threadline_openai_agents.items import (
        METADATA_KEY,
        items_from_message,
        items_from_messages,
        message_from_item,
    )
    from threadline_openai_agents.session import (
        SESSION_NAMESPACE,
        MessageDeletionUnsupportedError,
        ThreadlineSession,
        thread_session_id,
    )

__all__ = [
    "METADATA_KEY",
    "SESSION_NAMESPACE",
    "MessageDeletionUnsupportedError",
    "ThreadlineSession",
    "items_from_message",
    "items_from_messages",
    "message_from_item",
    "thread_session_id",
]

_WHERE = {
    "METADATA_KEY": "items",
    "items_from_message": "items",
    "items_from_messages": "items",
    "message_from_item": "items",
    "SESSION_NAMESPACE": "session",
    "MessageDeletionUnsupportedError": "session",
    "ThreadlineSession": "session",
    "thread_session_id": "session",
}

__getattr__ = lazy_attributes(__name__, _WHERE)
