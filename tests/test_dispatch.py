"""The async dispatch rule: writes reach every implementation, reads stop at the first answer."""

from __future__ import annotations

import pytest

from threadline import Message, Store, hookimpl
from threadline.dispatch import call_read, call_write
from threadline.ids import new_id
from threadline.plugins import new_plugin_manager


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
    from threadline import ConfigurationError

    store = Store(SyncSink([]))
    with pytest.raises(ConfigurationError, match="threadline_save_message"):
        await store.save_message(message("lost?"))
    with pytest.raises(ConfigurationError, match="threadline_load_window"):
        await store.load_window(new_id(), new_id(), 2)
    await store.close()
    with pytest.raises(ConfigurationError, match="closed"):
        await store.get_session(new_id(), new_id())
