"""The async dispatch rule: writes reach every implementation, reads stop at the first answer."""

from __future__ import annotations

import pytest

from threadline import ConfigurationError, ConflictError, Message, Session, Store, hookimpl
from threadline.ids import new_id
from threadline.plugins import new_plugin_manager
from threadline.plugins.dispatch import call_read, call_write
from threadline.storekit import ReferenceStore


class Recorder:
    def __init__(self, name: str, log: list[str], answer: object = None, fail: bool = False):
        self.name, self.log, self.answer, self.fail = name, log, answer, fail

    @hookimpl
    async def threadline_save_message(self, message: Message) -> object:
        self.log.append(f"{self.name}:{message.content}")
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        return self.answer

    @hookimpl
    async def threadline_get_session(self, tenant_id: str, session_id: str) -> object:
        self.log.append(f"{self.name}:get")
        return self.answer


class SyncSink:
    """A plain (non-async) implementation that names only some of the arguments."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @hookimpl
    def threadline_get_session(self, session_id: str) -> None:
        self.log.append(f"sync:{session_id[:4]}")


def message(text: str) -> Message:
    return Message(session_id=new_id(), tenant_id=new_id(), role="user", content=text)


async def test_writes_reach_every_implementation_last_registered_first() -> None:
    log: list[str] = []
    pm = new_plugin_manager()
    pm.register(Recorder("a", log, answer="from-a"))
    pm.register(Recorder("b", log, answer=None))
    pm.register(Recorder("c", log, answer="from-c"))
    result = await call_write(pm, "threadline_save_message", message=message("x"))
    assert log == ["c:x", "b:x", "a:x"]
    assert result == "from-c"


async def test_first_write_failure_is_raised_and_stops_the_call() -> None:
    log: list[str] = []
    pm = new_plugin_manager()
    pm.register(Recorder("audit", log))
    pm.register(Recorder("primary", log, fail=True))
    with pytest.raises(RuntimeError, match="primary failed"):
        await call_write(pm, "threadline_save_message", message=message("y"))
    assert log == ["primary:y"]  # the sink behind it never saw a refused write


async def test_reads_stop_at_the_first_non_none_answer() -> None:
    log: list[str] = []
    pm = new_plugin_manager()
    pm.register(Recorder("last", log, answer="too late"))
    pm.register(Recorder("answers", log, answer="answer"))
    pm.register(SyncSink(log))
    sid = new_id()
    assert await call_read(pm, "threadline_get_session", tenant_id=new_id(), session_id=sid) == (
        "answer"
    )
    assert log == [f"sync:{sid[:4]}", "answers:get"]


async def test_read_with_no_answer_is_none() -> None:
    pm = new_plugin_manager()
    pm.register(Recorder("nobody", [], answer=None))
    assert await call_read(pm, "threadline_get_session", tenant_id="t", session_id="s") is None


async def test_store_refuses_a_write_nobody_implements() -> None:
    store = Store(SyncSink([]))
    with pytest.raises(ConfigurationError, match="threadline_save_message"):
        await store.save_message(message("lost?"))
    with pytest.raises(ConfigurationError, match="threadline_load_window"):
        await store.load_window(new_id(), new_id(), 2)
    await store.close()
    with pytest.raises(ConfigurationError, match="closed"):
        await store.get_session(new_id(), new_id())


# -- derived hooks: the store's own implementation, else the default on its own primitives --


class MessageSink:
    """An audit sink implementing one required primitive: batch appends."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @hookimpl
    async def threadline_save_messages(self, messages: list[Message]) -> list[Message]:
        self.log.extend(f"sink:{m.content}" for m in messages)
        return list(messages)


class FastSaver(MessageSink):
    """A store that overrides the derived ``save_message`` (to be faster)."""

    @hookimpl
    async def threadline_save_message(self, message: Message) -> Message:
        self.log.append(f"fast:{message.content}")
        return message


class ConfigOnly:
    """A config-only store: no message primitive at all."""

    @hookimpl
    def threadline_list_providers(self, tenant_id: str) -> list[object]:
        return []


async def _reference_session(store: Store) -> Session:
    return await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))


def _in(session: Session, text: str) -> Message:
    return Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content=text)


async def test_a_store_own_implementation_overrides_the_default() -> None:
    log: list[str] = []
    store = Store(FastSaver(log))
    await store.save_message(message("x"))
    assert log == ["fast:x"]  # not "sink:x": the default on save_messages was not used


async def test_the_default_is_used_on_a_store_without_its_own() -> None:
    store = Store(ReferenceStore())
    session = await _reference_session(store)
    saved = await store.save_message(_in(session, "hello"))
    assert saved.seq == 1
    assert await store.count_messages(session.tenant_id, session.id) == 1
    assert [m.content for m in await store.load_window(session.tenant_id, session.id, 1)] == [
        "hello"
    ]


async def test_a_stacked_sink_gets_derived_writes_through_its_own_primitive() -> None:
    log: list[str] = []
    store = Store(ReferenceStore())
    store.add(MessageSink(log))  # called first
    session = await _reference_session(store)
    saved = await store.save_message(_in(session, "audited"))
    assert log == ["sink:audited"]
    assert saved.content == "audited"
    assert [m.content for m in await store.get_messages(session.tenant_id, session.id)] == [
        "audited"
    ]  # the reference store stored it too; the sink takes no part in reads it cannot answer


async def test_derived_writes_reach_participants_in_stack_order() -> None:
    log: list[str] = []
    store = Store(MessageSink(log), FastSaver(log), ConfigOnly())
    await store.save_message(message("m"))
    assert log == ["fast:m", "sink:m"]  # last added first; the config store takes no part


async def test_a_derived_write_nobody_can_do_is_a_configuration_error() -> None:
    store = Store(ConfigOnly())
    with pytest.raises(ConfigurationError, match="threadline_save_message"):
        await store.save_message(message("lost?"))
    for write in (
        store.delete_session(new_id(), new_id()),
        store.interrupt_streaming(new_id(), new_id()),
    ):
        with pytest.raises(ConfigurationError):  # they returned False / 0 before
            await write
    with pytest.raises(ConfigurationError, match="threadline_count_messages"):
        await store.count_messages(new_id(), new_id())


async def test_a_failing_participant_stops_the_derived_write() -> None:
    log: list[str] = []

    class Refuses(MessageSink):
        @hookimpl
        async def threadline_save_messages(self, messages: list[Message]) -> list[Message]:
            raise ConflictError("refused")

    store = Store(MessageSink(log), Refuses(log))
    with pytest.raises(ConflictError):
        await store.save_message(message("no"))
    assert log == []  # the sink behind the refusing store never saw it
