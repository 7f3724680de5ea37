"""The schema, as versioned migrations recorded in the database.

Migrations are a :class:`sqlite_utils.Migrations` set named ``threadline_sqlite``;
sqlite-utils records each one it applies in the ``_sqlite_migrations`` table (set,
name, time), so running them again applies nothing. New schema changes are new
functions appended below, never edits of old ones.

:func:`migrate` makes this safe for several processes opening a new file at once:
it takes SQLite's write lock (``BEGIN IMMEDIATE``, waiting up to ``busy_timeout``)
before looking at what is pending, applies everything inside that one transaction
(sqlite-utils nests each migration in a savepoint) and commits. A second process
waits for the lock, then finds nothing pending. An up-to-date database is checked
with one plain query, without importing sqlite-utils at all.

Timestamps are INTEGER microseconds since the Unix epoch (UTC), so they round-trip
exactly and sort correctly; JSON columns are TEXT.

``0002_incremental_checkpoints`` makes checkpoint histories incremental: the
``history`` column of a new checkpoint holds a record of
:mod:`threadline.storekit.delta` (a JSON object: a snapshot, or a delta on the
parent), ``history_depth`` its distance from the chain's snapshot and ``history_tag``
its write tag. Rows written before it held the whole history as a JSON array (a
pre-release format, no longer read).

``0003_message_user_index`` indexes ``entity_message`` on ``(tenant_id, user_id)``
for the messages that have a ``user_id``: :meth:`threadline.Store.erase_user` finds a
user's messages in other users' sessions with it instead of reading every message of
the tenant. Messages without a ``user_id`` (which no erasure looks for) stay out of it
and cost an append nothing. ``0004_api_call_user_index`` does the same for
``entity_api_call``, whose rows erase_user deletes in other users' sessions.

``0006_clustered_messages`` rebuilds ``entity_message`` as a ``WITHOUT ROWID`` table
keyed on ``(session_id, seq)`` (rows copied unchanged): an append writes the row, the
id index, the user index and, for user and system messages only, the round index,
where it wrote five b-trees before (``benchmarks/README.md``, SQLite section).

``0007_api_call_usage_index`` indexes ``entity_api_call`` on ``(tenant_id, created_at)``
with every column :meth:`threadline.Store.usage` reads, so a usage report reads that
index alone (``benchmarks/bench_usage.py``).

``0008_message_user_sessions`` replaces 0006's per-message user index with one row per
(session, user) pair: a user's next message in a session writes no index at all.

``0009_lean_messages`` keys messages by an integer ``entity_session.key`` instead of the
text session id and drops ``tenant_id`` from the message row (both come from the session).

``0012_shared_forks`` lets a fork's message rows share their source's content and tool calls
(``shared_key``, copy-on-write kept by triggers): :mod:`threadline_sqlite.forks`.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database, Migrations

__all__ = ["MIGRATION_NAMES", "MIGRATION_SET", "applied_migrations", "migrate"]

MIGRATION_SET = "threadline_sqlite"
FORK_PARENT = "json_extract(metadata, '$.forked_from.session_id')"
"""The session a session was forked from (``threadline.queries.fork_parent``), indexed."""
MIGRATIONS_TABLE = "_sqlite_migrations"

MIGRATION_NAMES: tuple[str, ...] = (
    "0001_initial_schema",
    "0002_incremental_checkpoints",
    "0003_message_user_index",
    "0004_api_call_user_index",
    "0005_deleted_seqs",
    "0006_clustered_messages",
    "0007_api_call_usage_index",
    "0008_message_user_sessions",
    "0009_lean_messages",  # after 0008: the code of 0010 and 0011 (and their tests) needs it
    "0011_session_forks",
    "0010_usage_rollup",
    "0012_shared_forks",
)
"""Every migration of this version of the plugin, in the order they apply to a new file
(a file of the release before 0009, at 0011 and 0010, gets 0009 after them)."""


def _m0001_initial_schema(db: Database) -> None:
    """The six entity tables, the tool-call index and the indexes the hot paths use."""
    str_, int_, float_ = str, int, float
    db.create_table(
        "entity_provider",
        {
            "id": str_,
            "tenant_id": str_,
            "name": str_,
            "type": str_,
            "api_base": str_,
            "api_key_ref": str_,
            "enabled": int_,
            "metadata": str_,
            "created_at": int_,
            "updated_at": int_,
        },  # fmt: skip
        pk="id",
        not_null={"tenant_id", "name", "type", "enabled", "metadata", "created_at", "updated_at"},
    )
    db.table("entity_provider").create_index(["tenant_id"], index_name="idx_provider_tenant")
    db.create_table(
        "entity_agent",
        {
            "id": str_,
            "tenant_id": str_,
            "code": str_,
            "name": str_,
            "system_prompt": str_,
            "model": str_,
            "temperature": float_,
            "max_tokens": int_,
            "window": int_,
            "response_format": str_,
            "custom_params": str_,
            "provider_id": str_,
            "enabled": int_,
            "version": int_,
            "created_at": int_,
            "updated_at": int_,
        },  # fmt: skip
        pk="id",
        not_null={
            "tenant_id",
            "code",
            "name",
            "custom_params",
            "enabled",
            "version",
            "created_at",
            "updated_at",
        },  # fmt: skip
    )
    db.table("entity_agent").create_index(
        ["tenant_id", "code"], index_name="idx_agent_tenant_code", unique=True
    )
    db.create_table(
        "entity_session",
        {
            "id": str_,
            "tenant_id": str_,
            "user_id": str_,
            "agent_id": str_,
            "title": str_,
            "metadata": str_,
            "created_at": int_,
            "updated_at": int_,
            "last_seq": int_,
            "last_version": int_,
        },  # fmt: skip
        pk="id",
        not_null={
            "tenant_id",
            "metadata",
            "created_at",
            "updated_at",
            "last_seq",
            "last_version",
        },  # fmt: skip
        defaults={"last_seq": 0, "last_version": 0},
    )
    db.table("entity_session").create_index(
        ["tenant_id", "updated_at", "id"], index_name="idx_session_tenant_updated"
    )
    db.create_table(
        "entity_message",
        {
            "id": str_,
            "session_id": str_,
            "tenant_id": str_,
            "user_id": str_,
            "agent_id": str_,
            "seq": int_,
            "role": str_,
            "content": str_,
            "tool_calls": str_,
            "tool_call_id": str_,
            "name": str_,
            "status": str_,
            "metadata": str_,
            "created_at": int_,
        },  # fmt: skip
        pk="id",
        not_null={
            "session_id",
            "tenant_id",
            "seq",
            "role",
            "content",
            "status",
            "metadata",
            "created_at",
        },  # fmt: skip
        foreign_keys=[("session_id", "entity_session", "id")],
    )
    messages = db.table("entity_message")
    # seq order within a session: get_messages and the window's tail.
    messages.create_index(["session_id", "seq"], index_name="idx_message_session_seq", unique=True)
    # the window's round starts (user) and head (system): found without reading the session.
    messages.create_index(["session_id", "role", "seq"], index_name="idx_message_session_role")
    # replies left streaming by a crash: only those rows are in this index.
    db.execute(
        "CREATE INDEX idx_message_streaming ON entity_message (session_id) "
        "WHERE status = 'streaming'"
    )
    # Which message called a tool-call id: lets the window grow back to a tool result's
    # call with an index lookup instead of a scan of the session.
    db.execute(
        "CREATE TABLE entity_message_tool_call ("
        " session_id TEXT NOT NULL REFERENCES entity_session(id),"
        " call_id TEXT NOT NULL,"
        " seq INTEGER NOT NULL,"
        " PRIMARY KEY (session_id, call_id, seq)"
        ") WITHOUT ROWID"
    )
    db.create_table(
        "entity_api_call",
        {
            "id": str_,
            "tenant_id": str_,
            "session_id": str_,
            "user_id": str_,
            "agent_id": str_,
            "request_message_id": str_,
            "response_message_id": str_,
            "model": str_,
            "status": str_,
            "error_message": str_,
            "error_code": str_,
            "prompt_tokens": int_,
            "completion_tokens": int_,
            "total_tokens": int_,
            "latency_ms": float_,
            "time_to_first_token_ms": float_,
            "tokens_per_second": float_,
            "response_id": str_,
            "metadata": str_,
            "created_at": int_,
        },  # fmt: skip
        pk="id",
        not_null={"tenant_id", "session_id", "model", "status", "metadata", "created_at"},
        foreign_keys=[("session_id", "entity_session", "id")],
    )
    db.table("entity_api_call").create_index(["session_id"], index_name="idx_api_call_session")
    db.create_table(
        "entity_checkpoint",
        {
            "id": str_,
            "tenant_id": str_,
            "session_id": str_,
            "agent_id": str_,
            "version": int_,
            "parent_id": str_,
            "node_id": str_,
            "input": str_,
            "input_type": str_,
            "history": str_,
            "state": str_,
            "properties": str_,
            "tombstone": int_,
            "created_at": int_,
        },  # fmt: skip
        pk="id",
        not_null={
            "tenant_id",
            "session_id",
            "version",
            "input",
            "history",
            "state",
            "properties",
            "tombstone",
            "created_at",
        },  # fmt: skip
        foreign_keys=[("session_id", "entity_session", "id")],
    )
    db.table("entity_checkpoint").create_index(
        ["session_id", "version"], index_name="idx_checkpoint_session_version", unique=True
    )


def _m0002_incremental_checkpoints(db: Database) -> None:
    """Checkpoint histories as snapshot/delta records: the depth and write tag of each."""
    db.execute("ALTER TABLE entity_checkpoint ADD COLUMN history_depth INTEGER")
    db.execute("ALTER TABLE entity_checkpoint ADD COLUMN history_tag INTEGER")


def _m0003_message_user_index(db: Database) -> None:
    """A user's messages in a tenant, found by index: what erase_user redacts elsewhere.

    Partial (``user_id IS NOT NULL``): a query for ``user_id = ?`` can use it, and an
    append of a message without a user does not write to it. ``IF NOT EXISTS``: a
    database where someone created the same index by hand upgrades too.
    """
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_message_tenant_user ON entity_message "
        "(tenant_id, user_id) WHERE user_id IS NOT NULL"
    )


def _m0004_api_call_user_index(db: Database) -> None:
    """A user's API calls in a tenant, found by index: what erase_user deletes elsewhere.

    Partial and ``IF NOT EXISTS`` for the reasons of 0003; an API call is written once
    per model request, so the extra entry costs far less than the message index.
    """
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_api_call_tenant_user ON entity_api_call "
        "(tenant_id, user_id) WHERE user_id IS NOT NULL"
    )


def _m0005_deleted_seqs(db: Database) -> None:
    """How many of a session's seqs were deleted (``delete_messages``): seqs are never
    reused, so the count of messages is ``last_seq - deleted_seqs``, one row read."""
    db.execute("ALTER TABLE entity_session ADD COLUMN deleted_seqs INTEGER NOT NULL DEFAULT 0")


_MESSAGE_TABLE = """
CREATE TABLE entity_message_0006 (
  id TEXT NOT NULL,
  session_id TEXT NOT NULL REFERENCES entity_session(id),
  tenant_id TEXT NOT NULL,
  user_id TEXT,
  agent_id TEXT,
  seq INTEGER NOT NULL,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  tool_calls TEXT,
  tool_call_id TEXT,
  name TEXT,
  status TEXT NOT NULL,
  metadata TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (session_id, seq)
) WITHOUT ROWID
"""
_MESSAGE_COLUMNS = (
    "id, session_id, tenant_id, user_id, agent_id, seq, role, content, tool_calls, "
    "tool_call_id, name, status, metadata, created_at"
)


def _m0006_clustered_messages(db: Database) -> None:
    """Messages clustered by ``(session_id, seq)``: two b-tree writes per append fewer.

    The table is rebuilt ``WITHOUT ROWID`` with ``(session_id, seq)`` as its key, so a
    session's messages sit together in seq order (the window reads neighbouring rows)
    and the separate ``(session_id, seq)`` index goes. The id stays unique through
    ``idx_message_id``. The round index keeps only user and system messages (the window
    looks up nothing else by role), and the erasure index is on ``user_id`` alone (user
    ids are UUIDs; the query still checks the tenant). Every row is copied as it is.
    """
    db.execute(_MESSAGE_TABLE)
    db.execute(
        f"INSERT INTO entity_message_0006 ({_MESSAGE_COLUMNS}) "
        f"SELECT {_MESSAGE_COLUMNS} FROM entity_message"
    )
    db.execute("DROP TABLE entity_message")  # its indexes go with it
    db.execute("ALTER TABLE entity_message_0006 RENAME TO entity_message")
    db.execute("CREATE UNIQUE INDEX idx_message_id ON entity_message (id)")
    db.execute(
        "CREATE INDEX idx_message_round ON entity_message (session_id, role, seq) "
        "WHERE role = 'user' OR role = 'system'"
    )
    db.execute(
        "CREATE INDEX idx_message_streaming ON entity_message (session_id) "
        "WHERE status = 'streaming'"
    )
    db.execute(
        "CREATE INDEX idx_message_user ON entity_message (user_id) WHERE user_id IS NOT NULL"
    )


def _m0007_api_call_usage_index(db: Database) -> None:
    """A tenant's API calls by time, covering what ``Store.usage`` sums and groups.

    ``(tenant_id, created_at)`` finds a period's calls; the other columns are in the
    index too, so the usage query reads the index alone (in time order, no table rows).
    """
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_api_call_usage ON entity_api_call (tenant_id, "
        "created_at, model, agent_id, user_id, session_id, status, prompt_tokens, "
        "completion_tokens, total_tokens, latency_ms, time_to_first_token_ms)"
    )


def _m0008_message_user_sessions(db: Database) -> None:
    """Which users wrote in which session: one row per pair, not an index entry per message.

    ``entity_message_user`` holds a ``(session_id, user_id)`` row for every user with a
    message in the session (filled from the stored messages here, kept by every message
    write). erase_user finds the user's messages in other users' sessions through it and
    reads those sessions' messages; an append of a user's next message only looks the
    pair up. ``idx_message_user`` (one ~90-byte entry and one more page written per
    message) goes. A pair can outlive its messages (a deletion, a redaction): erasure
    then finds nothing there, which is right.
    """
    db.execute(
        "CREATE TABLE entity_message_user ("
        " session_id TEXT NOT NULL REFERENCES entity_session(id),"
        " user_id TEXT NOT NULL,"
        " PRIMARY KEY (session_id, user_id)"
        ") WITHOUT ROWID"
    )
    db.execute("CREATE INDEX idx_message_user_sessions ON entity_message_user (user_id)")
    db.execute(
        "INSERT OR IGNORE INTO entity_message_user (session_id, user_id) "
        "SELECT DISTINCT session_id, user_id FROM entity_message WHERE user_id IS NOT NULL"
    )
    db.execute("DROP INDEX IF EXISTS idx_message_user")


def _m0011_session_forks(db: Database) -> None:
    """The forks of a session, from an index: ``list_sessions(forked_from=...)``
    (:meth:`threadline.Store.list_branches`) reads ``idx_session_forks`` (partial: only
    sessions whose metadata records ``forked_from``, so other sessions cost nothing)."""
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_session_forks ON entity_session (tenant_id, "
        f"{FORK_PARENT}, updated_at, id) WHERE {FORK_PARENT} IS NOT NULL"
    )


def _m0010_usage_rollup(db: Database) -> None:
    """Usage reports from a rollup kept by triggers (``threadline_sqlite.usage_rollup``):
    per UTC day and group the calls per status, token sums and latency histograms, filled
    here from the calls already stored, then maintained in every write's transaction."""
    from threadline_sqlite.usage_rollup import create_rollup

    create_rollup(db.conn)


