"""The synchronous API: one background loop serving blocking stores, contexts and agents
from many threads, refused inside a running loop, and closed cleanly at interpreter exit."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hitl_support import (
    hitl_postgres,  # noqa: F401  (fixture)
    make_url,
    run_child,
)

import threadline
from threadline.blocking.facade import returns_async_iterator
from threadline.errors import ConfigurationError
from threadline.models import Session
from threadline.runtime.agent import Agent
from threadline.runtime.blocking import BlockingAgent, BlockingPersistenceContext
from threadline.runtime.context import PersistenceContext
from threadline.store import Store
from threadline.store.blocking import BlockingStore

TENANT = "019bda9f-0000-7000-8000-0000000000c1"
USER = "019bda9f-0000-7000-8000-0000000000c2"
THREADS = 8


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[BlockingStore]:
    with threadline.connect_sync(url) as opened:
        yield opened


def in_threads(work: object, count: int = THREADS) -> list[object]:
    """Run ``work(i)`` in ``count`` threads started together; their results, or raise."""
    results: list[object] = [None] * count
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_one_store_written_from_many_threads(store: BlockingStore) -> None:
    shared = store.create_session(Session(tenant_id=TENANT, user_id=USER))

    def work(i: int) -> str:
        own = store.create_session(Session(tenant_id=TENANT, user_id=USER, title=f"t{i}"))
        for j in range(10):
            ctx_message = threadline.Message(
                session_id=shared.id, tenant_id=TENANT, role="user", content=f"{i}-{j}"
            )
            store.save_message(ctx_message)
            store.save_message(
                threadline.Message(session_id=own.id, tenant_id=TENANT, role="user", content="x")
            )
        return own.id

    own_ids = in_threads(work)
    messages = store.load_window(TENANT, shared.id)
    assert len(messages) == THREADS * 10
    assert len({m.seq for m in messages}) == THREADS * 10  # no seq given twice
    assert {m.content for m in messages} == {f"{i}-{j}" for i in range(THREADS) for j in range(10)}
    for sid in own_ids:
        assert store.count_messages(TENANT, str(sid)) == 10
    listed = [s.id for s in store.iter_sessions(TENANT, page=3)]  # a blocking iterator
    assert sorted(listed) == sorted([shared.id, *map(str, own_ids)])


def test_contexts_in_many_threads(store: BlockingStore) -> None:
    def work(i: int) -> tuple[str, list[str]]:
        ctx = BlockingPersistenceContext.open(store, tenant_id=TENANT, user_id=USER)
        ctx.save_system_message("be brief")
        for j in range(3):
            ctx.save_user_message(f"q{i}.{j}")
            ctx.save_assistant_message(f"a{i}.{j}", metadata={"model": "m"})
        return ctx.session_id, [m.content for m in ctx.get_history(last_rounds=1)]

    results = in_threads(work)
    for i, result in enumerate(results):
        sid, last_round = result  # type: ignore[misc]
        assert last_round == ["be brief", f"q{i}.2", f"a{i}.2"]
        resumed = BlockingPersistenceContext.open(store, tenant_id=TENANT, session_id=sid)
        assert [m.role for m in resumed.get_history()] == ["system"] + ["user", "assistant"] * 3


class _ChatApp(BaseHTTPRequestHandler):
    """A web app's request handler: one module-level agent, a thread per request."""

    agent: BlockingAgent

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = self.agent.chat(body["text"], session_id=body["session"])
        data = json.dumps({"reply": reply}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


def test_agent_behind_a_threaded_web_server(url: str) -> None:
    agent = (
        threadline.AgentBuilder("You are terse.")
        .with_store(url)  # the agent opens (and owns) the store
        .with_provider("echo")
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .build_sync()
    )
    handler = type("App", (_ChatApp,), {"agent": agent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    sessions = [threadline.new_id() for _ in range(THREADS)]

    def client(i: int) -> list[str]:
        replies = []
        for turn in range(3):
            payload = json.dumps({"text": f"u{i}.{turn}", "session": sessions[i]}).encode()
            address = f"http://127.0.0.1:{server.server_port}/"
            with urllib.request.urlopen(address, payload, timeout=30) as response:
                replies.append(json.loads(response.read())["reply"])
        return replies

    try:
        results = in_threads(client)
    finally:
        server.shutdown()
        server.server_close()
    try:
        for i, replies in enumerate(results):
            assert replies == [f"Echo: u{i}.{turn}" for turn in range(3)]
            history = agent.history(sessions[i])
            assert [m.content for m in history if m.role == "user"] == [
                f"u{i}.{turn}" for turn in range(3)
            ]
            assert [m.status for m in history if m.role == "assistant"] == ["complete"] * 3
            calls = agent.store.list_api_calls(TENANT, sessions[i])
            assert [c.status for c in calls] == ["success"] * 3
    finally:
        agent.close()
    with pytest.raises(ConfigurationError, match="closed"):
        agent.store.count_messages(TENANT, sessions[0])  # the agent owned it: closed too


def test_stream_stopped_early_keeps_the_reply_as_cancelled(store: BlockingStore) -> None:
    agent = threadline.quick_agent("terse", store).with_provider("echo").build_sync()
    try:
        assert "".join(agent.chat_stream("one two three")) == "Echo: one two three"
        with agent.chat_stream("four five six") as stream:
            first = next(stream)
        assert first == "Echo:"
        last = agent.history(last_rounds=1)[-1]
        assert (last.role, last.status, last.content) == ("assistant", "cancelled", "Echo:")
        assert next(stream, None) is None  # closed: nothing more, no error
        for _piece in agent.chat_stream("seven eight nine"):
            break  # the iterator is dropped here, not closed: the drop closes it
        deadline = time.monotonic() + 10
        while (last := agent.history(last_rounds=1)[-1]).role != "assistant" or (
            last.status == "streaming"
        ):  # the close goes on in the background
            assert time.monotonic() < deadline, "a dropped stream was never closed"
            time.sleep(0.01)
        assert (last.content, last.status) == ("Echo:", "cancelled")
        followed = list(agent.follow())  # a method returning an async iterator: an iterator
        assert "".join(u.text for u in followed) == "Echo:"
        assert [u.status for u in followed][-1] == "cancelled"
    finally:
        agent.close()
    assert store.count_messages(agent.persistence.tenant_id, agent.session_id) == 7  # open


EXIT_SCRIPT = """
import sys, threadline
url, session_id = sys.argv[1], sys.argv[2]
store = threadline.connect_sync(url)
agent = threadline.quick_agent("terse", store).with_provider("echo")
agent = agent.with_session_id(session_id).build_sync()
print(agent.chat("first"), flush=True)
stream = agent.chat_stream("second")
print(next(stream), flush=True)
threadline.BlockingPersistenceContext.open(store, tenant_id=agent.persistence.tenant_id)
# the interpreter exits with the store, the agent and a stream still open
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_interpreter_exit_with_everything_open_is_clean(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = make_url(kind, request, tmp_path)
    session_id = threadline.new_id()
    done = run_child(
        "import warnings; warnings.simplefilter('default')\n" + EXIT_SCRIPT,
        url,
        session_id,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["Echo: first", "Echo:"]
    assert done.stderr == ""  # no "event loop is closed", no unclosed resources
    with threadline.connect_sync(url) as store:
        tenant = threadline.runtime.agent.LOCAL_TENANT_ID
        history = store.load_window(tenant, session_id)
        assert [(m.role, m.status) for m in history] == [
            ("system", "complete"),
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "cancelled"),  # the open stream was closed at exit, not crashed
        ]
        assert [c.status for c in store.list_api_calls(tenant, session_id)] == [
            "success",
            "cancelled",
        ]


async def test_blocking_calls_inside_a_running_loop_are_refused(tmp_path: Path) -> None:
    with pytest.raises(threadline.RunningLoopError, match="running event loop"):
        threadline.connect_sync("memory://refused")
    store = await asyncio.to_thread(threadline.connect_sync, "memory://refused")
    try:
        with pytest.raises(threadline.RunningLoopError):
            store.list_sessions(TENANT)
        with pytest.raises(threadline.RunningLoopError):
            next(store.iter_sessions(TENANT))
        with pytest.raises(threadline.RunningLoopError):
            threadline.quick_agent("x", store).with_provider("echo").build_sync()
        builder = threadline.quick_agent("x", store).with_provider("echo")
        with pytest.raises(ConfigurationError, match="build_sync"):
            await builder.build()  # a blocking store belongs to the background loop
    finally:
        await asyncio.to_thread(store.close)


@pytest.mark.parametrize(
    ("blocking", "asynchronous"),
    [
        (BlockingStore, Store),
        (BlockingAgent, Agent),
        (BlockingPersistenceContext, PersistenceContext),
    ],
)
def test_every_async_method_has_a_typed_blocking_twin(
    blocking: type[object], asynchronous: type[object]
) -> None:
    """Each public async method is declared on the blocking class (so a type checker sees
    its blocking signature); one added to the async class later is still generated."""
    names = {
        name
        for name, member in inspect.getmembers(asynchronous)
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(member) or returns_async_iterator(member))
    }
    assert names <= set(dir(blocking))
    missing = blocking.generated  # type: ignore[attr-defined]
    lines = []
    for name in missing:
        kind = "streaming" if returns_async_iterator(getattr(asynchronous, name)) else "blocking"
        lines.append(f"{name} = {kind}({asynchronous.__name__}.{name})")
    assert missing == (), f"declare on {blocking.__name__} for the type checker: {lines}"
