"""The usage rollup of migration ``0010_usage_rollup``: sums kept by triggers on write.

Every insert, delete and update of an ``entity_api_call`` row adds itself to (or takes
itself from) two tables, in the statement's own transaction, so the rollup cannot drift
from the calls whichever path writes them (``save_api_call``, ``delete_api_calls``,
deleting a session, erasure, retention, a bulk load by hand):

* ``usage_rollup``: per ``(tenant_id, dim, day, key, model)`` the calls per status and
  the token sums, where ``day`` is the UTC day (days since 1970-01-01) and ``dim``/``key``
  is ``'m'``/``''`` (every call; grouped by model or day), ``'a'``/agent id, ``'u'``/user
  id or ``'s'``/session id (``''`` for a call with no agent or user); the same dims in
  capitals (day 0) sum the whole history, so a report over everything reads one row per
  group and model, however many days the calls span;
* ``usage_histogram``: per ``(tenant_id, dim, day, key, metric, bucket)`` how many calls
  had a latency (``metric`` 0) or time to first token (1) in each log bucket of
  :data:`threadline.usage.BUCKET_BOUNDS` (``key`` is the model for ``dim`` ``'m'``), the
  bucket found in ``usage_bucket`` (the bounds, so no SQL math functions are needed).

A deletion removes the rows no call counts in any more (erasure leaves no key behind).
This is the SQL of an applied migration: it is never edited, a change is a new migration.
"""

from __future__ import annotations

import sqlite3

from threadline.usage import BUCKET_BOUNDS

__all__ = ["STATUS_COLUMNS", "create_rollup"]

STATUS_COLUMNS = ("cancelled", "failed", "rate_limited", "success", "timeout")
DAY_US = 86_400_000_000

_TABLES = f"""
CREATE TABLE usage_rollup (
    tenant_id TEXT NOT NULL, dim TEXT NOT NULL, day INTEGER NOT NULL, key TEXT NOT NULL,
    model TEXT NOT NULL,
    {", ".join(f"{s} INTEGER NOT NULL" for s in STATUS_COLUMNS)},
    prompt INTEGER NOT NULL, completion INTEGER NOT NULL, total INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, dim, day, key, model)
) WITHOUT ROWID;
CREATE TABLE usage_histogram (
    tenant_id TEXT NOT NULL, dim TEXT NOT NULL, day INTEGER NOT NULL, key TEXT NOT NULL,
    metric INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, dim, day, key, metric, bucket)
) WITHOUT ROWID;
CREATE TABLE usage_bucket (lo REAL PRIMARY KEY, b INTEGER NOT NULL) WITHOUT ROWID;
"""


_BUCKET = "coalesce((SELECT b FROM usage_bucket WHERE lo <= {value} ORDER BY lo DESC LIMIT 1), 0)"


def _day(r: str) -> str:
    return f"({r}.created_at / {DAY_US} - ({r}.created_at % {DAY_US} < 0))"


def _keys(r: str, model_key: bool) -> list[tuple[str, str]]:
    """``(dim, key)`` of the day level; the whole-history level is the same dim in capitals."""
    return [("m", f"{r}.model" if model_key else "''"), ("a", f"coalesce({r}.agent_id, '')"),
            ("u", f"coalesce({r}.user_id, '')"), ("s", f"{r}.session_id")]  # fmt: skip


def _dims(r: str, model_key: bool) -> str:
    """The rows ``(dim, day, key)`` a call counts in: each group of its day, and of all time
    (day 0)."""
    (d, k), *rest = _keys(r, model_key)
    rows = [f"SELECT '{d}' AS dim, {_day(r)} AS day, {k} AS key"]
    for d, k in rest:
        rows.append(f"SELECT '{d}', {_day(r)}, {k}")
    rows.extend(f"SELECT '{d.upper()}', 0, {k}" for d, k in _keys(r, model_key))
    return "(" + " UNION ALL ".join(rows) + ")"


def _add(r: str, sign: str) -> str:
    """The two upserts adding row ``r`` (``NEW``/``OLD``) times ``sign`` to the rollup."""
    prompt, completion = f"coalesce({r}.prompt_tokens, 0)", f"coalesce({r}.completion_tokens, 0)"
    counts = ", ".join(f"{sign} * ({r}.status = '{s}')" for s in STATUS_COLUMNS)
    sums = ", ".join(f"{c} = {c} + excluded.{c}" for c in (*STATUS_COLUMNS, "prompt",
                                                             "completion", "total"))  # fmt: skip
    bucket = (
        "coalesce((SELECT b FROM usage_bucket WHERE lo <= v.value ORDER BY lo DESC LIMIT 1), 0)"
    )
    return f"""
    INSERT INTO usage_rollup (tenant_id, dim, day, key, model, {", ".join(STATUS_COLUMNS)},
                              prompt, completion, total)
    SELECT {r}.tenant_id, d.dim, d.day, d.key, {r}.model, {counts},
           {sign} * {prompt}, {sign} * {completion},
           {sign} * coalesce({r}.total_tokens, {prompt} + {completion})
    FROM {_dims(r, False)} AS d WHERE 1
    ON CONFLICT DO UPDATE SET {sums};
    INSERT INTO usage_histogram (tenant_id, dim, day, key, metric, bucket, n)
    SELECT {r}.tenant_id, d.dim, d.day, d.key, v.metric, {bucket}, {sign}
    FROM {_dims(r, True)} AS d,
         (SELECT 0 AS metric, {r}.latency_ms AS value
          UNION ALL SELECT 1, {r}.time_to_first_token_ms) AS v
    WHERE v.value IS NOT NULL
    ON CONFLICT DO UPDATE SET n = n + excluded.n;
"""


