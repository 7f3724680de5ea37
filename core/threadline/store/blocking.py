"""The blocking store: :class:`~threadline.store.Store`'s methods for synchronous code.

    store = threadline.connect_sync("sqlite:///chat.db")
    session = store.create_session(Session(tenant_id=tenant))

Every method is the async method of the same name run on the one background loop
(:mod:`threadline.blocking`), so one store serves every thread of a Flask or Django app.
A store left open is closed at interpreter exit.
"""

from __future__ import annotations

from threadline.blocking.facade import ClosingFacade, blocking, same, streaming
from threadline.blocking.loop import run, track
from threadline.store.facade import Store
from threadline.store.opening import connect
from threadline.urls import StoreURL

__all__ = ["BlockingStore", "connect_sync"]


def connect_sync(
    url: str | StoreURL, *, migrate: bool = True, create: bool = True
) -> BlockingStore:
    """Open the store for ``url`` as :func:`threadline.connect` does, for blocking use
    (closed at interpreter exit if still open)."""
    store = run(connect(url, migrate=migrate, create=create))
    track(store, store.close)
    return BlockingStore(store)


class BlockingStore(ClosingFacade[Store], wraps=Store):
    """The methods of :class:`~threadline.store.Store`, each blocking until it is done.

    ``target`` is the async :class:`Store` (it belongs to the background loop: await it
    only through :func:`threadline.blocking.run`).
    """

    @property
    def url(self) -> StoreURL | None:
        return self.target.url

    @property
    def plugins(self) -> list[object]:
        """The stacked store objects, in call order (the last added first)."""
        return self.target.plugins

    @property
    def primary(self) -> object:
        """The first plugin in call order (the last one added)."""
        return self.target.primary

    @property
    def live_replies(self) -> bool:
        """Whether a stacked store pushes reply pieces (else followers poll the row)."""
        return self.target.live_replies

    def add(self, plugin: object, name: str | None = None) -> BlockingStore:
        """Stack another store plugin; it is called before the ones already added."""
        self.target.add(plugin, name)
        return self

    migrate = blocking(Store.migrate)
    list_tenants = blocking(Store.list_tenants)
    create_session = blocking(Store.create_session)
    get_session = blocking(Store.get_session)
    list_sessions = blocking(Store.list_sessions)
    iter_sessions = streaming(Store.iter_sessions)
    update_session = blocking(Store.update_session)
    set_session_updated_at = blocking(Store.set_session_updated_at)
    delete_session = blocking(Store.delete_session)
    fork_session = blocking(Store.fork_session)
    list_branches = blocking(Store.list_branches)
    save_message = blocking(Store.save_message)
    save_messages = blocking(Store.save_messages)
    update_message = blocking(Store.update_message)
    get_messages = blocking(Store.get_messages)
    read_messages = blocking(Store.read_messages)
    read_message_rows = blocking(Store.read_message_rows)
    load_window = blocking(Store.load_window)
    count_messages = blocking(Store.count_messages)
    delete_messages = blocking(Store.delete_messages)
    interrupt_streaming = blocking(Store.interrupt_streaming)
    save_api_call = blocking(Store.save_api_call)
    list_api_calls = blocking(Store.list_api_calls)
    usage = blocking(Store.usage)
    publish_reply = same(Store.publish_reply)
    subscribe_replies = blocking(Store.subscribe_replies)
    follow_reply = streaming(Store.follow_reply)
    session_expiry = blocking(Store.session_expiry)
    create_checkpoint = blocking(Store.create_checkpoint)
    get_checkpoint = blocking(Store.get_checkpoint)
    list_checkpoints = blocking(Store.list_checkpoints)
    get_latest_checkpoint = blocking(Store.get_latest_checkpoint)
    append_checkpoint_state = blocking(Store.append_checkpoint_state)
    erase_user = blocking(Store.erase_user)
    prune_checkpoints = blocking(Store.prune_checkpoints)
    delete_sessions_before = blocking(Store.delete_sessions_before)
    save_agent_config = blocking(Store.save_agent_config)
    load_agent_config = blocking(Store.load_agent_config)
    list_agent_configs = blocking(Store.list_agent_configs)
    save_provider = blocking(Store.save_provider)
    list_providers = blocking(Store.list_providers)
