"""Migration 0011: a session's forks come from an index, in a new file and in an upgraded one."""

from __future__ import annotations

from pathlib import Path

from _sqlite_support import at_migration, query

import threadline
from threadline.ids import new_id
from threadline.testing.branching import fill_forks
from threadline_sqlite.migrations import FORK_PARENT, MIGRATION_NAMES


def _plan(path: Path) -> str:
    sql = (
        "EXPLAIN QUERY PLAN SELECT id FROM entity_session WHERE tenant_id = ? "
        f"AND {FORK_PARENT} = ? ORDER BY updated_at DESC, id DESC LIMIT 50"
    )
    return " ".join(str(row[-1]) for row in query(path, sql, (new_id(), new_id())))


async def test_0011_upgrades_a_database_with_forks_in_place(db_path: Path) -> None:
    """Forks made before 0011 (a file of the previous release) are listed after it, read
    from ``idx_session_forks``; their messages are all there; sessions that are no fork
    stay out of the index."""
    connection = at_migration(db_path, MIGRATION_NAMES.index("0011_session_forks"))
    connection.commit()
    connection.close()
    old = await threadline.connect(f"sqlite:///{db_path}", migrate=False)
    tenant, user = new_id(), new_id()
    try:
        source, forks, before = await fill_forks(old, tenant, user)
    finally:
        await old.close()
    assert "idx_session_forks" not in _plan(db_path)

    store = await threadline.connect(f"sqlite:///{db_path}")  # migrates: 0011
    try:
        assert [b.id for b in await store.list_branches(tenant, source.id)] == [f.id for f in forks]
        assert {f.id: await store.get_messages(tenant, f.id) for f in forks} == before
        assert [len(m) for m in before.values()] == [10, 40]
        assert await store.migrate() == []
    finally:
        await store.close()
    assert "idx_session_forks" in _plan(db_path)
    indexed = query(db_path, "SELECT COUNT(*) FROM entity_session INDEXED BY idx_session_forks "
                    f"WHERE {FORK_PARENT} IS NOT NULL")  # fmt: skip
    assert indexed == [(2,)]