_LEAN_MESSAGE_TABLE = """
CREATE TABLE entity_message_0009 (
  session_key INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  user_id TEXT,
  agent_id TEXT,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  tool_calls TEXT,
  tool_call_id TEXT,
  name TEXT,
  status TEXT NOT NULL,
  metadata TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (session_key, seq)
) WITHOUT ROWID
"""
_LEAN_COLUMNS = (
    "id, user_id, agent_id, seq, role, content, tool_calls, tool_call_id, name, status, "
    "metadata, created_at"
)


def _m0009_lean_messages(db: Database) -> None:
    """Messages keyed by an integer session key: no 36-character ids in every row and entry.

    ``entity_session`` gets ``key`` (unique; its rowid for the sessions there, the next
    number for a new session, set by ``trg_session_key`` when an insert gives none).
    ``entity_message`` is rebuilt on ``(session_key, seq)`` without ``session_id`` and
    ``tenant_id`` (both come from the session row; every statement finds the key by
    ``(id, tenant_id)``, which also checks the tenant) and without the foreign key (the
    append's own session-row update proves the session exists; deletions delete the
    messages). Each row and each index entry (id, round, streaming) is ~74 bytes shorter.
    Every message is copied with its session's key.
    """
    db.execute("ALTER TABLE entity_session ADD COLUMN key INTEGER")
    db.execute("UPDATE entity_session SET key = rowid")
    db.execute("CREATE UNIQUE INDEX idx_session_key ON entity_session (key)")
    db.execute(
        "CREATE TRIGGER trg_session_key AFTER INSERT ON entity_session WHEN NEW.key IS NULL "
        "BEGIN UPDATE entity_session SET key = "
        "(SELECT coalesce(max(key), 0) + 1 FROM entity_session) WHERE rowid = NEW.rowid; END"
    )
    db.execute(_LEAN_MESSAGE_TABLE)
    db.execute(
        f"INSERT INTO entity_message_0009 (session_key, {_LEAN_COLUMNS}) "
        f"SELECT s.key, {', '.join('m.' + c.strip() for c in _LEAN_COLUMNS.split(','))} "
        "FROM entity_message m JOIN entity_session s ON s.id = m.session_id"
    )
    db.execute("DROP TABLE entity_message")  # its indexes go with it
    db.execute("ALTER TABLE entity_message_0009 RENAME TO entity_message")
    db.execute("CREATE UNIQUE INDEX idx_message_id ON entity_message (id)")
    db.execute(
        "CREATE INDEX idx_message_round ON entity_message (session_key, role, seq) "
        "WHERE role = 'user' OR role = 'system'"
    )
    db.execute(
        "CREATE INDEX idx_message_streaming ON entity_message (session_key) "
        "WHERE status = 'streaming'"
    )


