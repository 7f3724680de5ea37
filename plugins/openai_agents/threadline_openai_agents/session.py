"""``ThreadlineSession``: the OpenAI Agents SDK's ``Session`` protocol over any threadline store.

Each SDK item is one threadline message (see :mod:`threadline_openai_agents.items`) of a
threadline session in the given tenant, so ``threadline sessions``, ``copy``, ``export`` and
``erase-user`` work on Agents SDK conversations too. Only the public
:class:`threadline.Store` API is used, so every store (and third-party ones) can hold them.

A read with nothing kept (a process's first) takes the messages as rows of the few fields
an item is made of (:meth:`threadline.Store.read_message_rows`: SQLite and PostgreSQL build
no :class:`~threadline.models.Message`), one decode an item. The items last read of a
session are kept per store object (:class:`_Tail`, shared by the
session objects of one ``Store``, e.g. one per web request): the next ``get_items`` reads
only the messages from the newest one kept onwards (one indexed read), checks that this
one is still stored unchanged (a pop, a clear or a deleted session removes it; seqs are
never reused) and hands out fresh copies of the kept items plus the new ones, instead of
rebuilding every message of the history. An older message rewritten in place
(``update_message``, erasure's redaction: nothing the SDK does) shows once the kept items
are dropped (a pop, a clear, or :data:`_KEEP_ITEMS` pushing them out).
"""

from __future__ import annotations

import asyncio
import marshal
import uuid
import weakref
from collections import OrderedDict
from typing import Any

from agents.items import TResponseInputItem
from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)

from threadline import Store, connect
from threadline.errors import ConfigurationError, ConflictError, NotFoundError, ValidationError
from threadline.ids import check_id, optional_id
from threadline.models import Message, Session
from threadline.runtime.agent import LOCAL_TENANT_ID
from threadline_openai_agents.items import (
    METADATA_KEY,
    ROW_FIELDS,
    items_from_message,
    items_from_messages,
    items_from_rows,
    message_from_item,
    row_of,
    same_row,
)

__all__ = [
    "SESSION_NAMESPACE",
    "MessageDeletionUnsupportedError",
    "ThreadlineSession",
    "thread_session_id",
]

SESSION_NAMESPACE = uuid.UUID("990058be-be9e-44fb-a08d-ed85191f5402")
"""The UUIDv5 namespace that turns an SDK session id (any string) into a threadline one."""


_TAIL_KEEP = 1000
"""A tail read with a ``limit`` (not the whole history) keeps at most this many items as it
grows with new messages: a Runner reading the last 20 of a long chat holds no more."""
_KEEP_ITEMS = 50_000
"""The items kept for the sessions of one store at most (the least recently read go)."""


class _Tail:
    """The items of a session's latest messages as last read through one ``Store``.

    :attr:`items` are never handed out (:meth:`copy` makes fresh ones);
    ``last`` is the row (:data:`~threadline_openai_agents.items.ROW_FIELDS`: its seq first)
    of the newest message they come from, ``complete`` whether they are the whole history
    (else the newest ``size`` items of it). ``handed_out``: the caller got ``items``
    themselves (a first read), so the tail keeps a ``marshal`` snapshot of them, which
    is also the next read's copy, and decodes its own list only when it must change it.
    """

    __slots__ = ("_items", "blobs", "complete", "counted", "last", "size")

    def __init__(
        self, items: list[Any], last: tuple[Any, ...], complete: bool, handed_out: bool = False
    ) -> None:
        self.last = last
        self.complete = complete
        self.size = len(items)
        self.blobs: dict[int | None, bytes] = {}
        self._items: list[Any] | None = items
        if handed_out:
            self.blobs[None] = marshal.dumps(items)
            self._items = None
        self.counted = 0  # size when last put in a _Tails

    @property
    def items(self) -> list[Any]:
        """The kept items (decoded from the snapshot on first use after a first read)."""
        if self._items is None:
            self._items = marshal.loads(self.blobs[None])
        return self._items

    def covers(self, limit: int | None) -> bool:
        """Whether the answer to ``get_items(limit)`` is in :attr:`items`: the newest
        ``limit`` items of a history are those of its newest ``limit`` messages (every
        message stands for at least one item)."""
        return self.complete or (limit is not None and self.size >= limit)

    def extend(self, messages: list[Message]) -> None:
        """Add the messages stored after :attr:`last`."""
        items = self.items
        items.extend(items_from_messages(messages))
        self.last = row_of(messages[-1])
        self.blobs.clear()
        if not self.complete and len(items) > _TAIL_KEEP:
            del items[:-_TAIL_KEEP]
        self.size = len(items)

    def copy(self, limit: int | None) -> list[TResponseInputItem]:
        """Fresh copies of the newest ``limit`` items (all: ``None``), key order kept.

        ``marshal`` keeps the copy in C and shares the repeated keys: ~2x faster than
        decoding the items' JSON, ~5x than decoding it item by item.
        """
        key = limit if limit is not None and limit < self.size else None
        blob = self.blobs.get(key)
        if blob is None:
            items = self.items  # decoded before the snapshot may go
            if len(self.blobs) >= 4:
                self.blobs.clear()
            blob = self.blobs[key] = marshal.dumps(items if key is None else items[-key:])
        copied: list[TResponseInputItem] = marshal.loads(blob)
        return copied


