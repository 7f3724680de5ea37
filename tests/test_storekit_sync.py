"""SyncStore: plain methods named after hooks become async hooks run off the event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import threadline
from threadline.hookspecs import hookimpl
from threadline.ids import new_id
from threadline.models import Session
from threadline.storekit.sync import SyncStore

T = TypeVar("T")


class DictStore(SyncStore):
    """Sessions in a dict; records which thread ran each operation."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.threads: dict[str, int] = {}

    def create_session(self, session: Session) -> Session:
        self.threads["create_session"] = threading.get_ident()
        return self.sessions.setdefault(session.id, session)

    def get_session(self, tenant_id: str, session_id: str) -> Session | None:
        self.threads["get_session"] = threading.get_ident()
        found = self.sessions.get(session_id)
        return found if found is not None and found.tenant_id == tenant_id else None


def _session() -> Session:
    return Session(id=new_id(), tenant_id=new_id(), user_id=new_id(), agent_id=new_id())


async def test_sync_methods_become_hooks_run_off_the_loop() -> None:
    plugin = DictStore()
    store = threadline.Store(plugin)
    session = await store.create_session(_session())
    assert await store.get_session(session.tenant_id, session.id) == session
    assert await store.get_session(new_id(), session.id) is None  # scoped by tenant
    loop_thread = threading.get_ident()
    assert plugin.threads["create_session"] != loop_thread
    assert plugin.threads["get_session"] != loop_thread


async def test_run_sync_decides_the_thread_per_hook() -> None:
    class InlineReads(DictStore):
        async def run_sync(self, hook: str, operation: Callable[..., T], *args: Any) -> T:
            if hook == "threadline_get_session":
                return operation(*args)
            return await super().run_sync(hook, operation, *args)

    plugin = InlineReads()
    store = threadline.Store(plugin)
    session = await store.create_session(_session())
    await store.get_session(session.tenant_id, session.id)
    assert plugin.threads["get_session"] == threading.get_ident()
    assert plugin.threads["create_session"] != threading.get_ident()


async def test_a_hook_defined_by_the_class_is_kept() -> None:
    class OwnHook(DictStore):
        @hookimpl
        async def threadline_get_session(self, tenant_id: str, session_id: str) -> Session:
            return Session(id=session_id, tenant_id=tenant_id, title="own")

    store = threadline.Store(OwnHook())
    found = await store.get_session(new_id(), new_id())
    assert found is not None
    assert found.title == "own"


async def test_a_generated_hook_takes_keyword_arguments() -> None:
    plugin = DictStore()
    session = _session()
    await plugin.threadline_create_session(session=session)
    found = await plugin.threadline_get_session(tenant_id=session.tenant_id, session_id=session.id)
    assert found == session