# Copy-on-write of a shared row's bytes: before a source row's content or tool calls change
# (a rewrite, erasure's redaction) or it goes (pop, delete, session deletion, retention), the
# rows sharing them get their own copy. After the statement's row, so the rows of a
# statement deleting several sessions are found again, as SQLite does with triggers.
_UNSHARE = (
    "UPDATE entity_message SET content = OLD.content, tool_calls = OLD.tool_calls, "
    "shared_key = NULL WHERE shared_key = OLD.session_key AND seq = OLD.seq"
)
_SHARED_TRIGGERS = (
    "CREATE TRIGGER trg_message_unshare_delete AFTER DELETE ON entity_message "
    f"WHEN OLD.shared_key IS NULL BEGIN {_UNSHARE}; END",
    "CREATE TRIGGER trg_message_unshare_update AFTER UPDATE OF content, tool_calls "
    "ON entity_message WHEN OLD.shared_key IS NULL AND (OLD.content IS NOT NEW.content "
    f"OR OLD.tool_calls IS NOT NEW.tool_calls) BEGIN {_UNSHARE}; END",
    # A sharing row rewritten (given its full new values) owns them from then on.
    "CREATE TRIGGER trg_message_own AFTER UPDATE OF content, tool_calls ON entity_message "
    "WHEN NEW.shared_key IS NOT NULL BEGIN UPDATE entity_message SET shared_key = NULL "
    "WHERE session_key = NEW.session_key AND seq = NEW.seq; END",
)


