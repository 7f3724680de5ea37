"""Every SQL statement the store sends, rendered once per store for its schema.

All values travel as parameters (``$1``...); the only text formatted into SQL is
the table names, which come from :class:`~threadline_postgres.config.PostgresConfig`
(a validated identifier). Parameters carry explicit casts so the server plans each
statement the same way whatever Python values arrive.

Reads of one session compare the tenant as ``(tenant_id = $2::uuid) IS TRUE``: the same
test (``tenant_id`` is never NULL), but not one an index can answer, so the planner never
ANDs the ``(tenant_id, ...)`` indexes into a read of one session. Without fresh statistics
(straight after a bulk load) it did, and read every index entry of the tenant (#14);
this way the ``(session_id, seq)`` path is the only one, whatever the statistics say.
With ``?partitions=N`` the tenant is compared plainly (``tenant_id = $2::uuid``), and the
reads that did not name it (a window's start, a chain's next link) name it too: that is
what lets the server read one partition instead of all of them.

Keys hold the tenant (``0008_tenant_keys``, :mod:`threadline_postgres.schema`); an id held
by another tenant is still refused: the writes check ``id`` alone (the leading column of
each primary key) before they insert.
"""

from __future__ import annotations

from threadline_postgres.config import PostgresConfig
from threadline_postgres.rows import (
    AGENT_COLUMNS,
    API_CALL_COLUMNS,
    CHECKPOINT_COLUMNS,
    MESSAGE_COLUMNS,
    PROVIDER_COLUMNS,
    SESSION_COLUMNS,
)
from threadline_postgres.schema import TABLES

__all__ = ["FORK_PARENT", "Statements"]

FORK_PARENT = "(metadata->'forked_from'->>'session_id')"
"""The session a session was forked from (``threadline.queries.fork_parent``), as the
``entity_session_forks`` index (migration 0011) holds it."""


# A chain's rows as CHECKPOINT_COLUMNS, but an ancestor's JSON fields are NULL (the log
# reads only its ids, record, depth and tag): the server does not print them, nor the
# client decode them. 72 rows of a 200-step loop's chain, 7 columns each.
_CHAIN_COLUMNS = ", ".join(
    f"CASE WHEN depth = 0 THEN {c} END AS {c}" if c in ("node_id", "input", "input_type",
                                                        "state", "properties") else c
    for c in CHECKPOINT_COLUMNS.split(", ")
)  # fmt: skip


def _qualified(prefix: str, columns: str) -> str:
    return ", ".join(f"{prefix}.{c}" for c in columns.split(", "))


def _prefixed(table: str, columns: str) -> str:
    """``columns`` of ``table``, each renamed ``<table>_<column>`` (a join's second model)."""
    return ", ".join(f"{table}.{c} AS {table}_{c}" for c in columns.split(", "))


_MESSAGE_INSERT_COLUMNS = (
    "id, session_id, tenant_id, seq, role, content, user_id, agent_id, tool_calls, call_ids, "
    "tool_call_id, name, status, metadata, created_at"
)


def _call_ids(calls: str) -> str:
    """The tool-call ids a message made (for the GIN index), from its ``tool_calls`` jsonb."""
    return (
        f"CASE WHEN {calls} IS NULL THEN NULL "
        f"ELSE ARRAY(SELECT jsonb_array_elements({calls}) ->> 'id') END"
    )


