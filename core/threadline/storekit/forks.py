"""Forks: the ids a fork's messages get and the summaries they carry, one rule for every store.

:meth:`threadline.Store.fork_session` makes a session whose history is another's up to a
point; ``threadline_fork_messages`` fills it. Whether a store copies the messages (the
core's default) or shares their stored bytes (SQLite, PostgreSQL), the fork's messages
get the ids :func:`fork_message_id` derives, so a retried fork finds what it made and an
agent opening the fork finds its system prompt under the id it gives one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["SUMMARY_KEY", "fork_message_id", "prompt_id", "renamed_summary"]

SUMMARY_KEY = "summary"
"""The metadata key of a compaction summary (``threadline.runtime.compaction.SUMMARY_KEY``)."""


def prompt_id(session_id: str) -> str:
    """The id an Agent gives a session's system prompt (``runtime.agent._system_message_id``)."""
    return str(uuid.uuid5(uuid.UUID(session_id), "threadline:system-prompt"))


def fork_message_id(source_id: str, fork_id: str, message_id: str) -> str:
    """The id of the fork's copy of ``message_id`` (a message of session ``source_id``):
    derived, so a retry saves each once; the source's system prompt id becomes the fork's."""
    if message_id == prompt_id(source_id):
        return prompt_id(fork_id)
    return copied_id(fork_id, message_id)


def copied_id(fork_id: str, original_id: str) -> str:
    """The derived id of a fork's copy of a message or checkpoint ``original_id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"threadline:fork:{fork_id}:{original_id}"))


def renamed_summary(metadata: Mapping[str, Any], fork_id: str) -> dict[str, Any] | None:
    """``metadata`` of a compaction summary copied into fork ``fork_id`` with the previous
    summary it names renamed to that summary's copy; ``None`` when nothing needs renaming
    (for a store whose fork keeps the source's seqs, the covered seqs stay as they are)."""
    info = metadata.get(SUMMARY_KEY)
    if not isinstance(info, Mapping) or not isinstance(info.get("previous"), str):
        return None
    return {**metadata, SUMMARY_KEY: {**info, "previous": copied_id(fork_id, info["previous"])}}