def _m0012_shared_forks(db: Database) -> None:
    """A fork's messages share their source's stored bytes (:mod:`threadline_sqlite.forks`).

    ``entity_message.shared_key`` (NULL for every row written so far and every append): a
    fork's row whose content and tool calls are the row of the same seq in the session
    of that key (its own ``content`` is empty, ``tool_calls`` NULL; reads resolve them,
    ``threadline_sqlite.rows.shared``). ``idx_message_shared`` (partial: sharing rows
    only) finds the rows sharing a source row; the triggers copy the bytes into them
    before the source row changes or goes. Adding a column rewrites no row.
    """
    db.execute("ALTER TABLE entity_message ADD COLUMN shared_key INTEGER")
    db.execute(
        "CREATE INDEX idx_message_shared ON entity_message (shared_key, seq) "
        "WHERE shared_key IS NOT NULL"
    )
    for trigger in _SHARED_TRIGGERS:
        db.execute(trigger)


_FUNCTIONS: dict[str, Any] = {
    "0001_initial_schema": _m0001_initial_schema,
    "0002_incremental_checkpoints": _m0002_incremental_checkpoints,
    "0003_message_user_index": _m0003_message_user_index,
    "0004_api_call_user_index": _m0004_api_call_user_index,
    "0005_deleted_seqs": _m0005_deleted_seqs,
    "0006_clustered_messages": _m0006_clustered_messages,
    "0007_api_call_usage_index": _m0007_api_call_usage_index,
    "0008_message_user_sessions": _m0008_message_user_sessions,
    "0011_session_forks": _m0011_session_forks,
    "0010_usage_rollup": _m0010_usage_rollup,
    "0009_lean_messages": _m0009_lean_messages,
    "0012_shared_forks": _m0012_shared_forks,
}