class _Tails:
    """The tails kept for one store's sessions, least recently read first."""

    def __init__(self) -> None:
        self.tails: OrderedDict[tuple[str, str], _Tail] = OrderedDict()
        self.kept = 0  # items in all the tails

    def get(self, key: tuple[str, str]) -> _Tail | None:
        tail = self.tails.get(key)
        if tail is not None:
            self.tails.move_to_end(key)
        return tail

    def put(self, key: tuple[str, str], tail: _Tail | None) -> None:
        """Keep ``tail`` (again: its size may have changed) as the most recent, or drop it."""
        old = self.tails.pop(key, None)
        if old is not None:
            self.kept -= old.counted
        if tail is None:
            return
        tail.counted = tail.size
        self.tails[key] = tail
        self.kept += tail.counted
        while self.kept > _KEEP_ITEMS and self.tails:
            self.kept -= self.tails.popitem(last=False)[1].counted


_TAILS: weakref.WeakKeyDictionary[Store, _Tails] = weakref.WeakKeyDictionary()


class MessageDeletionUnsupportedError(ConfigurationError):
    """The store cannot delete messages, so ``pop_item`` and ``clear_session`` cannot work."""


def thread_session_id(tenant_id: str, session_id: str) -> str:
    """The threadline session id for an SDK ``session_id``: itself when it is a UUID, else a
    UUIDv5 of tenant and id (stable, so every process finds the same session)."""
    try:
        return check_id(session_id, "session_id")
    except ValidationError:
        return str(uuid.uuid5(SESSION_NAMESPACE, f"{tenant_id}/{session_id}"))


