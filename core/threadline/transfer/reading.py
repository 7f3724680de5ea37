"""Reading helpers shared by copy, export and import: a tenant's sessions page by page,
and the lines of an export file as UTF-8 text."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

from threadline.models import Session
from threadline.store import Store
from threadline.transfer.format import ExportFormatError

__all__ = ["DEFAULT_BATCH_SIZE", "SESSION_PAGE", "all_sessions", "utf8_lines"]

DEFAULT_BATCH_SIZE = 1000
"""Messages read and written per ``get_messages``/``save_messages`` call."""

SESSION_PAGE = 500
"""Sessions listed per ``list_sessions`` call."""


async def all_sessions(
    store: Store, tenant_id: str, user_id: str | None = None, page: int = SESSION_PAGE
) -> AsyncIterator[Session]:
    """Every session of a tenant, page by page by cursor (keyset: a page neither repeats
    nor skips a session because sessions were added or bumped meanwhile)."""
    async for session in store.iter_sessions(tenant_id, user_id=user_id, page=page):
        yield session


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