def _migration_set() -> Migrations:
    from sqlite_utils import Migrations

    migrations = Migrations(MIGRATION_SET)
    for name in MIGRATION_NAMES:
        migrations(name=name)(_FUNCTIONS[name])
    return migrations


def applied_migrations(connection: sqlite3.Connection) -> list[str]:
    """Names of this plugin's migrations recorded in the database, in the order applied."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if exists is None:
        return []
    rows = connection.execute(
        f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid",
        (MIGRATION_SET,),
    ).fetchall()
    return [row[0] for row in rows]


def migrate(connection: sqlite3.Connection) -> list[str]:
    """Apply the pending migrations under the write lock; return the names applied.

    ``connection`` must be in autocommit mode (``isolation_level=None``) with no open
    transaction. On any error everything this call did is rolled back.
    """
    if set(applied_migrations(connection)) >= set(MIGRATION_NAMES):
        return []
    from sqlite_utils import Database

    connection.execute("BEGIN IMMEDIATE")
    try:
        db = Database(connection, recursive_triggers=False, execute_plugins=False)
        migrations = _migration_set()
        pending = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
        if "0009_lean_messages" in pending and "0012_shared_forks" not in pending:
            _m0012_shared_forks(db)  # applied before 0009, whose rebuilt table lacks it
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return pending
