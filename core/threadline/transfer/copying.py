"""``copy_store``: every row of one store into another, sessions copied concurrently.

Idempotent: a rerun continues where the destination stops, checking what is there, and
the report's counts are read back from the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from threadline.errors import ConflictError, ValidationError
from threadline.models import Message, Session
from threadline.store import Store
from threadline.transfer.reading import DEFAULT_BATCH_SIZE, all_sessions
from threadline.transfer.reports import CopyReport, KindCount, TenantReport
from threadline.transfer.writing import (
    MessageWriter,
    after_bulk_load,
    put_agent,
    put_api_calls,
    put_checkpoint,
    put_provider,
    put_session,
    put_updated_at,
)

__all__ = ["DEFAULT_CONCURRENCY", "ProgressCallback", "copy_store", "count_source_messages"]

DEFAULT_CONCURRENCY = 4
"""Sessions copied at the same time."""

ProgressCallback = Callable[[int], None]
"""Called with how many more messages are done (copied or found already copied)."""


async def _copy_session(
    src: Store,
    dst: Store,
    session: Session,
    counts: dict[str, KindCount],
    batch_size: int,
    progress: ProgressCallback | None,
) -> None:
    tid, sid = session.tenant_id, session.id
    counts["sessions"].source += 1
    if await put_session(dst, session):
        counts["sessions"].copied += 1
    counts["sessions"].destination += 1

    source_count, existing = await asyncio.gather(
        src.count_messages(tid, sid), dst.count_messages(tid, sid)
    )
    if existing > source_count:
        raise ConflictError(
            f"session {sid}: the destination holds {existing} messages, the source {source_count}"
        )
    writer = MessageWriter(dst, session, existing)
    pending: asyncio.Future[list[Message]] | None = asyncio.ensure_future(
        src.get_messages(tid, sid, after_seq=0, limit=batch_size)
    )
    try:
        while pending is not None:
            page = await pending
            pending = None
            if not page:
                break
            if len(page) == batch_size:  # read the next page while this one is written
                last = page[-1].seq or 0
                pending = asyncio.ensure_future(
                    src.get_messages(tid, sid, after_seq=last, limit=batch_size)
                )
            await writer.write(page)
            if progress is not None:
                progress(len(page))
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
    writer.finish()
    counts["messages"].source += writer.next_seq - 1
    counts["messages"].copied += writer.written

    calls, have_calls = await asyncio.gather(
        src.list_api_calls(tid, sid), dst.list_api_calls(tid, sid)
    )
    have_ids = {c.id for c in have_calls}
    missing = [c for c in calls if c.id not in have_ids]
    await put_api_calls(dst, missing)
    counts["api_calls"].source += len(calls)
    counts["api_calls"].copied += len(missing)

    checkpoints, have_cps = await asyncio.gather(
        src.list_checkpoints(tid, session_id=sid), dst.list_checkpoints(tid, session_id=sid)
    )
    for want, got in zip(checkpoints, have_cps):
        if want.id != got.id:
            raise ConflictError(
                f"session {sid} differs in the destination: checkpoint version {got.version} "
                f"is {got.id} there and {want.id} in the source"
            )
    if len(have_cps) > len(checkpoints):
        raise ConflictError(
            f"session {sid}: the destination holds {len(have_cps)} checkpoints, "
            f"the source {len(checkpoints)}"
        )
    for checkpoint in checkpoints[len(have_cps) :]:
        await put_checkpoint(dst, checkpoint)
    counts["checkpoints"].source += len(checkpoints)
    counts["checkpoints"].copied += len(checkpoints) - len(have_cps)

    await put_updated_at(dst, await src.get_session(tid, sid) or session)

    # Verify: read the counts back from the destination.
    n_messages, dst_calls, dst_cps = await asyncio.gather(
        dst.count_messages(tid, sid),
        dst.list_api_calls(tid, sid),
        dst.list_checkpoints(tid, session_id=sid),
    )
    wanted_calls = {c.id for c in calls}
    wanted_cps = {c.id for c in checkpoints}
    counts["messages"].destination += n_messages
    counts["api_calls"].destination += sum(1 for c in dst_calls if c.id in wanted_calls)
    counts["checkpoints"].destination += sum(1 for c in dst_cps if c.id in wanted_cps)


async def _copy_providers(
    src: Store, dst: Store, tenant_id: str, counts: dict[str, KindCount]
) -> None:
    providers, existing = await asyncio.gather(
        src.list_providers(tenant_id), dst.list_providers(tenant_id)
    )
    have = {p.id: p for p in existing}
    for provider in providers:
        if await put_provider(dst, provider, have):
            counts["providers"].copied += 1
    counts["providers"].source += len(providers)
    stored = {p.id: p for p in await dst.list_providers(tenant_id)}
    counts["providers"].destination += sum(1 for p in providers if stored.get(p.id) == p)


async def _copy_agents(
    src: Store, dst: Store, tenant_id: str, counts: dict[str, KindCount]
) -> None:
    configs = await src.list_agent_configs(tenant_id)
    for config in configs:
        if await put_agent(dst, config):
            counts["agents"].copied += 1
    counts["agents"].source += len(configs)
    for config in configs:
        if await dst.load_agent_config(tenant_id=tenant_id, agent_id=config.agent.id) == config:
            counts["agents"].destination += 1


async def copy_store(
    src: Store,
    dst: Store,
    *,
    tenants: Iterable[str] | None = None,
    progress: ProgressCallback | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> CopyReport:
    """Copy every provider, agent config, session, message, API call and checkpoint to ``dst``.

    Providers no agent uses are copied too.

    :param tenants: only these tenants (default: every tenant of ``src``).
    :param progress: called with the number of messages done after each batch.
    :param batch_size: messages per read and per ``save_messages``.
    :param concurrency: sessions copied at the same time.

    Idempotent: run it again after an interruption and it continues where the
    destination stops, verifying what is there. Raises
    :class:`~threadline.errors.ConflictError` when the destination holds different
    rows under the same ids. The report's counts are read back from the destination
    (``report.ok`` is False when they differ from the source).
    """
    if src is dst:
        raise ValidationError("copy_store needs two different stores")
    if batch_size < 1 or concurrency < 1:
        raise ValidationError("batch_size and concurrency must be >= 1")
    started = time.perf_counter()
    names = list(tenants) if tenants is not None else await src.list_tenants()
    report = CopyReport(tenants=[TenantReport(tenant_id=t) for t in names])
    queue: asyncio.Queue[tuple[Session, dict[str, KindCount]] | None] = asyncio.Queue(
        maxsize=concurrency * 2
    )

    async def produce() -> None:
        for tenant in report.tenants:
            await _copy_providers(src, dst, tenant.tenant_id, tenant.counts)
            await _copy_agents(src, dst, tenant.tenant_id, tenant.counts)
            async for session in all_sessions(src, tenant.tenant_id):
                await queue.put((session, tenant.counts))
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            await _copy_session(src, dst, item[0], item[1], batch_size, progress)

    await _run_all([produce(), *(work() for _ in range(concurrency))])
    await after_bulk_load(dst)
    report.seconds = time.perf_counter() - started
    return report


async def _run_all(coros: Sequence[Awaitable[None]]) -> None:
    """Run ``coros`` together; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def count_source_messages(
    store: Store, *, tenants: Iterable[str] | None = None, concurrency: int = 8
) -> int:
    """How many messages :func:`copy_store` will go through (for a progress bar's total)."""
    names = list(tenants) if tenants is not None else await store.list_tenants()
    total = 0
    for tenant in names:
        batch: list[Session] = []
        async for session in all_sessions(store, tenant):
            batch.append(session)
            if len(batch) >= concurrency * 8:
                total += sum(
                    await asyncio.gather(*(store.count_messages(tenant, s.id) for s in batch))
                )
                batch = []
        if batch:
            total += sum(await asyncio.gather(*(store.count_messages(tenant, s.id) for s in batch)))
    return total
