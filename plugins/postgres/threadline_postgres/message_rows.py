"""Message rows (``threadline_read_message_rows``): only the columns asked for, no model.

The statement is ``read_messages``' (the ``(session_id, seq)`` index, either way, a role or
all) with the columns of the fields asked for; each row becomes a tuple through one list
comprehension made for that list of fields (cached): the escaped text decoded only where it
holds the escape mark, ``jsonb`` as its text (metadata without the fork's
:data:`~threadline_postgres.rows.SHARED_KEY`, empty as ``None``; decoded and written again
only when a string in it holds the escape mark), no
:class:`~threadline.models.Message` built. A fork's shared rows are resolved as
:func:`~threadline_postgres.forks.resolve_shared` resolves them: one more query by id (per
hop) only when a row read shares, found by one more column (``shared_from``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from threadline.codec import dump_json
from threadline.hookspecs import hookimpl
from threadline.queries import MessageRange
from threadline.storekit.message_rows import check_fields
from threadline_postgres.codec import decode_text, load_jsonb
from threadline_postgres.forks import shared_statement
from threadline_postgres.rows import SHARED_KEY, _tool_calls, moment

if TYPE_CHECKING:
    from threadline_postgres.pool import PooledStore

    _Base = PooledStore
else:
    _Base = object

__all__ = ["MessageRows"]

_LAST_SEQ = 2**63 - 1  # above every seq: no upper bound
_HOPS = 8  # as forks.resolve_shared: rows a pointer may lead through
_COLUMNS = {"metadata": f"nullif(metadata - '{SHARED_KEY}', '{{}}'::jsonb)"}
_SHARED_FROM = f"CASE WHEN content = '' THEN metadata->>'{SHARED_KEY}' END"
# How a column's value becomes the field's ({x}: the column's).
_DECODE = {
    "content": '(dec({x}) if "\\x01" in {x} else {x})',
    "tool_call_id": "(None if {x} is None else dec({x}))",
    "name": "(None if {x} is None else dec({x}))",
    "tool_calls": "(() if {x} is None else calls({x}))",
    "metadata": "(None if {x} is None else {x} if mark not in {x} else text({x}))",
    "created_at": "({x} if {x}.tzinfo is not None else moment({x}))",
}
_SHARES = ("content", "tool_calls")


@functools.cache
def _statement(
    table: str, partitions: bool, fields: tuple[str, ...], newest_first: bool, role: bool
) -> str:
    columns = [_COLUMNS.get(f, f) for f in check_fields(fields)]
    if any(f in _SHARES for f in fields):
        columns.append(_SHARED_FROM)
    own = "tenant_id = $2::uuid" if partitions else "(tenant_id = $2::uuid) IS TRUE"
    return (
        f"SELECT {', '.join(columns)} FROM {table} "
        f"WHERE session_id = $1::uuid AND {own} AND seq > $3::bigint AND seq < $4::bigint"
        + (" AND role = $6::text" if role else "")
        + (" ORDER BY seq DESC" if newest_first else " ORDER BY seq")
        + " LIMIT $5::bigint"
    )


def _json_text(value: str) -> str:
    """Plain JSON text of a ``jsonb`` value whose strings hold the codec's escape marks."""
    return dump_json(load_jsonb(value), "metadata")


@functools.cache
def _decoder(fields: tuple[str, ...]) -> Callable[[Sequence[Any]], list[tuple[Any, ...]]]:
    """``rows -> tuples`` of ``fields`` (a trailing ``shared_from`` column dropped)."""
    names = [f"c{i}" for i in range(len(fields))]
    values = [_DECODE[f].format(x=n) if f in _DECODE else n for f, n in zip(fields, names)]
    if any(f in _SHARES for f in fields):
        names.append("_shared")
    tuple_of = ", ".join(values) + ("," if len(values) == 1 else "")
    source = f"lambda rows: [({tuple_of}) for ({', '.join(names)},) in rows]"
    scope = {
        "dec": decode_text,
        "calls": _tool_calls,
        "text": _json_text,
        "mark": "\\u0001",
        "moment": moment,
    }
    # The names are checked (check_fields): no text of the caller's is in the source.
    decode: Callable[[Sequence[Any]], list[tuple[Any, ...]]] = eval(source, scope)
    return decode


class MessageRows(_Base):
    """``threadline_read_message_rows`` on PostgreSQL."""

    @hookimpl
    async def threadline_read_message_rows(
        self, tenant_id: str, session_id: str, query: MessageRange, fields: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """A seq range of a session as tuples of ``fields``, shared rows resolved."""
        names = tuple(fields)
        table = self.sql.tables["entity_message"]
        statement = _statement(
            table, bool(self.config.partitions), names, query.newest_first, query.role is not None
        )
        before = _LAST_SEQ if query.before_seq is None else query.before_seq
        args: list[Any] = [session_id, tenant_id, query.after_seq, before, query.limit]
        if query.role is not None:
            args.append(query.role)
        rows: list[Any] = await self._fetch("read_message_rows", statement, *args)
        if any(f in _SHARES for f in names) and any(r[-1] is not None for r in rows):
            rows = await self._resolved(tenant_id, table, names, rows)
        return _decoder(names)(rows)

    async def _resolved(
        self, tenant_id: str, table: str, names: tuple[str, ...], rows: list[Any]
    ) -> list[Any]:
        """``rows`` with the shared ones' content and tool calls read from the rows they
        name (a row that names a row gone keeps its own)."""
        rows = list(rows)
        at = {f: names.index(f) for f in _SHARES if f in names}
        pending = {i: str(r[-1]) for i, r in enumerate(rows) if r[-1] is not None}
        for _ in range(_HOPS):
            if not pending:
                break
            found = {
                str(r["id"]): r
                for r in await self._fetch(
                    "read_message_rows", shared_statement(table), tenant_id,
                    list(set(pending.values())),
                )
            }  # fmt: skip
            later: dict[int, str] = {}
            for i, holder in pending.items():
                row = found.get(holder)
                if row is None:
                    continue
                if row["shared_from"] is not None:  # the holder shares too: one more hop
                    later[i] = str(row["shared_from"])
                    continue
                values = list(rows[i])
                for field, column in at.items():
                    values[column] = row[field]
                rows[i] = values
            pending = later
        return rows
