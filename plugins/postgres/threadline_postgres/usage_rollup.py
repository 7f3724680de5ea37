"""The usage rollup of migration ``0010_usage_rollup``: sums kept by triggers on write.

Statement-level triggers on ``entity_api_call`` (with transition tables, so a ``COPY`` or
a cascade deleting a session's calls is one grouped upsert, not one per row) add every
inserted row to, and take every deleted row from, two tables in the statement's own
transaction, whichever path writes (``save_api_call``, deleting sessions, erasure,
retention, a bulk load by hand), so the rollup cannot drift from the calls:

* ``usage_rollup``: per ``(tenant_id, dim, day, key, model)`` the calls per status and
  token sums; ``day`` is the UTC date, ``dim``/``key`` is ``'m'``/``''`` (every call;
  grouped by model or day), ``'a'``/agent id, ``'u'``/user id or ``'s'``/session id
  (``''`` for a call without agent or user); the same dims in capitals (day 1970-01-01)
  sum the whole history, so a report over everything reads one row per group and model;
* ``usage_histogram``: per ``(tenant_id, dim, day, key, metric, bucket)`` the calls whose
  latency (``metric`` 0) or time to first token (1) fell in each log bucket of
  :data:`threadline.usage.BUCKET_BOUNDS` (``width_bucket``; ``key`` is the model for
  ``'m'``).

The histogram's key includes its count, so a report reads it by an index-only scan (its
rows are updated in place, scattered over the heap; an update is then not HOT). The
upserts take rows in key order, so concurrent writers queue rather than deadlock; the
calls of one tenant, day and model share the ``'m'`` row (a write waits for the commit of
another one on it). A deleted call's rows go when no call counts in them (erasure
leaves no key behind). This is the SQL of an applied migration: never edited, a change
is a new migration.
"""

from __future__ import annotations

from threadline.usage import BUCKET_BOUNDS

__all__ = ["ROLLUP", "STATUS_COLUMNS"]

STATUS_COLUMNS = ("cancelled", "failed", "rate_limited", "success", "timeout")
_SUMS = ("prompt", "completion", "total")
_BOUNDS = "ARRAY[" + ", ".join(repr(b) for b in BUCKET_BOUNDS) + "]::float8[]"
_DAY = "(c.created_at AT TIME ZONE 'UTC')::date"


_KEYS = ("{first}", "coalesce(c.agent_id::text, '')", "coalesce(c.user_id::text, '')",
         "c.session_id::text")  # fmt: skip
_LEVELS = [(dim, _DAY) for dim in "maus"] + [(dim, "DATE '1970-01-01'") for dim in "MAUS"]
_DIMS = (
    "(VALUES "
    + ", ".join(f"('{dim}', {day}, {_KEYS[i % 4]})" for i, (dim, day) in enumerate(_LEVELS))
    + ") AS d(dim, day, k)"
)
"""The rows ``(dim, day, k)`` a call ``c`` counts in (``{first}``: the key of dim m)."""


def _drop_empty(rows: str) -> str:
    """Delete the rollup rows of the calls of ``rows`` that no call counts in any more: a
    deleted or erased call leaves no row keyed by its user, agent or session behind."""
    empty = " AND ".join(f"r.{c} = 0" for c in STATUS_COLUMNS)
    return f"""
    DELETE FROM {{usage_rollup}} r
    USING (SELECT DISTINCT c.tenant_id, d.dim, d.day, d.k COLLATE "C" AS k,
                  c.model COLLATE "C" AS model
           FROM {rows} c CROSS JOIN LATERAL {_DIMS.format(first="''")}) x
    WHERE r.tenant_id = x.tenant_id AND r.dim = x.dim AND r.day = x.day AND r.key = x.k
      AND r.model = x.model AND {empty};
    DELETE FROM {{usage_histogram}} r
    USING (SELECT DISTINCT c.tenant_id, d.dim, d.day, d.k COLLATE "C" AS k
           FROM {rows} c CROSS JOIN LATERAL {_DIMS.format(first="c.model")}) x
    WHERE r.tenant_id = x.tenant_id AND r.dim = x.dim AND r.day = x.day AND r.key = x.k
      AND r.n = 0;
"""


