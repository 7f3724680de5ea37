"""Session hooks: create, read, list, replace and delete a session row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    from threadline.models import Session
    from threadline.queries import SessionQuery


@hookspec
def threadline_create_session(session: Session) -> Session | None:
    """Create a session. A session with the same id and tenant already stored is not an error.

    Tier: required.

    :param session: the session to store; its ``id`` is client-generated.
    :return: the stored session.
    :raises ConflictError: another tenant's session holds the id, with the neutral
        message of every id conflict (``"session id ... cannot be used here: use a new
        id"``), never naming the holder.
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_get_session(tenant_id: str, session_id: str) -> Session | None:
    """Read one session.

    Tier: required.

    :param tenant_id: the caller's tenant.
    :param session_id: the session to read.
    :return: the session, or ``None`` if it does not exist for this tenant.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_list_sessions(tenant_id: str, query: SessionQuery) -> Sequence[Session] | None:
    """List a tenant's sessions, most recently updated first, ties by ``id`` descending.

    Tier: required.

    The order is total (``updated_at`` descending, then ``id`` descending), so pages
    neither repeat nor skip a session whose ``updated_at`` equals another's (copies and
    imports set many alike). Keyset paging: with ``query.after`` only the sessions
    strictly after that cursor in this order come (``(updated_at, id) < (cursor's)``),
    so a page read after concurrent inserts still continues where the last one ended;
    a SQL store answers it from an index on ``(tenant_id, updated_at, id)`` without
    reading the sessions before the cursor. ``query.offset`` then skips that many more.
    ``query.forked_from`` keeps only the forks of that session: the sessions whose
    ``metadata["forked_from"]["session_id"]`` equals it
    (:func:`threadline.queries.fork_parent`), answered from an index (SQLite and
    PostgreSQL: a partial expression index; it is how ``Store.list_branches`` reads).

    :param tenant_id: the caller's tenant.
    :param query: a validated :class:`threadline.queries.SessionQuery`: ``user_id`` and
        ``agent_id`` filters (``None``: all), ``forked_from`` (a session id or ``None``),
        ``limit``, ``offset`` and ``after`` (a :class:`~threadline.queries.SessionCursor`
        or ``None``).
        :meth:`~threadline.queries.SessionQuery.page` does it all over a list.
    :return: the sessions, newest ``updated_at`` first, then highest ``id`` first
        (nothing of another tenant, whatever the cursor).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_replace_session(session: Session) -> Session | None:
    """Store a session's ``title``, ``metadata`` and ``updated_at`` exactly as given.

    Tier: required. The derived ``update_session`` and ``set_session_updated_at`` are
    built on it; the other fields stay as stored.

    :param session: the session with its new values; matched by id and tenant.
    :return: the stored session.
    :raises NotFoundError: no such session for this tenant.
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_update_session(session: Session) -> Session | None:
    """Replace a session's title and metadata (and bump ``updated_at``).

    Tier: derived (default: ``get_session`` + ``replace_session`` with a new ``updated_at``).

    :param session: the session with its new title and metadata.
    :return: the stored session.
    :raises NotFoundError: no such session for this tenant.
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_set_session_updated_at(
    tenant_id: str, session_id: str, updated_at: datetime
) -> Session | None:
    """Set a session's ``updated_at`` to exactly ``updated_at``, earlier or later.

    Tier: derived (default: ``get_session`` + ``replace_session``).

    Stores own ``updated_at``: every write that belongs to the session moves it to now,
    never back (see ``threadline_create_checkpoint``); copy and import
    call this last, after a session's rows, so the copy keeps the source's value.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param updated_at: the new value (aware, UTC).
    :return: the stored session.
    :raises NotFoundError: no such session for this tenant.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_delete_session(tenant_id: str, session_id: str) -> bool | None:
    """Delete a session with its messages, API calls and checkpoints.

    Tier: required.

    :param tenant_id: the caller's tenant.
    :param session_id: the session to delete.
    :return: ``True`` if a session was deleted, ``False`` if there was none.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """
