"""``export_records``: a store, or part of it, written as the export format, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from threadline.errors import NotFoundError
from threadline.models import Session
from threadline.store import Store
from threadline.transfer.format import empty_counts, encode_footer, encode_header, encode_record
from threadline.transfer.reading import DEFAULT_BATCH_SIZE, all_sessions

__all__ = ["export_records"]


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


async def export_records(
    store: Store,
    out: _Writable,
    *,
    tenant_id: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    page_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, int]:
    """Write the store (or the filtered part of it) to ``out`` in the export format.

    ``out`` is any text stream with ``write``: a header line first, then for each tenant
    its providers (those no agent uses included), its agent configs and, session by
    session, the session, its messages (by ``seq``), API calls and checkpoints (by
    version), then a footer with the counts, which are also returned. Sessions and
    messages are read page by page and written as they come, so memory use does not
    grow with the store. ``user_id`` and ``session_id``
    select sessions; the providers and agent configs of every tenant exported are
    always included.
    """
    filters = {
        k: v
        for k, v in (("tenant_id", tenant_id), ("user_id", user_id), ("session_id", session_id))
        if v is not None
    }
    tenants = [tenant_id] if tenant_id is not None else await store.list_tenants()
    only: Session | None = None
    if session_id is not None:
        for tenant in tenants:
            only = await store.get_session(tenant, session_id)
            if only is not None:
                break
        if only is None or (user_id is not None and only.user_id != user_id):
            raise NotFoundError(f"no session {session_id} to export")
        tenants = [only.tenant_id]

    counts = empty_counts()
    out.write(encode_header(filters))
    for tenant in tenants:
        for provider in await store.list_providers(tenant):
            out.write(encode_record("provider", provider))
            counts["provider"] += 1
        for config in await store.list_agent_configs(tenant):
            out.write(encode_record("agent_config", config))
            counts["agent_config"] += 1
        sessions = _one(only) if only is not None else all_sessions(store, tenant, user_id)
        async for session in sessions:
            await _export_session(store, out, session, counts, page_size)
    out.write(encode_footer(counts))
    return counts


async def _one(session: Session) -> AsyncIterator[Session]:
    yield session


async def _export_session(
    store: Store, out: _Writable, session: Session, counts: dict[str, int], page_size: int
) -> None:
    tid, sid = session.tenant_id, session.id
    out.write(encode_record("session", session))
    counts["session"] += 1
    after = 0
    while True:
        page = await store.get_messages(tid, sid, after_seq=after, limit=page_size)
        if not page:
            break
        out.write("".join(encode_record("message", m) for m in page))
        counts["message"] += len(page)
        after = page[-1].seq or after + len(page)
        if len(page) < page_size:
            break
    calls = await store.list_api_calls(tid, sid)
    if calls:
        out.write("".join(encode_record("api_call", c) for c in calls))
        counts["api_call"] += len(calls)
    for checkpoint in await store.list_checkpoints(tid, session_id=sid):
        out.write(encode_record("checkpoint", checkpoint))
        counts["checkpoint"] += 1
