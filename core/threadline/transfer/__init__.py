"""Move whole stores: :func:`copy_store` from one store to another, export and import.

Every operation is idempotent: rerunning it after an interruption neither duplicates
nor loses rows. A session's messages are resumed after the destination's last ``seq``
(the overlap is compared with the source first), API calls and checkpoints already
there are skipped by id, and a destination that holds *different* data under the same
ids raises :class:`~threadline.errors.ConflictError` instead of being merged.

A session's ``updated_at`` is set last, after its rows
(:meth:`~threadline.store.Store.set_session_updated_at`), so copies list their sessions
in the source's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import attrs

from threadline.errors import ConflictError, NotFoundError, StoreError, ValidationError
from threadline.models import AgentConfig, ApiCall, Checkpoint, Message, ProviderRecord, Session
from threadline.store import Store
from threadline.transfer.format import (
    RECORD_TYPES,
    ExportFormatError,
    Footer,
    Header,
    Record,
    empty_counts,
    encode_footer,
    encode_header,
    encode_record,
    parse_line,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "KINDS",
    "CopyReport",
    "ImportReport",
    "KindCount",
    "TenantReport",
    "copy_store",
    "count_source_messages",
    "export_records",
    "import_records",
    "utf8_lines",
]

DEFAULT_BATCH_SIZE = 1000
"""Messages read and written per ``get_messages``/``save_messages`` call."""

DEFAULT_CONCURRENCY = 4
"""Sessions copied at the same time."""

SESSION_PAGE = 500
"""Sessions listed per ``list_sessions`` call."""

KINDS: tuple[str, ...] = ("providers", "agents", "sessions", "messages", "api_calls", "checkpoints")
"""The row kinds counted per tenant by :class:`TenantReport`."""

ProgressCallback = Callable[[int], None]
"""Called with how many more messages are done (copied or found already copied)."""


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


# -- reports --------------------------------------------------------------------------------


@dataclass
class KindCount:
    """One kind of row of one tenant: in the source, found in the destination, written now."""

    source: int = 0
    destination: int = 0
    copied: int = 0

    @property
    def ok(self) -> bool:
        """True when the destination holds every source row."""
        return self.source == self.destination


@dataclass
class TenantReport:
    """What :func:`copy_store` did for one tenant, kind by kind (see :data:`KINDS`)."""

    tenant_id: str
    counts: dict[str, KindCount] = field(default_factory=lambda: {k: KindCount() for k in KINDS})

    @property
    def ok(self) -> bool:
        """True when every kind verified."""
        return all(c.ok for c in self.counts.values())


@dataclass
class CopyReport:
    """The result of :func:`copy_store`: per-tenant counts, verified after copying."""

    tenants: list[TenantReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the destination holds every source row of every tenant."""
        return all(t.ok for t in self.tenants)

    def total(self, kind: str, what: str = "copied") -> int:
        """The sum over tenants of ``what`` (source, destination, copied) for ``kind``."""
        return sum(getattr(t.counts[kind], what) for t in self.tenants)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``threadline copy --json``)."""
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "tenants": [
                {
                    "tenant_id": t.tenant_id,
                    "ok": t.ok,
                    "counts": {
                        k: {"source": c.source, "destination": c.destination, "copied": c.copied}
                        for k, c in t.counts.items()
                    },
                }
                for t in self.tenants
            ],
        }


@dataclass
class ImportReport:
    """The result of :func:`import_records`.

    ``counts`` holds the records read and applied per type (rows already in the store
    count: import is idempotent); ``new`` those the store did not hold yet (0 for every
    type when the same file is imported again, as :func:`copy_store` reports). ``complete``
    is False when the file has no footer (it was cut short) or the footer's counts differ
    from the records read; ``problem`` says why.
    """

    header: Header | None = None
    footer: Footer | None = None
    counts: dict[str, int] = field(default_factory=empty_counts)
    new: dict[str, int] = field(default_factory=empty_counts)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        """True when the whole file was read and its footer's counts match."""
        return self.footer is not None and self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``threadline import --json``)."""
        return {
            "complete": self.complete,
            "problem": self.problem,
            "version": None if self.header is None else self.header.version,
            "counts": dict(self.counts),
            "new": dict(self.new),
        }


# -- shared writers -------------------------------------------------------------------------


def _differs(what: str, a: object, b: object) -> str:
    return f"{what}: destination has {a!r}, source has {b!r}"


async def _put_session(dst: Store, session: Session) -> bool:
    """Create ``session`` in ``dst`` or check the one there; True when it was created."""
    existing = await dst.get_session(session.tenant_id, session.id)
    if existing is None:
        await dst.create_session(session)
        return True
    for name in ("user_id", "agent_id", "created_at"):
        if getattr(existing, name) != getattr(session, name):
            raise ConflictError(
                f"session {session.id} exists in the destination with another "
                + _differs(name, getattr(existing, name), getattr(session, name))
            )
    if existing.title != session.title or existing.metadata != session.metadata:
        await dst.update_session(
            attrs.evolve(existing, title=session.title, metadata=session.metadata)
        )
    return False


async def _put_updated_at(dst: Store, session: Session) -> None:
    """Give the destination's copy of ``session`` the source's ``updated_at`` (set last:
    appending the session's rows moved it)."""
    stored = await dst.set_session_updated_at(session.tenant_id, session.id, session.updated_at)
    if stored.updated_at != session.updated_at:
        raise StoreError(
            f"session {session.id}: the destination stored updated_at {stored.updated_at} "
            f"for {session.updated_at} (the store plugin does not keep it exactly)"
        )


async def _put_provider(
    dst: Store, provider: ProviderRecord, have: dict[str, ProviderRecord]
) -> bool:
    """Save ``provider`` unless ``have`` (the destination's, by id) holds an equal one.

    True when it was written; ``have`` is updated.
    """
    if have.get(provider.id) == provider:
        return False
    have[provider.id] = await dst.save_provider(provider)
    return True


async def _put_agent(dst: Store, config: AgentConfig) -> bool:
    """Save ``config`` unless ``dst`` holds an equal one; True when it was written."""
    have = await dst.load_agent_config(tenant_id=config.agent.tenant_id, agent_id=config.agent.id)
    if have == config:
        return False
    await dst.save_agent_config(config)
    return True


_MUTABLE = ("content", "status", "name", "metadata", "tool_calls")
_FIXED = ("role", "tool_call_id", "user_id", "agent_id", "created_at")


class _MessageWriter:
    """Appends one session's messages to a destination that may hold a prefix of them.

    Messages must arrive in ``seq`` order from 1. Those at or below the destination's
    count are compared with what it holds (same id, role, ...: else ConflictError; a
    later edit of content or status is applied with ``update_message``); the rest are
    appended with ``save_messages`` and must get the very same ``seq``.
    """

    def __init__(self, dst: Store, session: Session, existing: int) -> None:
        self.dst = dst
        self.tenant_id = session.tenant_id
        self.session_id = session.id
        self.existing = existing
        self.next_seq = 1
        self.written = 0
        self.updated = 0

    async def write(self, batch: Sequence[Message]) -> None:
        start = self.next_seq
        for offset, m in enumerate(batch):
            if m.session_id != self.session_id or m.tenant_id != self.tenant_id:
                raise ValidationError(
                    f"message {m.id} does not belong to session {self.session_id}"
                )
            if m.seq != start + offset:
                raise ValidationError(
                    f"session {self.session_id}: message {m.id} has seq {m.seq}, "
                    f"expected {start + offset} (messages must be complete and in order)"
                )
        overlap = max(0, min(len(batch), self.existing - start + 1))
        if overlap:
            await self._check(batch[:overlap], start)
        rest = list(batch[overlap:])
        if rest:
            saved = await self.dst.save_messages(rest)
            for want, got in zip(rest, saved):
                if got.id != want.id or got.seq != want.seq:
                    raise ConflictError(
                        f"session {self.session_id}: the destination stored message {want.id} "
                        f"at seq {got.seq}, the source has it at seq {want.seq} (is something "
                        "else writing to this session?)"
                    )
            self.written += len(rest)
        self.next_seq = start + len(batch)

    async def _check(self, wanted: Sequence[Message], start: int) -> None:
        have = await self.dst.get_messages(
            self.tenant_id, self.session_id, after_seq=start - 1, limit=len(wanted)
        )
        if len(have) != len(wanted):
            raise ConflictError(
                f"session {self.session_id}: the destination's messages changed while copying"
            )
        for want, got in zip(wanted, have):
            if got.id != want.id:
                raise ConflictError(
                    f"session {self.session_id} differs in the destination: message seq "
                    f"{want.seq} is {got.id} there and {want.id} in the source (delete the "
                    "destination session to copy it again)"
                )
            for name in _FIXED:
                if getattr(got, name) != getattr(want, name):
                    raise ConflictError(
                        f"session {self.session_id}, message {want.id} (seq {want.seq}) "
                        + _differs(name, getattr(got, name), getattr(want, name))
                    )
            if any(getattr(got, name) != getattr(want, name) for name in _MUTABLE):
                await self.dst.update_message(want)
                self.updated += 1

    def finish(self) -> None:
        """Raise ConflictError if the destination holds more messages than were written."""
        if self.existing >= self.next_seq:
            raise ConflictError(
                f"session {self.session_id}: the destination holds {self.existing} messages, "
                f"the source {self.next_seq - 1}"
            )


async def _put_api_calls(dst: Store, calls: Sequence[ApiCall]) -> None:
    # One at a time: some stores list API calls in the order they were written.
    for call in calls:
        await dst.save_api_call(call)


async def _put_checkpoint(dst: Store, checkpoint: Checkpoint) -> None:
    got = await dst.create_checkpoint(checkpoint)
    if checkpoint.version is not None and got.version != checkpoint.version:
        raise ConflictError(
            f"session {checkpoint.session_id}: checkpoint {checkpoint.id} got version "
            f"{got.version} in the destination, {checkpoint.version} in the source"
        )


async def _sessions(
    store: Store, tenant_id: str, user_id: str | None = None, page: int = SESSION_PAGE
) -> AsyncIterator[Session]:
    """Every session of a tenant, page by page (each once, even if the listing shifts)."""
    seen: set[str] = set()
    offset = 0
    while True:
        found = await store.list_sessions(tenant_id, user_id=user_id, limit=page, offset=offset)
        for session in found:
            if session.id not in seen:
                seen.add(session.id)
                yield session
        if len(found) < page:
            return
        offset += page


# -- copy -----------------------------------------------------------------------------------


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
    if await _put_session(dst, session):
        counts["sessions"].copied += 1
    counts["sessions"].destination += 1

    source_count, existing = await asyncio.gather(
        src.count_messages(tid, sid), dst.count_messages(tid, sid)
    )
    if existing > source_count:
        raise ConflictError(
            f"session {sid}: the destination holds {existing} messages, the source {source_count}"
        )
    writer = _MessageWriter(dst, session, existing)
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
    await _put_api_calls(dst, missing)
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
        await _put_checkpoint(dst, checkpoint)
    counts["checkpoints"].source += len(checkpoints)
    counts["checkpoints"].copied += len(checkpoints) - len(have_cps)

    await _put_updated_at(dst, await src.get_session(tid, sid) or session)

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
        if await _put_provider(dst, provider, have):
            counts["providers"].copied += 1
    counts["providers"].source += len(providers)
    stored = {p.id: p for p in await dst.list_providers(tenant_id)}
    counts["providers"].destination += sum(1 for p in providers if stored.get(p.id) == p)


async def _copy_agents(
    src: Store, dst: Store, tenant_id: str, counts: dict[str, KindCount]
) -> None:
    configs = await src.list_agent_configs(tenant_id)
    for config in configs:
        if await _put_agent(dst, config):
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
            async for session in _sessions(src, tenant.tenant_id):
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
        async for session in _sessions(store, tenant):
            batch.append(session)
            if len(batch) >= concurrency * 8:
                total += sum(
                    await asyncio.gather(*(store.count_messages(tenant, s.id) for s in batch))
                )
                batch = []
        if batch:
            total += sum(await asyncio.gather(*(store.count_messages(tenant, s.id) for s in batch)))
    return total


# -- export ---------------------------------------------------------------------------------


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
        sessions = _one(only) if only is not None else _sessions(store, tenant, user_id)
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


# -- import ---------------------------------------------------------------------------------


class _Importer:
    def __init__(self, store: Store, report: ImportReport, batch_size: int) -> None:
        self.store = store
        self.report = report
        self.batch_size = batch_size
        self.writer: _MessageWriter | None = None
        self.session: Session | None = None  # the one whose records are being read
        self.buffer: list[Message] = []
        self.providers: dict[str, dict[str, ProviderRecord]] = {}  # the store's, per tenant
        self.call_ids: dict[tuple[str, str], set[str]] = {}  # stored API calls, per session

    async def flush(self) -> None:
        if self.buffer:
            assert self.writer is not None
            batch, self.buffer = self.buffer, []
            before = self.writer.written
            await self.writer.write(batch)
            self.report.new["message"] += self.writer.written - before

    async def end_session(self) -> None:
        await self.flush()
        if self.writer is not None:
            self.writer.finish()
            self.writer = None
        await self.stamp()

    async def stamp(self) -> None:
        """Set the session's ``updated_at`` from the file, after all its records."""
        if self.session is not None:
            session, self.session = self.session, None
            await _put_updated_at(self.store, session)

    async def apply(self, record: Record, lineno: int) -> None:
        value = record.value
        if isinstance(value, Message):
            if self.writer is None or value.session_id != self.writer.session_id:
                raise ExportFormatError(
                    f"line {lineno}: message {value.id} does not follow its session's record"
                )
            self.buffer.append(value)
            if len(self.buffer) >= self.batch_size:
                await self.flush()
        elif isinstance(value, Session):
            await self.end_session()
            if await _put_session(self.store, value):
                self.report.new["session"] += 1
            existing = await self.store.count_messages(value.tenant_id, value.id)
            self.writer = _MessageWriter(self.store, value, existing)
            self.session = value
        else:
            await self.flush()
            if isinstance(value, ProviderRecord):
                have = self.providers.get(value.tenant_id)
                if have is None:
                    listed = await self.store.list_providers(value.tenant_id)
                    have = self.providers[value.tenant_id] = {p.id: p for p in listed}
                if await _put_provider(self.store, value, have):
                    self.report.new["provider"] += 1
            elif isinstance(value, AgentConfig):
                if await _put_agent(self.store, value):
                    self.report.new["agent_config"] += 1
                have = self.providers.get(value.agent.tenant_id)
                if have is not None and value.provider is not None:
                    have[value.provider.id] = value.provider  # saved with the agent
            elif isinstance(value, ApiCall):
                key = (value.tenant_id, value.session_id)
                stored = self.call_ids.get(key)
                if stored is None:
                    calls = await self.store.list_api_calls(*key)
                    stored = self.call_ids[key] = {c.id for c in calls}
                if value.id not in stored:
                    await self.store.save_api_call(value)
                    stored.add(value.id)
                    self.report.new["api_call"] += 1
            else:
                if await self.store.get_checkpoint(value.tenant_id, value.id) is None:
                    self.report.new["checkpoint"] += 1
                await _put_checkpoint(self.store, value)
        self.report.counts[record.type] += 1


def utf8_lines(lines: Iterable[str | bytes]) -> Iterator[str]:
    """``lines`` as text; a line (or a text file) that is not UTF-8 is an ExportFormatError."""
    lineno = 0
    iterator = iter(lines)
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise ExportFormatError(
                f"after line {lineno}: not UTF-8 text ({exc.reason} at byte {exc.start} of a "
                "chunk): not a threadline export"
            ) from None
        lineno += 1
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ExportFormatError(
                    f"line {lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
        yield raw


async def import_records(
    store: Store, lines: Iterable[str | bytes], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> ImportReport:
    """Write the records of an export (an iterable of its lines, e.g. an open file) to ``store``.

    Lines are read one at a time and messages written in batches of ``batch_size``.
    Idempotent like :func:`copy_store`: rows already stored are checked, not duplicated.
    Raises :class:`~threadline.transfer.format.ExportFormatError` for a file that does not
    start with a header of a supported version or holds an invalid line. A file cut
    short (no footer; a last line without its newline is taken as cut) is imported up
    to its last whole record and reported with ``complete`` False.
    """
    report = ImportReport()
    importer = _Importer(store, report, batch_size)
    lineno = 0
    for lineno, text in enumerate(utf8_lines(lines), 1):
        whole = text.endswith("\n")
        if not text.strip():
            continue
        try:
            line = parse_line(text, lineno)
        except ExportFormatError as exc:
            if report.header is None:
                raise ExportFormatError(f"not a threadline export: {exc}") from None
            if not whole:  # the last line, cut mid-record
                report.problem = f"line {lineno} is cut short: the file is truncated"
                break
            raise
        if report.header is None:
            if not isinstance(line, Header):
                raise ExportFormatError(
                    f"line {lineno}: not a threadline export (the first line must be its header)"
                )
            report.header = line
            continue
        if report.footer is not None:
            raise ExportFormatError(f"line {lineno}: data after the footer")
        if isinstance(line, Header):
            raise ExportFormatError(f"line {lineno}: a second header")
        if isinstance(line, Footer):
            await importer.end_session()
            report.footer = line
            expected = {t: line.counts.get(t, 0) for t in RECORD_TYPES}
            if expected != report.counts:
                report.problem = (
                    f"the footer counts {expected} but the file holds {report.counts}: "
                    "records are missing"
                )
            continue
        await importer.apply(line, lineno)
    if report.header is None:
        raise ExportFormatError("empty input: not a threadline export (no header line)")
    await importer.flush()
    await importer.stamp()
    if report.footer is None and report.problem is None:
        report.problem = f"no footer after line {lineno}: the file is truncated"
    return report