class Statements:
    """The store's SQL with table names resolved for one configuration."""

    def __init__(self, config: PostgresConfig) -> None:
        t = {name: config.table(name) for name in TABLES}
        self.tables: dict[str, str] = t
        """Each table's (schema-qualified) name, by its unqualified name."""
        S, M = t["entity_session"], t["entity_message"]
        MC = MESSAGE_COLUMNS  # shared fork rows are resolved after the read (forks.resolve_shared)
        A, C = t["entity_api_call"], t["entity_checkpoint"]
        P, G = t["entity_provider"], t["entity_agent"]
        # The caller's tenant in a read of one session (see the module's docstring), and
        # what a subquery that needs no tenant adds so that partitions are pruned.
        parts = bool(config.partitions)
        own = "tenant_id = $2::uuid" if parts else "(tenant_id = $2::uuid) IS TRUE"
        prune = " AND tenant_id = $2::uuid" if parts else ""
        # A chain's next link probes the whole primary key (id, tenant_id): an id alone
        # matches only its first column, which without statistics the planner costs as a
        # bitmap scan of ~19 rows per link, 190 links a chain: past jit_above_cost, so a
        # restore paid ~25 ms of JIT compilation per read (#15).
        link = "tenant_id = chain.tenant_id"

        # -- messages --------------------------------------------------------------------
        # One round trip, one implicit transaction: the session row is bumped (and locked)
        # only when the session belongs to the tenant and the id is new, so a retry leaves
        # no gap; two racing inserts of one new id fail on the primary key instead.
        self.append_one = f"""
            WITH bump AS (
                UPDATE {S} SET last_seq = last_seq + 1, updated_at = GREATEST(updated_at, now())
                WHERE id = $1::uuid AND tenant_id = $2::uuid
                  AND NOT EXISTS (SELECT 1 FROM {M} WHERE id = $3::uuid)
                RETURNING last_seq
            )
            INSERT INTO {M} ({_MESSAGE_INSERT_COLUMNS})
            SELECT $3::uuid, $1::uuid, $2::uuid, bump.last_seq, $4::text, $5::text, $6::uuid,
                   $7::uuid, $8::jsonb, {_call_ids("$8::jsonb")}, $9::text, $10::text,
                   $11::text, $12::jsonb, $13::timestamptz
            FROM bump
            RETURNING seq"""
        # "Is any of these ids stored", one primary-key probe per id (a LATERAL that cannot
        # be flattened): `id = ANY($4)` matches only the key's first column, and without
        # statistics (a bulk load before ANALYZE) the planner guessed 0.5% of the table
        # per id, 100% for 200 ids, and scanned the whole table for every batch (75 ms at
        # 200,000 messages; a load's rate fell with the table's size).
        held = (
            f"SELECT 1 FROM unnest($4::uuid[]) AS n(id), "
            f"LATERAL (SELECT 1 FROM {M} WHERE id = n.id OFFSET 0) AS hit"
        )
        self.append_many = f"""
            WITH bump AS (
                UPDATE {S} SET last_seq = last_seq + $3::bigint,
                               updated_at = GREATEST(updated_at, now())
                WHERE id = $1::uuid AND tenant_id = $2::uuid
                  AND NOT EXISTS ({held})
                RETURNING last_seq
            )
            INSERT INTO {M} ({_MESSAGE_INSERT_COLUMNS})
            SELECT u.id, $1::uuid, $2::uuid, bump.last_seq - $3::bigint + u.ord, u.role,
                   u.content, u.user_id, u.agent_id, u.tool_calls, {_call_ids("u.tool_calls")},
                   u.tool_call_id, u.name, u.status, u.metadata, u.created_at
            FROM bump, unnest($4::uuid[], $5::text[], $6::text[], $7::uuid[], $8::uuid[],
                              $9::jsonb[], $10::text[], $11::text[], $12::text[], $13::jsonb[],
                              $14::timestamptz[]) WITH ORDINALITY
                 AS u(id, role, content, user_id, agent_id, tool_calls, tool_call_id, name,
                      status, metadata, created_at, ord)
            RETURNING seq"""
        self.lock_session = (
            f"SELECT last_seq FROM {S} WHERE id = $1::uuid AND tenant_id = $2::uuid FOR UPDATE"
        )
        self.session_exists = (
            f"SELECT EXISTS (SELECT 1 FROM {S} WHERE id = $1::uuid AND tenant_id = $2::uuid)"
        )
        self.message_by_id = f"SELECT {MC} FROM {M} WHERE id = $1::uuid"
        self.messages_by_ids = f"""
            SELECT m.* FROM unnest($1::uuid[]) AS n(id),
                LATERAL (SELECT {MC} FROM {M} WHERE id = n.id OFFSET 0) AS m"""
        self.touch_session = (
            f"UPDATE {S} SET updated_at = GREATEST(updated_at, now()) "
            "WHERE id = $1::uuid AND tenant_id = $2::uuid"
        )
        # Every write that belongs to a session is activity: the statements below move its
        # updated_at forward (never back) in the same statement, locking the session row
        # first as the appends do (the message update waits for the touch it depends on).
        self.update_message = f"""
            WITH touch AS (
                UPDATE {S} SET updated_at = GREATEST(updated_at, now())
                WHERE id = (SELECT session_id FROM {M} WHERE id = $1::uuid AND tenant_id = $2::uuid)
                  AND tenant_id = $2::uuid
                RETURNING id
            )
            UPDATE {M} SET content = $3::text, tool_calls = $4::jsonb,
                           call_ids = {_call_ids("$4::jsonb")}, status = $5::text,
                           name = $6::text, metadata = $7::jsonb
            WHERE id = $1::uuid AND tenant_id = $2::uuid AND EXISTS (SELECT 1 FROM touch)
            RETURNING {MC}"""
        # The same for a batch (user_id too), from arrays; the matched ids come back.
        # Erasure redacts without touching (housekeeping, not activity).
        arrays = """
            WITH n AS (
                SELECT * FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::text[],
                                     $7::jsonb[], $8::uuid[])
                    AS n(id, content, tool_calls, status, name, metadata, user_id)
            )"""
        rewrite = f"""
            UPDATE {M} m SET content = n.content, tool_calls = n.tool_calls,
                             call_ids = {_call_ids("n.tool_calls")}, status = n.status,
                             name = n.name, metadata = n.metadata, user_id = n.user_id
            FROM n WHERE m.id = n.id AND m.tenant_id = $1::uuid"""
        self.redact_messages = f"{arrays} {rewrite} RETURNING m.id"
        touch = f"""{arrays}, touch AS (
                UPDATE {S} SET updated_at = GREATEST(updated_at, now())
                WHERE tenant_id = $1::uuid AND id IN (
                    SELECT m.session_id FROM {M} m JOIN n ON m.id = n.id
                    WHERE m.tenant_id = $1::uuid)
                RETURNING id
            ) {rewrite} AND m.session_id IN (SELECT id FROM touch)"""
        # By (activity, only_streaming): activity moves updated_at; only_streaming leaves
        # a row finished meanwhile as it is (the status is checked by the UPDATE itself).
        streaming = " AND m.status = 'streaming'"
        self.rewrite_messages = {
            (True, False): f"{touch} RETURNING m.id",
            (True, True): f"{touch}{streaming} RETURNING m.id",
            (False, False): self.redact_messages,
            (False, True): f"{arrays} {rewrite}{streaming} RETURNING m.id",
        }
        self.messages_of_tenant = (
            f"SELECT id FROM {M} WHERE id = ANY($2::uuid[]) AND tenant_id = $1::uuid"
        )
        self.delete_messages = f"""
            WITH gone AS (
                DELETE FROM {M} WHERE session_id = $1::uuid AND {own}
                  AND seq > $3::bigint RETURNING 1
            ), n AS (SELECT count(*) AS n FROM gone)
            UPDATE {S} SET deleted_seqs = deleted_seqs + n.n,
                           updated_at = GREATEST(updated_at, now())
            FROM n WHERE id = $1::uuid AND tenant_id = $2::uuid AND n.n > 0
            RETURNING n.n"""
        # Reads by seq range: $3 < seq < $4, at most $5 (NULL: all), either way, a role or all.
        self.read_messages = {
            (newest, role): f"""
                SELECT {MC} FROM {M}
                WHERE session_id = $1::uuid AND {own} AND seq > $3::bigint
                  AND seq < $4::bigint{" AND role = $6::text" if role else ""}
                ORDER BY seq{" DESC" if newest else ""} LIMIT $5::bigint"""
            for newest in (False, True)
            for role in (False, True)
        }
        # The window: the (n)th last user turn from the partial index, then the tail from
        # the (session_id, seq) index and the earlier system messages from their partial
        # index. The start seq rides along as the last column. The planner cannot see the
        # start when it plans, and would guess a third of the session and scan the table;
        # the (always true) upper bound makes it a range, estimated narrow: index scan.
        start_of = (
            f"COALESCE((SELECT seq FROM {M} WHERE session_id = $1::uuid AND role = 'user'{prune} "
            "ORDER BY seq DESC OFFSET $3::bigint LIMIT 1), 1)"
        )
        self.window = self._window(M, start_of, own)
        self.window_from = self._window(M, "$3::bigint", own)
        self.window_systems = f"""
            SELECT {MC} FROM {M}
            WHERE session_id = $1::uuid AND {own} AND role = 'system'
            ORDER BY seq"""
        # Where the window must grow back to: the round of the earliest message before it
        # that made one of the orphaned calls (GIN index on call_ids).
        self.window_callers = f"""
            SELECT COALESCE((SELECT max(u.seq) FROM {M} u
                             WHERE u.session_id = $1::uuid AND u.role = 'user'{prune}
                               AND u.seq <= c.seq), 1) AS start
            FROM (SELECT min(seq) AS seq FROM {M}
                  WHERE session_id = $1::uuid AND {own}
                    AND seq < $3::bigint
                    AND call_ids && $4::text[]) c
            WHERE c.seq IS NOT NULL"""
        self.count_messages = (
            f"SELECT last_seq - deleted_seqs AS n FROM {S} "
            "WHERE id = $1::uuid AND tenant_id = $2::uuid"
        )
        self.interrupt_streaming = f"""
            WITH touch AS (
                UPDATE {S} SET updated_at = GREATEST(updated_at, now())
                WHERE id = $1::uuid AND tenant_id = $2::uuid
                  AND EXISTS (SELECT 1 FROM {M} WHERE session_id = $1::uuid
                              AND {own} AND status = 'streaming')
                RETURNING id
            )
            UPDATE {M} SET status = 'interrupted'
            WHERE session_id = $1::uuid AND {own} AND status = 'streaming'
              AND EXISTS (SELECT 1 FROM touch)"""

        # -- sessions --------------------------------------------------------------------
        self.create_session = f"""
            INSERT INTO {S} (id, tenant_id, user_id, agent_id, title, metadata, created_at,
                             updated_at)
            SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::text, $6::jsonb,
                   $7::timestamptz, $8::timestamptz
            WHERE NOT EXISTS (SELECT 1 FROM {S} WHERE id = $1::uuid)
            ON CONFLICT DO NOTHING
            RETURNING {SESSION_COLUMNS}"""
        self.session_by_id = f"SELECT {SESSION_COLUMNS} FROM {S} WHERE id = $1::uuid"
        self.get_session = (
            f"SELECT {SESSION_COLUMNS} FROM {S} WHERE id = $1::uuid AND tenant_id = $2::uuid"
        )
        # A page of sessions: $4 user, $5 agent (each bound only when filtered on), and a
        # keyset cursor ($6, $7) as a row-value bound the (tenant_id, [user_id,] updated_at
        # DESC, id DESC) indexes answer directly, however deep the page; the forks of a
        # session (the last parameter) from entity_session_forks (migration 0011).
        self.list_sessions = {
            (user, agent, after, forks): f"""
                SELECT {SESSION_COLUMNS} FROM {S} WHERE tenant_id = $1::uuid
                  {"AND user_id = $4::uuid" if user else "AND $4::uuid IS NULL"}
                  {"AND agent_id = $5::uuid" if agent else "AND $5::uuid IS NULL"}
                  {"AND (updated_at, id) < ($6::timestamptz, $7::uuid)" if after else ""}
                  {f"AND {FORK_PARENT} = ${8 if after else 6}::text" if forks else ""}
                ORDER BY updated_at DESC, id DESC LIMIT $2::bigint OFFSET $3::bigint"""
            for user in (False, True)
            for agent in (False, True)
            for after in (False, True)
            for forks in (False, True)
        }
        self.replace_session = f"""
            UPDATE {S} SET title = $3::text, metadata = $4::jsonb, updated_at = $5::timestamptz
            WHERE id = $1::uuid AND tenant_id = $2::uuid
            RETURNING {SESSION_COLUMNS}"""
        self.delete_session = f"DELETE FROM {S} WHERE id = $1::uuid AND tenant_id = $2::uuid"
        # Erasing user $2 of tenant $1: their messages and API calls in other users'
        # sessions, read from the (tenant_id, user_id) indexes, skipping the user's own
        # sessions (a row's tenant is its session's).
        self.user_rows_elsewhere = (
            "tenant_id = $1::uuid AND user_id = $2::uuid AND session_id NOT IN "
            f"(SELECT id FROM {S} WHERE tenant_id = $1::uuid AND user_id = $2::uuid)"
        )
        self.user_messages_elsewhere = f"SELECT {MC} FROM {M} WHERE {self.user_rows_elsewhere}"
        self.user_api_calls_elsewhere = f"SELECT id FROM {A} WHERE {self.user_rows_elsewhere}"
        # The user's sessions (own) and the other sessions of the tenant whose checkpoint
        # records may hold their messages, locked in id order: checkpoint writes wait. An
        # item leaves out its user_id only after a message of the same user in the same
        # history, whose record is in the same session: such a session has a record whose
        # text holds the user id.
        self.erase_sessions = f"""
            SELECT id, user_id IS NOT DISTINCT FROM $2::uuid AS own FROM {S}
            WHERE tenant_id = $1::uuid AND id IN (
                SELECT id FROM {S} WHERE tenant_id = $1::uuid AND user_id = $2::uuid
                UNION ALL SELECT session_id FROM {C} WHERE tenant_id = $1::uuid
                  AND strpos(history_delta::text, $2::uuid::text) > 0)
            ORDER BY id FOR UPDATE"""
        in_sessions = "WHERE session_id = ANY($1::uuid[]) AND tenant_id = $2::uuid"
        self.erase_counts = f"""
            SELECT (SELECT count(*) FROM {M} {in_sessions}) AS messages,
                   (SELECT count(*) FROM {A} {in_sessions}) AS api_calls,
                   (SELECT count(*) FROM {C} {in_sessions}) AS checkpoints"""
        self.delete_sessions = (
            f"DELETE FROM {S} WHERE id = ANY($1::uuid[]) AND tenant_id = $2::uuid"
        )
        before = (
            "WHERE tenant_id = $1::uuid AND updated_at < $2::timestamptz "
            "AND ($3::uuid IS NULL OR user_id = $3::uuid)"
        )
        self.count_sessions_before = f"SELECT count(*) FROM {S} {before}"
        self.delete_sessions_before = (
            f"WITH gone AS (DELETE FROM {S} {before} RETURNING 1) SELECT count(*) FROM gone"
        )

        # -- API calls -------------------------------------------------------------------
        # The session is touched (activity) only when the tenant owns it and the id is new.
        self.save_api_call = f"""
            WITH touch AS (
                UPDATE {S} SET updated_at = GREATEST(updated_at, now())
                WHERE id = $2::uuid AND tenant_id = $3::uuid
                  AND NOT EXISTS (SELECT 1 FROM {A} WHERE id = $1::uuid)
                RETURNING id
            )
            INSERT INTO {A} ({API_CALL_COLUMNS})
            SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::uuid, $6::uuid, $7::uuid,
                   $8::text, $9::text, $10::text, $11::text, $12::bigint, $13::bigint,
                   $14::bigint, $15::float8, $16::float8, $17::float8, $18::text, $19::jsonb,
                   $20::timestamptz
            FROM touch
            ON CONFLICT DO NOTHING
            RETURNING {API_CALL_COLUMNS}"""
        self.api_call_by_id = f"SELECT {API_CALL_COLUMNS} FROM {A} WHERE id = $1::uuid"
        self.delete_api_calls = (
            f"DELETE FROM {A} WHERE id = ANY($2::uuid[]) AND tenant_id = $1::uuid RETURNING id"
        )
        self.list_api_calls = f"""
            SELECT {API_CALL_COLUMNS} FROM {A}
            WHERE session_id = $1::uuid AND (tenant_id = $2::uuid) IS TRUE
            ORDER BY created_at, id"""

        # -- checkpoints -----------------------------------------------------------------
        self.bump_version = f"""
            UPDATE {S} SET last_version = last_version + 1,
                           updated_at = GREATEST(updated_at, now())
            WHERE id = $1::uuid AND tenant_id = $2::uuid
            RETURNING last_version"""
        self.checkpoint_by_id = f"SELECT {CHECKPOINT_COLUMNS} FROM {C} WHERE id = $1::uuid"
        self.checkpoint_link = (
            f"SELECT session_id, history_tag FROM {C} WHERE id = $1::uuid AND tenant_id = $2::uuid"
        )
        self.insert_checkpoint = f"""
            INSERT INTO {C} (id, session_id, tenant_id, agent_id, version, parent_id, node_id,
                             input, input_type, state, properties, tombstone, created_at,
                             history_base, history_delta, chain_depth, history_tag)
            VALUES ($1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::bigint, $6::uuid, $7::text,
                    $8::jsonb, $9::text, $10::jsonb, $11::jsonb, $12::boolean,
                    $13::timestamptz, $14::uuid, $15::jsonb, $16::integer, $17::bigint)"""
        # A record and its chain back to its snapshot (history_base links), in one query.
        self.checkpoint_chain = f"""
            WITH RECURSIVE chain AS (
                SELECT {CHECKPOINT_COLUMNS}, 0 AS depth FROM {C}
                WHERE id = $1::uuid AND tenant_id = $2::uuid
                UNION ALL
                SELECT {_qualified("b", CHECKPOINT_COLUMNS)}, chain.depth + 1
                FROM chain JOIN LATERAL (
                    SELECT * FROM {C} WHERE id = chain.history_base
                      AND {link} LIMIT 1) b ON true
            )
            SELECT {_CHAIN_COLUMNS} FROM chain ORDER BY depth"""
        # The newest record of a session (of an agent) and its chain: a restore in one query.
        # The head is found by walking the (session_id, version, tenant_id) key down from
        # the newest version, one backward probe per record, until one matches (the tenant
        # is the session's, so a wrong tenant stops at the first): `ORDER BY version DESC
        # LIMIT 1` with the tenant and agent tests, which without statistics the planner
        # reads as ~1 row, was a bitmap scan and sort of every record of the session, a
        # cost that grew with the history (1000 rows at step 200 of a LangGraph loop, #15).
        self.latest_chain = f"""
            WITH RECURSIVE walk AS (
                (SELECT id, version, tenant_id, agent_id FROM {C}
                 WHERE session_id = $1::uuid{prune} ORDER BY version DESC LIMIT 1)
                UNION ALL
                SELECT n.id, n.version, n.tenant_id, n.agent_id
                FROM walk w CROSS JOIN LATERAL (
                    SELECT id, version, tenant_id, agent_id FROM {C}
                    WHERE session_id = $1::uuid AND version < w.version{prune}
                    ORDER BY version DESC LIMIT 1) n
                WHERE (w.tenant_id = $2::uuid) IS TRUE
                  AND $3::uuid IS NOT NULL AND w.agent_id IS DISTINCT FROM $3::uuid
            ), chain AS (
                SELECT {CHECKPOINT_COLUMNS}, 0 AS depth FROM {C}
                WHERE id = (SELECT id FROM walk
                            WHERE (tenant_id = $2::uuid) IS TRUE
                              AND ($3::uuid IS NULL OR agent_id = $3::uuid)
                            LIMIT 1) AND tenant_id = $2::uuid
                UNION ALL
                SELECT {_qualified("b", CHECKPOINT_COLUMNS)}, chain.depth + 1
                FROM chain JOIN LATERAL (
                    SELECT * FROM {C} WHERE id = chain.history_base
                      AND {link} LIMIT 1) b ON true
            )
            SELECT {_CHAIN_COLUMNS} FROM chain ORDER BY depth"""
        self.session_tags = (
            f"SELECT id, history_tag FROM {C} WHERE session_id = $1::uuid AND tenant_id = $2::uuid"
        )
        self.checkpoint_record = (
            f"SELECT {CHECKPOINT_COLUMNS} FROM {C} WHERE id = $1::uuid AND tenant_id = $2::uuid"
        )
        session_records = f"""
            SELECT {CHECKPOINT_COLUMNS} FROM {C}
            WHERE session_id = $1::uuid AND {own}
              AND ($3::uuid IS NULL OR agent_id = $3::uuid)"""
        self.session_records = f"{session_records} ORDER BY version"
        self.latest_record = f"{session_records} ORDER BY version DESC LIMIT 1"
        self.tenant_records = f"""
            SELECT {_qualified("c", CHECKPOINT_COLUMNS)}
            FROM {C} c JOIN {S} s ON s.id = c.session_id AND s.tenant_id = c.tenant_id
            WHERE c.tenant_id = $1::uuid AND ($2::uuid IS NULL OR c.agent_id = $2::uuid)
            ORDER BY s.created_at, c.session_id, c.version"""
        # A rewritten snapshot (depth 0) drops its base; a delta keeps it (erasure).
        self.rewrite_record = f"""
            UPDATE {C} SET history_delta = $3::jsonb, chain_depth = $4::integer,
                           history_tag = $5::bigint,
                           history_base = CASE WHEN $4::integer = 0 THEN NULL ELSE history_base END
            WHERE id = $1::uuid AND session_id = $2::uuid AND tenant_id = $6::uuid"""
        self.delete_records = (
            f"DELETE FROM {C} WHERE id = ANY($2::uuid[]) AND session_id = $1::uuid "
            "AND tenant_id = $3::uuid RETURNING id"
        )

        # -- agent configs ---------------------------------------------------------------
        self.upsert_provider = f"""
            INSERT INTO {P} AS t ({PROVIDER_COLUMNS})
            VALUES ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::text, $7::boolean,
                    $8::jsonb, $9::timestamptz, $10::timestamptz)
            ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, type = EXCLUDED.type, api_base = EXCLUDED.api_base,
                api_key_ref = EXCLUDED.api_key_ref, enabled = EXCLUDED.enabled,
                metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at,
                updated_at = EXCLUDED.updated_at
            WHERE t.tenant_id = EXCLUDED.tenant_id
            RETURNING {PROVIDER_COLUMNS}"""
        self.upsert_agent = f"""
            INSERT INTO {G} AS t ({AGENT_COLUMNS})
            VALUES ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::text, $7::float8,
                    $8::bigint, $9::bigint, $10::jsonb, $11::jsonb, $12::uuid, $13::boolean,
                    $14::bigint, $15::timestamptz, $16::timestamptz)
            ON CONFLICT (id) DO UPDATE SET
                code = EXCLUDED.code, name = EXCLUDED.name,
                system_prompt = EXCLUDED.system_prompt, model = EXCLUDED.model,
                temperature = EXCLUDED.temperature, max_tokens = EXCLUDED.max_tokens,
                window_rounds = EXCLUDED.window_rounds,
                response_format = EXCLUDED.response_format,
                custom_params = EXCLUDED.custom_params, provider_id = EXCLUDED.provider_id,
                enabled = EXCLUDED.enabled, version = EXCLUDED.version,
                created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
            WHERE t.tenant_id = EXCLUDED.tenant_id
            RETURNING {AGENT_COLUMNS}"""
        configs = f"""
            SELECT {_qualified("a", AGENT_COLUMNS)}, {_prefixed("p", PROVIDER_COLUMNS)}
            FROM {G} a LEFT JOIN {P} p ON p.id = a.provider_id AND p.tenant_id = a.tenant_id
            WHERE a.tenant_id = $1::uuid"""
        self.config_by_code = f"{configs} AND a.code = $2::text"
        self.config_by_id = f"{configs} AND a.id = $2::uuid"
        self.list_configs = f"{configs} ORDER BY a.code"
        self.list_providers = f"""
            SELECT {PROVIDER_COLUMNS} FROM {P} WHERE tenant_id = $1::uuid ORDER BY name, id"""
        self.list_tenants = f"""
            SELECT tenant_id FROM {S} UNION SELECT tenant_id FROM {G}
            UNION SELECT tenant_id FROM {P}"""

    @staticmethod
    def _window(table: str, start: str, own: str) -> str:
        return f"""
            WITH w AS MATERIALIZED (SELECT {start} AS start)
            SELECT {MESSAGE_COLUMNS}, (SELECT start FROM w) AS start FROM {table}
            WHERE session_id = $1::uuid AND {own}
              AND seq >= (SELECT start FROM w) AND seq <= 9223372036854775807
            UNION ALL
            SELECT {MESSAGE_COLUMNS}, (SELECT start FROM w) AS start FROM {table}
            WHERE session_id = $1::uuid AND {own} AND role = 'system'
              AND seq < (SELECT start FROM w)
            ORDER BY seq"""
