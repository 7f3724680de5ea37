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
"""

from __future__ import annotations

import asyncpg
import attrs

from threadline_postgres.config import PostgresConfig

__all__ = ["MIGRATIONS", "Migration", "migrate"]

MIGRATIONS_TABLE = "threadline_migrations"


@attrs.frozen
class Migration:
    """One schema change: applied once, recorded by ``name``."""

    name: str
    sql: str


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

MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial_schema", _INITIAL),
    Migration("0002_incremental_checkpoints", _INCREMENTAL_CHECKPOINTS),
    Migration("0003_prunable_checkpoints", _PRUNABLE_CHECKPOINTS),
    Migration("0004_message_user_index", _MESSAGE_USER),
    Migration("0005_api_call_user_index", _API_CALL_USER),
    Migration("0006_deleted_seqs", _DELETED_SEQS),
    Migration("0007_api_call_usage_index", _API_CALL_USAGE),
    Migration("0011_session_forks", _SESSION_FORKS),
)
"""Every migration, in the order they apply. Append only; never edit an applied one."""

TABLES = (
    "entity_provider",
    "entity_agent",
    "entity_session",
    "entity_message",
    "entity_api_call",
    "entity_checkpoint",
)


def render(sql: str, config: PostgresConfig) -> str:
    """``sql`` with ``{entity_*}`` replaced by the (schema-qualified) table names."""
    return sql.format(**{name: config.table(name) for name in TABLES})


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
