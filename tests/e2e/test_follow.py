"""Following a streaming reply from another process, on SQLite (polling the flushed row),
PostgreSQL (LISTEN/NOTIFY) and Redis (pub/sub): followers that join at the start, in the
middle and after the end each see exactly the persisted reply, in order, with its status;
a writer killed mid-reply ends its followers with ``interrupted`` once the session reopens;
``threadline chat --follow`` prints a reply another process streams."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("threadline_sqlite")

from reliability._servers import postgres_url

import threadline
from threadline.errors import NotFoundError
from threadline.models import Session

__all__ = ["postgres_url"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:threadline_redis.store")

HERE = Path(__file__).resolve().parent
CHILD = str(HERE / "follow_child.py")
TENANT = "019bda9f-0000-7000-8000-0000000000f1"
PLUGINS = os.environ["THREADLINE_LOAD_PLUGINS"] + ",threadline-redis"


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("THREADLINE_LOAD_PLUGINS", PLUGINS)
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'follow.db'}"
    elif request.param == "postgres":
        pytest.importorskip("threadline_postgres")
        yield request.getfixturevalue("postgres_url")
    else:
        pytest.importorskip("threadline_redis")
        import redis

        prefix = f"tl-test-follow-{secrets.token_hex(4)}"
        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            client.ping()
        except redis.ConnectionError as exc:
            if os.environ.get("CI"):
                pytest.fail(f"Redis not reachable: {exc}")
            pytest.skip(f"Redis not reachable: {exc}")
        try:
            yield f"redis://127.0.0.1:6379/0?prefix={prefix}"
        finally:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.unlink(*keys)
            client.close()


@pytest.fixture
async def session(url: str) -> AsyncIterator[str]:
    store = await threadline.connect(url)
    try:
        await store.migrate()
        created = await store.create_session(Session(id=threadline.new_id(), tenant_id=TENANT))
        yield created.id
    finally:
        await store.close()


def child(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path])}
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def threadline_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def updates(proc: subprocess.Popen[str]) -> list[dict[str, object]]:
    """The rest of a follower's updates, once it has ended (killed after 60 s: a hang guard).

    Read through ``proc.stdout`` itself, not ``communicate()``: lines an earlier
    ``readline()`` pulled into its buffer would otherwise be lost.
    """
    assert proc.stdout is not None and proc.stderr is not None
    guard = threading.Timer(60, proc.kill)
    guard.start()
    try:
        out = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
    finally:
        guard.cancel()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    return [line for line in lines if line != {"ready": True}]  # (wait_for may have read it)


def wait_for(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    while True:
        got = proc.stdout.readline()
        assert got, f"child ended before {line!r}: {proc.stderr.read() if proc.stderr else ''}"
        if got.strip() == line:
            return


async def stored_reply(url: str, session_id: str) -> threadline.Message:
    store = await threadline.connect(url)
    try:
        window = await store.load_window(TENANT, session_id, 1)
    finally:
        await store.close()
    return next(m for m in reversed(window) if m.role == "assistant")


def check(seen: list[dict[str, object]], reply: threadline.Message) -> None:
    assert seen, "no update"
    assert "".join(str(u["text"]) for u in seen) == reply.content
    assert [u["status"] for u in seen] == [None] * (len(seen) - 1) + [reply.status]
    assert {u["id"] for u in seen} == {reply.id}


async def test_followers_at_start_middle_and_end_see_the_reply(url: str, session: str) -> None:
    first = child("follow", url, TENANT, session, "--next")
    wait_for(first, '{"ready": true}')
    writer = child("write", url, TENANT, session, "60", "0.02", "20,40")
    wait_for(writer, "token 20")  # the writer pauses until the middle follower has joined
    # The first follower reads a piece at each pause (the writer waits for it too), so it
    # sees the reply in pieces however slowly a loaded machine runs it.
    assert first.stdout is not None
    early = [json.loads(first.stdout.readline())]
    middle = child("follow", url, TENANT, session)
    wait_for(middle, '{"ready": true}')
    assert middle.stdout is not None and writer.stdin is not None
    joined = json.loads(middle.stdout.readline())
    # The text so far: the stored row, which may lag the writer by one flush interval
    # (pieces published before this follower subscribed are not replayed by pub/sub).
    assert joined["status"] is None and joined["text"].startswith("Echo:")
    writer.stdin.write("go\n")
    writer.stdin.flush()
    # The writer pauses again at token 40 until the middle follower has seen a piece of the
    # text that came after it joined (flushed within one interval even while paused), so the
    # test does not depend on how fast a loaded machine runs the follower.
    piece = json.loads(middle.stdout.readline())
    assert piece["status"] is None
    early.append(json.loads(first.stdout.readline()))
    assert [u["status"] for u in early] == [None, None]
    writer.stdin.write("go\n")
    writer.stdin.close()
    assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""
    after = child("follow", url, TENANT, session)
    reply = await stored_reply(url, session)
    assert reply.status == "complete" and reply.content.endswith("w59")
    seen = [*early, *updates(first)]
    check(seen, reply)
    assert len(seen) > 2  # streamed in pieces, not at once
    rest = [piece, *updates(middle)]
    check([joined, *rest], reply)
    assert len(rest) > 1 and len(joined["text"]) < len(reply.content)
    joined_late = updates(after)
    check(joined_late, reply)
    assert len(joined_late) == 1  # the whole reply and its status at once


async def test_a_killed_writer_ends_followers_interrupted(url: str, session: str) -> None:
    follower = child("follow", url, TENANT, session, "--next")
    wait_for(follower, '{"ready": true}')
    writer = child("write", url, TENANT, session, "200", "0.02", "30")
    wait_for(writer, "token 30")
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    store = await threadline.connect(url)
    try:
        agent = await (
            threadline.AgentBuilder().with_store(store).with_tenant_id(TENANT)
            .with_session_id(session).with_provider("echo").build()
        )  # fmt: skip
        await agent.open_session()  # the crashed reply becomes interrupted
    finally:
        await store.close()
    seen = updates(follower)
    reply = await stored_reply(url, session)
    assert reply.status == "interrupted"
    assert seen[-1]["status"] == "interrupted"
    # The stored row lags the live pieces by at most one flush interval.
    assert "".join(str(u["text"]) for u in seen).startswith(reply.content)


async def test_follow_names_missing_sessions_and_replies(url: str, session: str) -> None:
    store = await threadline.connect(url)
    try:
        with pytest.raises(NotFoundError):
            _ = [u async for u in store.follow_reply(TENANT, threadline.new_id())]
        with pytest.raises(NotFoundError):
            _ = [u async for u in store.follow_reply(TENANT, session, threadline.new_id())]
        other = "019bda9f-0000-7000-8000-0000000000f2"
        with pytest.raises(NotFoundError):  # another tenant's session is not there
            _ = [u async for u in store.follow_reply(other, session)]
    finally:
        await store.close()


async def test_chat_follow_prints_a_reply_streaming_in_another_process(
    url: str, session: str
) -> None:
    if not url.startswith("sqlite"):
        pytest.skip("the CLI is the same on every store: SQLite shows it")
    cli = threadline_cli("chat", "--store", url, "--tenant", TENANT, "--follow", session)
    assert cli.stderr is not None
    assert cli.stderr.readline().startswith("following session")
    writer = child("write", url, TENANT, session, "40", "0.03")
    assert writer.wait(timeout=60) == 0
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    reply = await stored_reply(url, session)
    assert out == reply.content + "\n"
    assert f"reply {reply.id}: complete" in err
