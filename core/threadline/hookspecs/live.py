"""Live-reply hooks: followers of a streaming reply get its pieces as they are written,
and a store with session expiry says when sessions expire (both optional groups)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from threadline.hookspecs.markers import hookspec

if TYPE_CHECKING:
    from threadline.storekit.live import ReplyPiece, ReplySubscription


@hookspec
def threadline_publish_reply(piece: ReplyPiece) -> None:
    """Send one piece of a streaming reply to the reply's followers, without waiting.

    Tier: optional (live-replies group, with ``threadline_subscribe_replies``; without it
    followers poll the stored row).

    A plain (not ``async``) function that only queues the piece: the writer never waits
    for followers. The queue is bounded; on overflow pieces are dropped, and followers find
    the gap by the pieces' offsets and re-read the stored row. A piece with a ``status`` is
    the reply's end, published after its final row is written.

    :param piece: the reply's ``message_id``, the ``offset`` of ``text`` in the reply (in
        characters), ``text``, and on the last piece the final ``status``.
    :return: ``None`` (a failed send is logged, never raised to the writer).
    """


@hookspec(firstresult=True)
def threadline_subscribe_replies(
    tenant_id: str, session_id: str, maxsize: int
) -> ReplySubscription | None:
    """Start receiving the pieces published for one session's replies.

    Tier: optional (live-replies group).

    Returns once the subscription is live: every piece published after the call returns
    arrives (unless the subscription overflows, which it then says). The subscription is
    an async context manager; close it to stop receiving.

    :param tenant_id: the session's tenant; pieces of other tenants never arrive.
    :param session_id: the session whose replies to follow.
    :param maxsize: the subscription's queue bound (a slow follower drops and re-reads).
    :return: a live :class:`~threadline.storekit.live.ReplySubscription`.
    :raises StoreUnavailableError: the backend cannot be reached.
    """


@hookspec(firstresult=True)
def threadline_session_expiry(
    tenant_id: str, session_ids: Sequence[str]
) -> Mapping[str, datetime | None] | None:
    """When each session expires unless it is used again (stores with a session TTL).

    Tier: optional (session-expiry group; a store without one keeps sessions until deleted).

    :param tenant_id: the sessions' tenant; another tenant's ids map to ``None``.
    :param session_ids: the sessions to look up.
    :return: session id -> UTC expiry time, ``None`` for a session that does not expire.
    :raises StoreUnavailableError: the backend cannot be reached.
    """
