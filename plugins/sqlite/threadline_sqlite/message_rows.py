"""Message rows (``threadline_read_message_rows``): only the columns asked for, no model.

The statement is ``read_messages``' (:func:`threadline_sqlite.messages.read_sql`) with the
columns of the fields asked for: a fork's shared content and tool calls resolved
(:func:`threadline_sqlite.rows.shared`), metadata as stored (its JSON text), empty as
``NULL``. What a field needs decoding (``tool_calls``, ``created_at`` microseconds) is
decoded by one list comprehension made for that list of fields (cached), so a row costs a
tuple and the decoding its fields need: no :class:`~threadline.models.Message`, nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from threadline.codec import load_tool_calls
from threadline.queries import MessageRange
from threadline.storekit.message_rows import check_fields
from threadline.storekit.sync import SyncStore
from threadline_sqlite.messages import range_params, range_sql
from threadline_sqlite.rows import _load_json, from_us, shared
from threadline_sqlite.worker import connection

__all__ = ["MessageRowHooks"]

_TABLE = "entity_message"
_COLUMNS = {
    "content": shared("content", _TABLE),
    "tool_calls": shared("tool_calls", _TABLE),
    "metadata": "nullif(metadata, '{}')",
}
# How a column's value becomes the field's ({x}: the column's).
_DECODE = {
    "tool_calls": "(calls({x}) if {x} else ())",
    "created_at": "when({x})",
}


@functools.cache
def _statement(fields: tuple[str, ...], before: bool, newest_first: bool, role: bool) -> str:
    columns = ", ".join(_COLUMNS.get(f, f) for f in check_fields(fields))
    return range_sql(columns, before, newest_first, role)


@functools.cache
def _decoder(fields: tuple[str, ...]) -> Callable[[Iterable[Any]], list[Any]] | None:
    """``rows -> rows`` decoding the fields that need it (``None``: the rows as read)."""
    if not any(f in _DECODE for f in fields):
        return None
    names = [f"c{i}" for i in range(len(fields))]
    values = [_DECODE[f].format(x=name) if f in _DECODE else name for f, name in zip(fields, names)]
    tuple_of = ", ".join(values) + ("," if len(values) == 1 else "")
    source = f"lambda rows: [({tuple_of}) for ({', '.join(names)},) in rows]"
    scope = {"calls": load_tool_calls, "loads": _load_json, "when": from_us}
    # The names are checked (check_fields): no text of the caller's is in the source.
    decode: Callable[[Iterable[Any]], list[Any]] = eval(source, scope)
    return decode


class MessageRowHooks(SyncStore):
    """``read_message_rows``: a range of a session's messages as tuples of some fields."""

    def read_message_rows(
        self, tenant_id: str, session_id: str, query: MessageRange, fields: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        names = tuple(fields)
        params = range_params(session_id, tenant_id, query)
        sql = _statement(
            names, query.before_seq is not None, query.newest_first, query.role is not None
        )
        cursor = connection().execute(sql, params)
        decode = _decoder(names)
        # Decoded row by row from the cursor: the rows as read do not all live at once (half
        # the containers alive, so fewer collections by the cyclic GC during a long read).
        return cursor.fetchall() if decode is None else decode(cursor)