def _drop_empty(r: str) -> str:
    """Delete the rollup rows of call ``r`` that no call counts in any more: a deleted or
    erased call leaves no row keyed by its user, agent or session behind."""
    empty = " AND ".join(f"{c} = 0" for c in STATUS_COLUMNS)
    return f"""
    DELETE FROM usage_rollup WHERE tenant_id = {r}.tenant_id AND model = {r}.model
      AND (dim, day, key) IN (SELECT dim, day, key FROM {_dims(r, False)}) AND {empty};
    DELETE FROM usage_histogram WHERE tenant_id = {r}.tenant_id AND n = 0
      AND (dim, day, key) IN (SELECT dim, day, key FROM {_dims(r, True)});
"""


_WATCHED = (
    "tenant_id, session_id, user_id, agent_id, model, status, prompt_tokens, "
    "completion_tokens, total_tokens, latency_ms, time_to_first_token_ms, created_at"
)
_TRIGGERS = f"""
CREATE TRIGGER usage_rollup_insert AFTER INSERT ON entity_api_call BEGIN
{_add("NEW", "1")}
END;
CREATE TRIGGER usage_rollup_delete AFTER DELETE ON entity_api_call BEGIN
{_add("OLD", "-1")}
{_drop_empty("OLD")}
END;
CREATE TRIGGER usage_rollup_update AFTER UPDATE OF {_WATCHED} ON entity_api_call BEGIN
{_add("OLD", "-1")}
{_add("NEW", "1")}
{_drop_empty("OLD")}
END;
"""


def _backfill() -> list[str]:
    """Statements filling the rollup from the calls already stored: each call's day, keys
    and buckets once into a scratch table, then one grouped insert per level and dim."""
    p, c = "coalesce(prompt_tokens, 0)", "coalesce(completion_tokens, 0)"
    out = [
        "CREATE TEMP TABLE usage_fill AS SELECT tenant_id AS t, "
        f"{_day('entity_api_call')} AS day, model, model AS mk, '' AS mn, "
        "coalesce(agent_id, '') AS ak, coalesce(user_id, '') AS uk, session_id AS sk, status, "
        f"{p} AS p, {c} AS c, coalesce(total_tokens, {p} + {c}) AS tot, "
        f"CASE WHEN latency_ms IS NOT NULL THEN {_BUCKET.format(value='latency_ms')} END AS b0, "
        "CASE WHEN time_to_first_token_ms IS NOT NULL THEN "
        f"{_BUCKET.format(value='time_to_first_token_ms')} END AS b1 FROM entity_api_call"
    ]
    counts = ", ".join(f"sum(status = '{s}')" for s in STATUS_COLUMNS)
    for dim, key, hist_key in (("m", "mn", "mk"), ("a", "ak", "ak"), ("u", "uk", "uk"),
                               ("s", "sk", "sk")):  # fmt: skip
        for level, day in ((dim, "day"), (dim.upper(), "0")):
            by = "t, day" if day == "day" else "t"  # (a constant would be a column number)
            out.append(
                f"INSERT INTO usage_rollup SELECT t, '{level}', {day}, {key}, model, {counts}, "
                f"sum(p), sum(c), sum(tot) FROM usage_fill GROUP BY {by}, {key}, model"
            )
            for metric in (0, 1):
                out.append(
                    f"INSERT INTO usage_histogram SELECT t, '{level}', {day}, {hist_key}, "
                    f"{metric}, b{metric}, count(*) FROM usage_fill WHERE b{metric} IS NOT NULL "
                    f"GROUP BY {by}, {hist_key}, b{metric}"
                )
    out.append("DROP TABLE temp.usage_fill")
    return out


def create_rollup(db: sqlite3.Connection) -> None:
    """Create the rollup tables and triggers and fill them from the stored calls."""
    for statement in _TABLES.split(";"):
        if statement.strip():
            db.execute(statement)
    db.executemany(
        "INSERT INTO usage_bucket (lo, b) VALUES (?, ?)",
        [(lo, k) for k, lo in enumerate(BUCKET_BOUNDS, start=1)],
    )
    for statement in _backfill():
        db.execute(statement)
    for trigger in _TRIGGERS.split("END;"):
        if trigger.strip():
            db.execute(trigger + "END;")