def _add(rows: str, sign: int, order: bool = True) -> str:
    """The two upserts adding the calls of relation ``rows`` times ``sign`` (``order``: in
    key order, so concurrent writers lock rollup rows in the same order)."""
    by5 = "ORDER BY 1, 2, 3, 4, 5" if order else ""
    by6 = "ORDER BY 1, 2, 3, 4, 5, 6" if order else ""
    prompt, completion = "coalesce(c.prompt_tokens, 0)", "coalesce(c.completion_tokens, 0)"
    counts = ", ".join(f"{sign} * count(*) FILTER (WHERE c.status = '{s}')" for s in STATUS_COLUMNS)
    update = ", ".join(f"{c} = r.{c} + EXCLUDED.{c}" for c in (*STATUS_COLUMNS, *_SUMS))
    dims = _DIMS
    return f"""
    INSERT INTO {{usage_rollup}} AS r (tenant_id, dim, day, key, model,
        {", ".join(STATUS_COLUMNS)}, {", ".join(_SUMS)})
    SELECT c.tenant_id, d.dim, d.day, d.k COLLATE "C", c.model COLLATE "C", {counts},
           {sign} * sum({prompt}), {sign} * sum({completion}),
           {sign} * sum(coalesce(c.total_tokens, {prompt} + {completion}))
    FROM {rows} c CROSS JOIN LATERAL {dims.format(first="''")}
    GROUP BY 1, 2, 3, 4, 5 {by5}
    ON CONFLICT (tenant_id, dim, day, key, model) DO UPDATE SET {update};
    INSERT INTO {{usage_histogram}} AS r (tenant_id, dim, day, key, metric, bucket, n)
    SELECT c.tenant_id, d.dim, d.day, d.k COLLATE "C", v.metric, {{usage_rollup}}_bucket(v.value),
           {sign} * count(*)
    FROM {rows} c CROSS JOIN LATERAL {dims.format(first="c.model")}
    CROSS JOIN LATERAL (VALUES (0::smallint, c.latency_ms),
                               (1::smallint, c.time_to_first_token_ms)) AS v(metric, value)
    WHERE v.value IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6 {by6}
    ON CONFLICT (tenant_id, dim, day, key, metric, bucket) DO UPDATE SET n = r.n + EXCLUDED.n;
"""


def _function(name: str, body: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {{usage_rollup}}_{name}() RETURNS trigger "
        f"LANGUAGE plpgsql AS $fn$\nBEGIN\n{body}\nRETURN NULL;\nEND\n$fn$;\n"
    )


ROLLUP = f"""
LOCK TABLE {{entity_api_call}} IN SHARE MODE;
CREATE TABLE IF NOT EXISTS {{usage_rollup}} (
    tenant_id uuid NOT NULL, dim "char" NOT NULL, day date NOT NULL,
    key text COLLATE "C" NOT NULL, model text COLLATE "C" NOT NULL,
    {", ".join(f"{s} bigint NOT NULL" for s in (*STATUS_COLUMNS, *_SUMS))},
    PRIMARY KEY (tenant_id, dim, day, key, model)
);
CREATE TABLE IF NOT EXISTS {{usage_histogram}} (
    tenant_id uuid NOT NULL, dim "char" NOT NULL, day date NOT NULL,
    key text COLLATE "C" NOT NULL, metric smallint NOT NULL, bucket integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (tenant_id, dim, day, key, metric, bucket) INCLUDE (n)
);
DELETE FROM {{usage_rollup}};
DELETE FROM {{usage_histogram}};
CREATE OR REPLACE FUNCTION {{usage_rollup}}_bucket(value float8) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$ SELECT width_bucket(value, {_BOUNDS}) $fn$;
SET LOCAL work_mem = '256MB';
{_add("{entity_api_call}", 1, order=False)}
{_function("insert", _add("new_rows", 1))}
{_function("delete", _add("old_rows", -1) + _drop_empty("old_rows"))}
{_function("update", _add("old_rows", -1) + _add("new_rows", 1) + _drop_empty("old_rows"))}
DROP TRIGGER IF EXISTS usage_rollup_insert ON {{entity_api_call}};
CREATE TRIGGER usage_rollup_insert AFTER INSERT ON {{entity_api_call}}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION {{usage_rollup}}_insert();
DROP TRIGGER IF EXISTS usage_rollup_delete ON {{entity_api_call}};
CREATE TRIGGER usage_rollup_delete AFTER DELETE ON {{entity_api_call}}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION {{usage_rollup}}_delete();
DROP TRIGGER IF EXISTS usage_rollup_update ON {{entity_api_call}};
CREATE TRIGGER usage_rollup_update AFTER UPDATE ON {{entity_api_call}}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION {{usage_rollup}}_update();
"""
"""Migration 0010's SQL (``{entity_api_call}``, ``{usage_rollup}``, ``{usage_histogram}``
rendered by :func:`threadline_postgres.schema.render`): the tables, the back-fill from the
stored calls (under a lock that holds writers of calls until the triggers are in place)
and the triggers. Running it again rebuilds the rollup from the calls."""
