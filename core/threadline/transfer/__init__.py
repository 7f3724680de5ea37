"""Move whole stores: :func:`copy_store` from one store to another, export and import.

Every operation is idempotent: rerunning it after an interruption neither duplicates
nor loses rows. A session's messages are resumed after the destination's last ``seq``
(the overlap is compared with the source first), API calls and checkpoints already
there are skipped by id, and a destination that holds *different* data under the same
ids raises :class:`~threadline.errors.ConflictError` instead of being merged.

A session's ``updated_at`` is set last, after its rows
(:meth:`~threadline.store.Store.set_session_updated_at`), so copies list their sessions
in the source's order.

The work is split by concern: :mod:`~threadline.transfer.copying` (``copy_store``),
:mod:`~threadline.transfer.exporting` and :mod:`~threadline.transfer.importing`, over
:mod:`~threadline.transfer.format` (the line codec), :mod:`~threadline.transfer.reading`
(sessions page by page, UTF-8 lines), :mod:`~threadline.transfer.writing` (idempotent
writes into a destination) and :mod:`~threadline.transfer.reports`. The public names
are importable from here.
"""

from __future__ import annotations

from threadline.transfer.copying import (
    DEFAULT_CONCURRENCY,
    ProgressCallback,
    copy_store,
    count_source_messages,
)
from threadline.transfer.exporting import export_records
from threadline.transfer.importing import import_records
from threadline.transfer.reading import DEFAULT_BATCH_SIZE, utf8_lines
from threadline.transfer.reports import KINDS, CopyReport, ImportReport, KindCount, TenantReport

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "KINDS",
    "CopyReport",
    "ImportReport",
    "KindCount",
    "ProgressCallback",
    "TenantReport",
    "copy_store",
    "count_source_messages",
    "export_records",
    "import_records",
    "utf8_lines",
]
