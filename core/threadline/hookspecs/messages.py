"""Message hooks: append, read by seq range, rewrite, and the derived reads and updates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    from threadline.models import Message
    from threadline.queries import MessageRange


@hookspec
def threadline_save_messages(messages: Sequence[Message]) -> Sequence[Message] | None:
    """Append several messages of one session in one transaction, seqs in list order.

    Tier: required.

    :param messages: messages of a single session, in order.
    :return: the stored messages with their ``seq``.
    :raises NotFoundError: the session does not exist for the messages' tenant.
    :raises ConflictError: an id is stored in another session (of this tenant or another:
        the same neutral message either way); nothing of the batch is stored.
    :raises ValidationError: the batch holds the same id twice, or a JSON field the codec
        refuses; nothing of the batch is stored.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_read_messages(
    tenant_id: str, session_id: str, query: MessageRange
) -> Sequence[Message] | None:
    """Read a session's messages with ``after_seq < seq < before_seq``, from an index.

    Tier: required. The derived ``get_messages``, ``count_messages``, ``load_window`` and
    ``interrupt_streaming`` are built on it: its cost must follow ``query.limit``, not the
    session's length (a window is read backwards from the end, a page at a time).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param query: a validated :class:`threadline.queries.MessageRange`: ``after_seq`` (0:
        from the first), ``before_seq`` (``None``: to the last), ``limit`` (``None``: all
        in the range), ``newest_first`` (take and return the highest seqs first) and
        ``role`` (only that role when given: ``"system"`` for a window's head).
        :meth:`~threadline.queries.MessageRange.bounds` slices a sorted list of seqs.
    :return: the messages in the order asked (empty for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_rewrite_messages(
    tenant_id: str, messages: Sequence[Message], activity: bool, only_streaming: bool
) -> int | None:
    """Replace stored messages' ``content``, ``tool_calls``, ``status``, ``name``, ``metadata``
    and ``user_id`` with the given ones, all or nothing.

    Tier: required. ``id``, ``session_id``, ``role``, ``seq``, ``agent_id``,
    ``tool_call_id`` and ``created_at`` stay as stored. The derived ``update_message``,
    ``interrupt_streaming`` and ``erase_user`` (redaction) are built on it.

    :param tenant_id: the caller's tenant; every message must carry it.
    :param messages: the messages with their new values, matched by id.
    :param activity: ``True`` (an update) moves each session's ``updated_at`` to now in the
        same transaction; ``False`` (erasure's redaction, housekeeping) leaves it as stored.
    :param only_streaming: rewrite only the messages whose stored ``status`` is still
        ``"streaming"``, checked in the same transaction; the others are left as stored and
        not counted (so ``interrupt_streaming`` never undoes a reply finished meanwhile).
    :return: how many messages were rewritten.
    :raises NotFoundError: a message is not stored for this tenant (nothing changes).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_delete_messages(tenant_id: str, session_id: str, after_seq: int) -> int | None:
    """Delete a session's messages with ``seq > after_seq`` (pop a reply, undo a round).

    Tier: required. The session row stays. Seqs are never reused: the next append
    continues after the highest seq ever assigned in the session, so a reader following
    a session by ``after_seq`` never misses a message. A store's indexes (tool calls,
    roles, windows) forget the deleted messages in the same transaction, and their ids
    may be saved again (as new messages, with new seqs). Activity: the session's
    ``updated_at`` moves to now when a message goes.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param after_seq: keep the messages with ``seq <= after_seq`` (0: delete them all).
    :return: how many messages were deleted (0 for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_save_message(message: Message) -> Message | None:
    """Append one message to its session, assigning the next ``seq`` atomically.

    Tier: derived (default: ``save_messages([message])``).

    Saving a message whose id is already stored in the same session is an idempotent
    retry: the stored message comes back and nothing is duplicated.

    :param message: the message; its ``seq`` is ignored.
    :return: the stored message with its ``seq``.
    :raises NotFoundError: the session does not exist for the message's tenant.
    :raises ConflictError: the id is stored in another session (of this tenant or
        another: the same neutral message either way).
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_update_message(message: Message) -> Message | None:
    """Replace the content, tool calls, status and metadata of a stored message.

    Tier: derived (default: ``read_messages`` at its seq + ``rewrite_messages``).

    Used to flush a streaming reply and record how it ended. ``seq`` never changes.
    Activity: the session's ``updated_at`` moves forward in the same transaction.

    :param message: the message with its new content; matched by id and tenant.
    :return: the stored message.
    :raises NotFoundError: no such message for this tenant.
    :raises ValidationError: a JSON field the store's codec refuses (nothing is stored).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_get_messages(
    tenant_id: str, session_id: str, after_seq: int, limit: int | None
) -> Sequence[Message] | None:
    """Read a session's messages in ``seq`` order.

    Tier: derived (default: ``read_messages`` forwards).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param after_seq: only messages with a larger ``seq``.
    :param limit: at most this many (``None``: all).
    :return: the messages, oldest first (empty for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_read_message_rows(
    tenant_id: str, session_id: str, query: MessageRange, fields: Sequence[str]
) -> Sequence[tuple[Any, ...]] | None:
    """Read a session's messages as rows: one tuple a message of only the ``fields`` asked.

    Tier: derived (default: ``read_messages`` with the same ``query``, each message made a
    row by :func:`threadline.storekit.message_rows.read_message_rows`).

    For a reader that builds something else from the messages (an adapter's own items, an
    export) and would throw the :class:`~threadline.models.Message` away: a store that can
    selects only those columns and builds no model. Each field's value is the message's
    (shared rows of a fork resolved, as in every read), except ``metadata``: its JSON text
    (``json.loads`` gives the metadata; not necessarily the text written, a store may space
    or order keys its own way), or ``None`` when it is empty, and ``tool_calls``: a tuple of
    :class:`~threadline.models.ToolCall` (``()``: none). Text, not a dict: the reader
    decodes a row's metadata when it gets to it and drops it, so a long read does not hold
    a dict of dicts per message at once (fewer collections by the cyclic GC).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param query: a validated :class:`threadline.queries.MessageRange`, as for
        ``read_messages`` (``after_seq``, ``before_seq``, ``limit``, ``newest_first``, ``role``).
    :param fields: a validated tuple of distinct names of
        :data:`threadline.storekit.message_rows.ROW_FIELDS` (a message's fields but
        ``session_id`` and ``tenant_id``), the order of each row's values.
    :return: the rows in the order asked (empty for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_load_window(
    tenant_id: str, session_id: str, last_rounds: int | None
) -> Sequence[Message] | None:
    """Read the sliding window of a session (:func:`threadline.storekit.window.select_window`).

    Tier: derived (default: backwards ``read_messages`` pages, then the system messages).

    The system messages first, then the last ``last_rounds`` rounds (a round starts at a
    user message), never a tool result without its call. Stores answer from an index:
    the cost must not grow with the session's length.

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :param last_rounds: rounds to keep; ``None`` for the whole history.
    :return: the window, oldest first.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_count_messages(tenant_id: str, session_id: str) -> int | None:
    """Count a session's messages.

    Tier: derived (default: ``read_messages`` of the whole session; seqs have gaps once
    messages were deleted, so a store keeps a count to answer from an index).

    :param tenant_id: the caller's tenant.
    :param session_id: the session.
    :return: the number of messages (0 for an unknown session).
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_interrupt_streaming(tenant_id: str, session_id: str) -> int | None:
    """Mark messages left ``streaming`` (by a crashed process) as ``interrupted``.

    Tier: derived (default: ``read_messages`` + ``rewrite_messages(only_streaming=True)``).

    Conditional: only rows still ``streaming`` when the write happens change, so a reply
    finished meanwhile keeps its ending. When a message changes, the session's
    ``updated_at`` moves forward (activity).

    :param tenant_id: the caller's tenant.
    :param session_id: the session being opened.
    :return: how many messages changed.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """


@hookspec
def threadline_fork_messages(
    tenant_id: str, session_id: str, fork_id: str, last_seq: int
) -> int | None:
    """Give the fork ``fork_id`` (a session already created, empty) the messages of
    ``session_id`` with ``seq <= last_seq``: what :meth:`threadline.Store.fork_session` does
    for a fork at a message.

    Tier: derived (default: ``read_messages`` pages copied through ``save_messages``, with
    fresh seqs and each compaction summary's seqs turned into the fork's; in memory the
    copies share the source's content strings). A store that can share the stored bytes
    does so: SQLite and PostgreSQL insert rows that point at the source's content in one
    statement and copy it into them before the source's row changes or goes (copy-on-write).

    The fork's messages keep their order, roles, content, tool calls, status, name,
    metadata, ``user_id`` and ``created_at``; their ids are
    :func:`threadline.storekit.forks.fork_message_id`'s; their seqs are fresh (1, 2, ...)
    or the source's (then a compaction summary keeps the seqs it covers), and the fork's
    next append follows them. A retry after an interruption adds nothing twice. Neither
    session's ``updated_at`` moves back.

    :param tenant_id: the caller's tenant (both sessions are its).
    :param session_id: the source session.
    :param fork_id: the fork session.
    :param last_seq: the seq of the last message the fork shares.
    :return: how many messages the fork holds.
    :raises NotFoundError: the fork does not exist for this tenant.
    :raises StoreUnavailableError: the backend cannot be reached (nothing changes).
    """
