"""The schema and its versioned migrations.

Migrations are plain SQL, applied in name order and recorded in
``threadline_migrations``. :func:`migrate` runs them all in one transaction that
first takes ``pg_advisory_xact_lock`` on a key derived from the schema name, so
two processes starting at once do not both migrate: the second waits, then finds
everything applied and does nothing. A failure rolls the whole run back. Calling it
again is always safe. Nothing here needs a server extension or anything newer than
PostgreSQL 13.

Design notes:

* ``entity_session.last_seq`` and ``last_version`` are the per-session counters that
  message ``seq`` and checkpoint ``version`` are taken from: an ``UPDATE ... RETURNING``
  in the same transaction as the insert, so concurrent writers in any number of
  processes queue on the session row and never collide or leave gaps.
* The sliding window reads the last user turns from a partial index on
  ``(session_id, seq) WHERE role = 'user'``, the system prompt from one on system
  messages, and the tail through the ``(session_id, seq)`` unique index: its cost
  does not grow with the session.
* ``entity_message.call_ids`` lists the tool-call ids a message made, with a GIN index,
  so the window can find the call of a tool result that falls outside it.
* Checkpoint histories are stored incrementally (``0002_incremental_checkpoints``):
  ``history_delta`` holds a record of :mod:`threadline.storekit.delta`, a delta on
  ``history_base`` (the parent) or a snapshot (``history_base`` is ``NULL``), with
  ``chain_depth`` its distance from the snapshot and ``history_tag`` its write tag; so
  restoring one reads a bounded chain. (Rows of the pre-release format before it, a JSON
  array of messages, are not read: nothing was released with them.)
* ``(tenant_id, user_id)`` on messages (``0004_message_user_index``) and on API calls
  (``0005_api_call_user_index``) serves erasing a user: their messages and API calls in
  other users' sessions are found without reading the tenant's.
* Keys hold the tenant (``0008_tenant_keys``): the primary keys of sessions, messages,
  API calls and checkpoints are ``(id, tenant_id)``, the unique keys ``(session_id, seq,
  tenant_id)`` and ``(session_id, version, tenant_id)``, and every foreign key between
  them includes ``tenant_id``, so the four tables can be hash-partitioned or distributed
  by tenant (agents and providers, small and keyed by id, stay as they are: reference
  tables on a distributed database). ``id`` leads each primary key, so "is this id held
  anywhere" stays one index probe on an unpartitioned table (an id another tenant holds is
  refused; see ``docs/postgres.md``).
* ``?partitions=N`` (``0009_tenant_partitions``): ``entity_message`` and
  ``entity_checkpoint`` become ``N`` hash partitions by ``tenant_id`` when 0009 applies
  (a new schema, or an upgrade of an existing one: the rows are moved, seqs and versions
  kept). Without the option 0009 changes nothing.
* A fork's messages share their source's content and tool calls (``0012_shared_forks``,
  :mod:`threadline_postgres.forks`): a pointer in the row's metadata, a partial index on
  it and a copy-on-write trigger.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import attrs

from threadline.errors import ConfigurationError
from threadline_postgres.config import PostgresConfig
from threadline_postgres.rows import SHARED_KEY
from threadline_postgres.usage_rollup import ROLLUP

__all__ = ["MIGRATIONS", "Migration", "migrate"]

MIGRATIONS_TABLE = "threadline_migrations"


@attrs.frozen
class Migration:
    """One schema change: applied once, recorded by ``name``.

    ``sql`` is the statement text with ``{entity_*}`` placeholders, or a function of the
    configuration that returns it (a change that depends on an option).
    """

    name: str
    sql: str | Callable[[PostgresConfig], str]


_INITIAL = """
CREATE TABLE {entity_provider} (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name text NOT NULL,
    type text NOT NULL,
    api_base text,
    api_key_ref text,
    enabled boolean NOT NULL DEFAULT true,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX entity_provider_tenant ON {entity_provider} (tenant_id);

CREATE TABLE {entity_agent} (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    code text NOT NULL,
    name text NOT NULL,
    system_prompt text,
    model text,
    temperature double precision,
    max_tokens bigint,
    window_rounds bigint,
    response_format jsonb,
    custom_params jsonb NOT NULL DEFAULT '{{}}',
    provider_id uuid REFERENCES {entity_provider} (id) ON DELETE SET NULL,
    enabled boolean NOT NULL DEFAULT true,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT entity_agent_tenant_code UNIQUE (tenant_id, code)
);
CREATE INDEX entity_agent_provider ON {entity_agent} (provider_id);

CREATE TABLE {entity_session} (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    user_id uuid,
    agent_id uuid,
    title text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0,
    last_version bigint NOT NULL DEFAULT 0
);
CREATE INDEX entity_session_recent ON {entity_session} (tenant_id, updated_at DESC, id DESC);
CREATE INDEX entity_session_user_recent
    ON {entity_session} (tenant_id, user_id, updated_at DESC, id DESC);

CREATE TABLE {entity_message} (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES {entity_session} (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL,
    seq bigint NOT NULL,
    role text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content text NOT NULL,
    user_id uuid,
    agent_id uuid,
    tool_calls jsonb,
    call_ids text[],
    tool_call_id text,
    name text,
    status text NOT NULL
        CHECK (status IN ('complete', 'streaming', 'cancelled', 'error', 'interrupted')),
    metadata jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL,
    CONSTRAINT entity_message_session_seq UNIQUE (session_id, seq)
);
CREATE INDEX entity_message_user_turns ON {entity_message} (session_id, seq)
    WHERE role = 'user';
CREATE INDEX entity_message_system ON {entity_message} (session_id, seq)
    WHERE role = 'system';
CREATE INDEX entity_message_streaming ON {entity_message} (session_id)
    WHERE status = 'streaming';
CREATE INDEX entity_message_call_ids ON {entity_message} USING gin (call_ids)
    WHERE call_ids IS NOT NULL;

CREATE TABLE {entity_api_call} (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES {entity_session} (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL,
    user_id uuid,
    agent_id uuid,
    request_message_id uuid,
    response_message_id uuid,
    model text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('success', 'failed', 'timeout', 'rate_limited', 'cancelled')),
    error_message text,
    error_code text,
    prompt_tokens bigint,
    completion_tokens bigint,
    total_tokens bigint,
    latency_ms double precision,
    time_to_first_token_ms double precision,
    tokens_per_second double precision,
    response_id text,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL
);
CREATE INDEX entity_api_call_session ON {entity_api_call} (session_id, created_at, id);

CREATE TABLE {entity_checkpoint} (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES {entity_session} (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL,
    agent_id uuid,
    version bigint NOT NULL,
    parent_id uuid REFERENCES {entity_checkpoint} (id) ON DELETE CASCADE,
    node_id text,
    input jsonb,
    input_type text,
    state jsonb NOT NULL DEFAULT '{{}}',
    properties jsonb NOT NULL DEFAULT '{{}}',
    tombstone boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    history_base uuid REFERENCES {entity_checkpoint} (id) ON DELETE CASCADE,
    history_delta jsonb NOT NULL,
    history_len integer NOT NULL,
    history_digest bytea NOT NULL,
    chain_depth integer NOT NULL DEFAULT 0,
    CONSTRAINT entity_checkpoint_session_version UNIQUE (session_id, version)
);
CREATE INDEX entity_checkpoint_tenant_agent ON {entity_checkpoint} (tenant_id, agent_id);
CREATE INDEX entity_checkpoint_parent ON {entity_checkpoint} (parent_id);
CREATE INDEX entity_checkpoint_base ON {entity_checkpoint} (history_base);
"""

_INCREMENTAL_CHECKPOINTS = """
ALTER TABLE {entity_checkpoint}
    DROP COLUMN history_len,
    DROP COLUMN history_digest,
    ADD COLUMN history_tag bigint;
"""

# Pruning old checkpoints (threadline_prune_checkpoints) keeps a checkpoint whose parent
# goes: its parent_id stays as recorded, so it must not cascade (nor be checked). The
# history chain keeps its foreign key: a kept delta's base is rewritten first.
_PRUNABLE_CHECKPOINTS = """
ALTER TABLE {entity_checkpoint} DROP CONSTRAINT IF EXISTS entity_checkpoint_parent_id_fkey;
"""

# Erasing a user (threadline_erase_user) redacts their messages in other users' sessions:
# found through this index rather than by reading every message of the tenant. IF NOT
# EXISTS: an operator may have built it beforehand with CREATE INDEX CONCURRENTLY.
_MESSAGE_USER = """
CREATE INDEX IF NOT EXISTS entity_message_tenant_user ON {entity_message} (tenant_id, user_id);
"""

# The same for the API calls erasing a user deletes in other users' sessions.
_API_CALL_USER = """
CREATE INDEX IF NOT EXISTS entity_api_call_tenant_user ON {entity_api_call} (tenant_id, user_id);
"""

# Messages may be deleted from a session's end (threadline_delete_messages) and seqs are
# never reused: the count is last_seq - deleted_seqs, still one row read.
_DELETED_SEQS = """
ALTER TABLE {entity_session} ADD COLUMN IF NOT EXISTS deleted_seqs bigint NOT NULL DEFAULT 0;
"""

# Usage reports (threadline_summarize_usage) read a tenant's calls of a period: this index
# finds them by time and holds every column the report reads (index-only scans).
_API_CALL_USAGE = """
CREATE INDEX IF NOT EXISTS entity_api_call_usage ON {entity_api_call} (tenant_id, created_at)
    INCLUDE (model, agent_id, user_id, session_id, status, prompt_tokens, completion_tokens,
             total_tokens, latency_ms, time_to_first_token_ms);
"""

# The forks of a session (list_sessions(forked_from=...), Store.list_branches) from an
# index; partial: sessions that record no forked_from cost nothing. The expression is
# sql.FORK_PARENT's.
_SESSION_FORKS = """
CREATE INDEX IF NOT EXISTS entity_session_forks ON {entity_session}
    (tenant_id, ((metadata->'forked_from'->>'session_id')), updated_at DESC, id DESC)
    WHERE (metadata->'forked_from'->>'session_id') IS NOT NULL;
"""

# A fork's message rows share their source's content and tool calls (threadline_postgres.forks):
# a sharing row has an empty content, no tool calls and the id of the row holding them under
# rows.SHARED_KEY in its metadata (reads resolve it: forks.resolve_shared). Copy-on-write:
# after a source row's content or tool calls change (a rewrite, erasure's redaction) or it
# goes (pop, delete, a session's deletion cascading, retention), the rows sharing it get the
# old values and lose the key. A sharing row that is rewritten is given its full values and
# metadata without the key, so it owns them. No column is added (no row rewritten, and reads
# work on a schema before 0012); the partial index holds sharing rows only.
_SHARED_FORKS = f"""
CREATE INDEX IF NOT EXISTS entity_message_shared
    ON {{entity_message}} ((metadata->>'{SHARED_KEY}'), tenant_id)
    WHERE metadata ? '{SHARED_KEY}';
CREATE OR REPLACE FUNCTION {{entity_message}}_unshare() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT OLD.metadata ? '{SHARED_KEY}' AND (TG_OP = 'DELETE'
            OR OLD.content IS DISTINCT FROM NEW.content
            OR OLD.tool_calls IS DISTINCT FROM NEW.tool_calls) THEN
        UPDATE {{entity_message}} SET content = OLD.content, tool_calls = OLD.tool_calls,
            metadata = metadata - '{SHARED_KEY}'
        WHERE metadata ? '{SHARED_KEY}' AND metadata->>'{SHARED_KEY}' = OLD.id::text
          AND tenant_id = OLD.tenant_id;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS entity_message_unshare ON {{entity_message}};
CREATE TRIGGER entity_message_unshare AFTER DELETE OR UPDATE OF content, tool_calls
    ON {{entity_message}} FOR EACH ROW EXECUTE FUNCTION {{entity_message}}_unshare();
"""

# Keys with the tenant in them, so the tables can be partitioned or distributed by tenant
# (Citus requires the distribution column in every primary, unique and foreign key). The
# foreign keys go first (they depend on the keys they reference), then each key is rebuilt
# with tenant_id, then the foreign keys come back with tenant_id in them.
_TENANT_KEYS = """
ALTER TABLE {entity_message} DROP CONSTRAINT entity_message_session_id_fkey;
ALTER TABLE {entity_api_call} DROP CONSTRAINT entity_api_call_session_id_fkey;
ALTER TABLE {entity_checkpoint} DROP CONSTRAINT entity_checkpoint_session_id_fkey,
    DROP CONSTRAINT entity_checkpoint_history_base_fkey;
ALTER TABLE {entity_session} DROP CONSTRAINT entity_session_pkey,
    ADD CONSTRAINT entity_session_pkey PRIMARY KEY (id, tenant_id);
ALTER TABLE {entity_message} DROP CONSTRAINT entity_message_pkey,
    ADD CONSTRAINT entity_message_pkey PRIMARY KEY (id, tenant_id),
    DROP CONSTRAINT entity_message_session_seq,
    ADD CONSTRAINT entity_message_session_seq UNIQUE (session_id, seq, tenant_id),
    ADD CONSTRAINT entity_message_session_id_fkey FOREIGN KEY (session_id, tenant_id)
        REFERENCES {entity_session} (id, tenant_id) ON DELETE CASCADE;
ALTER TABLE {entity_api_call} DROP CONSTRAINT entity_api_call_pkey,
    ADD CONSTRAINT entity_api_call_pkey PRIMARY KEY (id, tenant_id),
    ADD CONSTRAINT entity_api_call_session_id_fkey FOREIGN KEY (session_id, tenant_id)
        REFERENCES {entity_session} (id, tenant_id) ON DELETE CASCADE;
ALTER TABLE {entity_checkpoint} DROP CONSTRAINT entity_checkpoint_pkey,
    ADD CONSTRAINT entity_checkpoint_pkey PRIMARY KEY (id, tenant_id),
    DROP CONSTRAINT entity_checkpoint_session_version,
    ADD CONSTRAINT entity_checkpoint_session_version UNIQUE (session_id, version, tenant_id),
    ADD CONSTRAINT entity_checkpoint_session_id_fkey FOREIGN KEY (session_id, tenant_id)
        REFERENCES {entity_session} (id, tenant_id) ON DELETE CASCADE;
ALTER TABLE {entity_checkpoint} ADD CONSTRAINT entity_checkpoint_history_base_fkey
    FOREIGN KEY (history_base, tenant_id) REFERENCES {entity_checkpoint} (id, tenant_id)
    ON DELETE CASCADE;
"""

# What 0009 rebuilds on each partitioned table: its keys and indexes as 0001-0008 left them,
# except that no index leads with tenant_id: reads of one session compare the tenant plainly
# there (so partitions are pruned), and without statistics the planner ANDed a tenant-led
# index into them (a window read of 64 ms instead of 0.3 at 2,000,000 messages).
_PARTITIONED: dict[str, tuple[list[str], list[str]]] = {
    "entity_message": (
        [
            "CONSTRAINT entity_message_pkey PRIMARY KEY (id, tenant_id)",
            "CONSTRAINT entity_message_session_seq UNIQUE (session_id, seq, tenant_id)",
            "CONSTRAINT entity_message_session_id_fkey FOREIGN KEY (session_id, tenant_id) "
            "REFERENCES {entity_session} (id, tenant_id) ON DELETE CASCADE",
        ],
        [
            "entity_message_user_turns ON {t} (session_id, seq) WHERE role = 'user'",
            "entity_message_system ON {t} (session_id, seq) WHERE role = 'system'",
            "entity_message_streaming ON {t} (session_id) WHERE status = 'streaming'",
            "entity_message_call_ids ON {t} USING gin (call_ids) WHERE call_ids IS NOT NULL",
            "entity_message_tenant_user ON {t} (user_id, tenant_id)",
        ],
    ),
    "entity_checkpoint": (
        [
            "CONSTRAINT entity_checkpoint_pkey PRIMARY KEY (id, tenant_id)",
            "CONSTRAINT entity_checkpoint_session_version UNIQUE (session_id, version, tenant_id)",
            "CONSTRAINT entity_checkpoint_session_id_fkey FOREIGN KEY (session_id, tenant_id) "
            "REFERENCES {entity_session} (id, tenant_id) ON DELETE CASCADE",
            "CONSTRAINT entity_checkpoint_history_base_fkey FOREIGN KEY (history_base, tenant_id) "
            "REFERENCES {entity_checkpoint} (id, tenant_id) ON DELETE CASCADE",
        ],
        [
            "entity_checkpoint_tenant_agent ON {t} (agent_id, tenant_id)",
            "entity_checkpoint_parent ON {t} (parent_id)",
            "entity_checkpoint_base ON {t} (history_base)",
        ],
    ),
}


def _tenant_partitions(config: PostgresConfig) -> str:
    """With ``partitions``: each table of :data:`_PARTITIONED` moved into a new table
    ``PARTITION BY HASH (tenant_id)`` of that many partitions (``<table>_p0``...), rows,
    keys and indexes kept; the old table is dropped. Without it: nothing."""
    n = config.partitions
    if not n:
        return "SELECT 1;"
    schema = f'"{config.schema}".' if config.schema else ""
    out: list[str] = []
    for name, (constraints, indexes) in _PARTITIONED.items():
        table, old = config.table(name), f"{name}_unpartitioned"
        # The old table's keys, foreign keys and indexes go first: their names are free
        # for the new table, and no foreign key points at rows about to move.
        out.append(f"ALTER TABLE {table} RENAME TO {old};")
        drops = [c.split()[1] for c in reversed(constraints)]
        out.append(
            f"ALTER TABLE {schema}{old} " + ", ".join(f"DROP CONSTRAINT {c}" for c in drops) + ";"
        )
        out.extend(f"DROP INDEX {schema}{i.split()[0]};" for i in indexes)
        out.append(
            f"CREATE TABLE {table} (LIKE {schema}{old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
            "PARTITION BY HASH (tenant_id);"
        )
        out.extend(
            f"CREATE TABLE {schema}{name}_p{i} PARTITION OF {table} "
            f"FOR VALUES WITH (MODULUS {n}, REMAINDER {i});"
            for i in range(n)
        )
        out.append(f"INSERT INTO {table} SELECT * FROM {schema}{old};")
        out.append(f"DROP TABLE {schema}{old};")
        out.extend(f"ALTER TABLE {table} ADD {c};" for c in constraints)
        out.extend(f"CREATE INDEX {i.replace('{t}', table)};" for i in indexes)
    return "\n".join(out)


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial_schema", _INITIAL),
    Migration("0002_incremental_checkpoints", _INCREMENTAL_CHECKPOINTS),
    Migration("0003_prunable_checkpoints", _PRUNABLE_CHECKPOINTS),
    Migration("0004_message_user_index", _MESSAGE_USER),
    Migration("0005_api_call_user_index", _API_CALL_USER),
    Migration("0006_deleted_seqs", _DELETED_SEQS),
    Migration("0007_api_call_usage_index", _API_CALL_USAGE),
    Migration("0008_tenant_keys", _TENANT_KEYS),
    Migration("0009_tenant_partitions", _tenant_partitions),
    Migration("0010_usage_rollup", ROLLUP),
    Migration("0011_session_forks", _SESSION_FORKS),
    Migration("0012_shared_forks", _SHARED_FORKS),
)
"""Every migration, in the order they apply. Append only; never edit an applied one."""

TABLES = (
    "entity_provider",
    "entity_agent",
    "entity_session",
    "entity_message",
    "entity_api_call",
    "entity_checkpoint",
    "usage_rollup",
    "usage_histogram",
)


def render(sql: str | Callable[[PostgresConfig], str], config: PostgresConfig) -> str:
    """``sql`` with ``{entity_*}`` replaced by the (schema-qualified) table names."""
    text = sql(config) if callable(sql) else sql
    return text.format(**{name: config.table(name) for name in TABLES})


async def check_partitions(conn: asyncpg.Connection, config: PostgresConfig) -> None:
    """``partitions`` asked for on tables that are not partitioned: say why, at once.

    :raises ConfigurationError: the schema's messages are not partitioned.
    """
    if not config.partitions:
        return
    found = await conn.fetchval(
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = to_regclass($1)",
        config.table("entity_message"),
    )
    if not found:
        raise ConfigurationError(
            f"postgres option partitions={config.partitions}: the schema's tables are not "
            "partitioned (partitions are chosen when migration 0009_tenant_partitions "
            "applies, at the schema's creation or its upgrade; this schema was created "
            "or upgraded without them)"
        )


async def migrate(
    conn: asyncpg.Connection, config: PostgresConfig, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[str]:
    """Apply the migrations ``conn``'s database lacks; return their names.

    Runs in one transaction under ``pg_advisory_xact_lock``: concurrent callers
    serialise, and a failure leaves the schema as it was.
    """
    ledger = config.table(MIGRATIONS_TABLE)
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", config.lock_key)
        if config.schema:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{config.schema}"')
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} ("
            "name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch(f"SELECT name FROM {ledger}")}
        for migration in migrations:
            if migration.name in done:
                continue
            await conn.execute(render(migration.sql, config))
            await conn.execute(f"INSERT INTO {ledger} (name) VALUES ($1)", migration.name)
            applied_now.append(migration.name)
    return applied_now
