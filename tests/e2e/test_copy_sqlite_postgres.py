"""``copy_store`` and export/import from SQLite to a real PostgreSQL server.

The database is created for the module and dropped afterwards (the reliability
suite's ``postgres_url`` fixture: skipped when the server cannot be reached, failing
under ``CI``).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("threadline_sqlite")
pytest.importorskip("threadline_postgres")

from reliability._servers import postgres_url
from test_transfer import TENANTS, FailingStore, populate, snapshot

import threadline
from threadline.errors import StoreError
from threadline.transfer import copy_store, export_records, import_records

__all__ = ["postgres_url"]


async def test_sqlite_to_postgres_copy_resumes_and_verifies(
    postgres_url: str, tmp_path: Path
) -> None:
    async with await threadline.connect(f"sqlite:///{tmp_path / 'src.db'}") as src:
        await populate(src, sessions_per_user=3, messages=150)
        async with await threadline.connect(postgres_url) as dst:
            with pytest.raises(StoreError):
                await copy_store(src, FailingStore(dst, 4), batch_size=40, concurrency=1)
            report = await copy_store(src, dst, batch_size=40, concurrency=4)
            assert report.ok
            assert 0 < report.total("messages") < report.total("messages", "source")
            assert await snapshot(dst) == await snapshot(src)
            again = await copy_store(src, dst)
            assert again.ok and again.total("messages") == again.total("sessions") == 0

            out = io.StringIO()
            counts = await export_records(dst, out, tenant_id=TENANTS[0])
            assert counts["session"] == 6
            imported = await import_records(dst, io.StringIO(out.getvalue()))  # idempotent
            assert imported.complete
            assert await snapshot(dst) == await snapshot(src)
