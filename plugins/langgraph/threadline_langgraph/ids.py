"""How LangGraph's names map onto threadline ids: threads, namespaces, checkpoints, writes.

A thread is a threadline session: a ``thread_id`` that is a UUID is the session id, any
other string gets a stable UUIDv5 of the tenant and the thread (the original is kept in the
session's metadata). A thread's checkpoint namespace (``checkpoint_ns``, ``""`` for the
root graph) is a derived ``agent_id``, so "the latest checkpoint of this namespace" is the
store's ``get_latest_checkpoint(agent_id=...)``. Checkpoint and write records get ids
derived from the session, the thread's generation (see :mod:`threadline_langgraph.threads`),
the namespace and LangGraph's checkpoint id: a lookup by LangGraph id is one indexed read.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

from threadline.runtime.locations import LOCAL_TENANT_ID

__all__ = [
    "DEFAULT_TENANT_ID",
    "checkpoint_record_id",
    "namespace_agent_id",
    "session_id_for",
    "writes_record_id",
]

DEFAULT_TENANT_ID = LOCAL_TENANT_ID
"""The tenant a saver uses unless given one: the local tenant of ``quick_agent`` and the
CLI, so ``threadline sessions list`` shows the threads without ``--tenant``."""

_NAMESPACE = uuid.UUID("0199c7d2-3a51-7e0b-8f4c-2b6d9e1a7c35")


# The ids are pure functions of their arguments, asked for several times a step (a put, its
# writes and the next read name the same checkpoint): remembered, a SHA-1 each saved.
@lru_cache(maxsize=4096)
def session_id_for(tenant_id: str, thread_id: str) -> str:
    """The session id of ``thread_id``: the thread id itself when it is a UUID."""
    try:
        return str(uuid.UUID(thread_id))
    except (ValueError, TypeError, AttributeError):
        return str(uuid.uuid5(_NAMESPACE, f"thread\x00{tenant_id}\x00{thread_id}"))


@lru_cache(maxsize=4096)
def namespace_agent_id(session_id: str, checkpoint_ns: str) -> str:
    """The ``agent_id`` of a thread's checkpoints in one namespace (the root graph's is
    ``""``): one per thread and namespace, so a store's agent index finds only them."""
    return str(uuid.uuid5(uuid.UUID(session_id), f"ns\x00{checkpoint_ns}"))


@lru_cache(maxsize=4096)
def checkpoint_record_id(
    session_id: str, generation: int, checkpoint_ns: str, checkpoint_id: str
) -> str:
    """The threadline id of LangGraph checkpoint ``checkpoint_id`` in this generation."""
    key = f"ckpt\x00{generation}\x00{checkpoint_ns}\x00{checkpoint_id}"
    return str(uuid.uuid5(uuid.UUID(session_id), key))


def writes_record_id(record_id: str, n: int) -> str:
    """The id of the ``n``-th pending-writes record on checkpoint record ``record_id``."""
    return str(uuid.uuid5(uuid.UUID(record_id), f"writes\x00{n}"))