class ThreadlineSession:
    """Conversation history for the Agents SDK's ``Runner`` kept in a threadline store.

    ``store`` is a :class:`threadline.Store` (the caller closes it) or a store URL
    (``sqlite:///chat.db``, ``postgresql://...``, ``file:///dir``: opened on first use and
    closed by :meth:`close`). ``session_id`` is any non-empty string; ``tenant_id``,
    ``user_id`` and ``agent_id`` (UUIDs) scope and stamp the stored messages.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        store: Store | str,
        *,
        tenant_id: str | uuid.UUID | None = None,
        user_id: str | uuid.UUID | None = None,
        agent_id: str | uuid.UUID | None = None,
        title: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValidationError(f"session_id must be a non-empty str, got {session_id!r}")
        self.session_id = session_id
        self.tenant_id = check_id(LOCAL_TENANT_ID if tenant_id is None else tenant_id, "tenant_id")
        self.user_id = optional_id(user_id, "user_id")
        self.agent_id = optional_id(agent_id, "agent_id")
        self.thread_session_id = thread_session_id(self.tenant_id, session_id)
        """The id of the threadline session holding the items."""
        self.title = title if title is not None else session_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        if isinstance(store, Store):
            self._store: Store | None = store
            self._url: str | None = None
        elif isinstance(store, str):
            self._store, self._url = None, store
        else:
            raise ValidationError(f"store must be a threadline.Store or a URL, got {store!r}")
        self._lock = asyncio.Lock()
        self._session_known = False
        self._closed = False

    def __repr__(self) -> str:
        where = self._store if self._store is not None else "<not opened yet>"
        return f"<ThreadlineSession {self.session_id!r} tenant={self.tenant_id} store={where}>"

    # -- the store ----------------------------------------------------------------------------

    async def get_store(self) -> Store:
        """The store, opened from the URL on first use."""
        if self._closed:
            raise ConfigurationError(f"session {self.session_id!r} is closed")
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    assert self._url is not None
                    self._store = await connect(self._url)
        return self._store

    async def close(self) -> None:
        """Close the store if this session opened it from a URL (a given Store stays open);
        using the session afterwards raises :class:`ConfigurationError`."""
        self._closed = True
        if self._url is not None and self._store is not None:
            store, self._store = self._store, None
            await store.close()

    async def __aenter__(self) -> ThreadlineSession:
        await self.get_store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_session(self, store: Store) -> None:
        """Create the threadline session on the first write (an existing one is reused)."""
        if self._session_known:
            return
        found = await store.get_session(self.tenant_id, self.thread_session_id)
        if found is None:
            await store.create_session(
                Session(
                    id=self.thread_session_id,
                    tenant_id=self.tenant_id,
                    user_id=self.user_id,
                    agent_id=self.agent_id,
                    title=self.title,
                    metadata={METADATA_KEY: {"session_id": self.session_id}},
                )
            )
        elif self.user_id is not None and found.user_id not in (None, self.user_id):
            raise ConflictError(f"session {self.session_id!r} belongs to another user")
        self._session_known = True

    def _check_deletes(self, store: Store, operation: str) -> None:
        if not store.pm.hook.threadline_delete_messages.get_hookimpls():
            raise MessageDeletionUnsupportedError(
                f"{operation} needs a store that deletes messages, and no store in {store!r} "
                "implements threadline_delete_messages; nothing was changed"
            )

    # -- the Session protocol -----------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history in order; with ``limit`` (else ``session_settings.limit``) the latest
        ``limit`` items, read newest first from the store's index. Each call returns new
        objects (the caller may change them)."""
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValidationError(f"limit must be None or an int >= 0, got {limit!r}")
            if limit == 0:
                return []
        store = await self.get_store()
        tails = _TAILS.get(store)
        if tails is None:
            tails = _TAILS[store] = _Tails()
        key = (self.tenant_id, self.thread_session_id)
        for _ in range(3):  # another read moved the kept tail on meanwhile: take it from there
            tail = tails.get(key)
            if tail is None or not tail.covers(limit):
                break
            last = tail.last
            since = await store.read_messages(
                self.tenant_id, self.thread_session_id, after_seq=last[0] - 1
            )
            if tails.get(key) is not tail or tail.last is not last:
                continue
            if not since or not same_row(last, since[0]):  # popped, cleared, deleted, rewritten
                tails.put(key, None)
                break
            if len(since) > 1:
                tail.extend(since[1:])
                tails.put(key, tail)  # its size changed
            return tail.copy(limit)
        # Nothing kept: rows of the item's fields, no Message built (the store's own read).
        rows = await store.read_message_rows(
            self.tenant_id,
            self.thread_session_id,
            ROW_FIELDS,
            limit=limit,
            newest_first=limit is not None,
        )
        if limit is not None:
            rows.reverse()
        if not rows:
            tails.put(key, None)
            return []
        complete = limit is None or len(rows) < limit
        built = items_from_rows(rows)
        tails.put(key, _Tail(built, tuple(rows[-1]), complete, handed_out=True))
        return built if limit is None or limit >= len(built) else built[-limit:]

    def _forget(self, store: Store) -> None:
        """Drop the kept tail (before a pop or a clear: it would fail its check anyway)."""
        tails = _TAILS.get(store)
        if tails is not None:
            tails.put((self.tenant_id, self.thread_session_id), None)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in one transaction, in order (each batch stays contiguous)."""
        if not items:
            return
        store = await self.get_store()
        messages = [
            message_from_item(
                item,
                session_id=self.thread_session_id,
                tenant_id=self.tenant_id,
                user_id=self.user_id,
                agent_id=self.agent_id,
            )
            for item in items
        ]
        async with self._lock:
            await self._ensure_session(store)
            try:
                await store.save_messages(messages)
            except NotFoundError:  # the session was deleted meanwhile: start it again
                self._session_known = False
                await self._ensure_session(store)
                await store.save_messages(messages)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it (``None`` when the session is empty).

        The session itself stays. A message threadline's own agent wrote with text and tool
        calls (several SDK items) goes whole; its last item is returned.
        """
        store = await self.get_store()
        self._check_deletes(store, "pop_item")
        async with self._lock:
            self._forget(store)
            newest = await store.read_messages(
                self.tenant_id, self.thread_session_id, limit=1, newest_first=True
            )
            if not newest:
                return None
            message = newest[0]
            assert message.seq is not None
            await store.delete_messages(
                self.tenant_id, self.thread_session_id, after_seq=message.seq - 1
            )
        return items_from_message(message)[-1]

    async def clear_session(self) -> None:
        """Delete every item; the session (its id, owner, title) stays."""
        store = await self.get_store()
        self._check_deletes(store, "clear_session")
        async with self._lock:
            self._forget(store)
            await store.delete_messages(self.tenant_id, self.thread_session_id, after_seq=0)
