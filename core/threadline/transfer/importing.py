"""``import_records``: the records of an export file written into a store, idempotently."""

from __future__ import annotations

from collections.abc import Iterable

from threadline.models import AgentConfig, ApiCall, Message, ProviderRecord, Session
from threadline.store import Store
from threadline.transfer.format import (
    RECORD_TYPES,
    ExportFormatError,
    Footer,
    Header,
    Record,
    parse_line,
)
from threadline.transfer.reading import DEFAULT_BATCH_SIZE, utf8_lines
from threadline.transfer.reports import ImportReport
from threadline.transfer.writing import (
    MessageWriter,
    after_bulk_load,
    put_agent,
    put_checkpoint,
    put_provider,
    put_session,
    put_updated_at,
)

__all__ = ["import_records"]


class _Importer:
    def __init__(self, store: Store, report: ImportReport, batch_size: int) -> None:
        self.store = store
        self.report = report
        self.batch_size = batch_size
        self.writer: MessageWriter | None = None
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
            await put_updated_at(self.store, session)

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
            if await put_session(self.store, value):
                self.report.new["session"] += 1
            existing = await self.store.count_messages(value.tenant_id, value.id)
            self.writer = MessageWriter(self.store, value, existing)
            self.session = value
        else:
            await self.flush()
            if isinstance(value, ProviderRecord):
                have = self.providers.get(value.tenant_id)
                if have is None:
                    listed = await self.store.list_providers(value.tenant_id)
                    have = self.providers[value.tenant_id] = {p.id: p for p in listed}
                if await put_provider(self.store, value, have):
                    self.report.new["provider"] += 1
            elif isinstance(value, AgentConfig):
                if await put_agent(self.store, value):
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
                await put_checkpoint(self.store, value)
        self.report.counts[record.type] += 1


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
    await after_bulk_load(store)
    if report.footer is None and report.problem is None:
        report.problem = f"no footer after line {lineno}: the file is truncated"
    return report
