"""Secrets: API keys and database passwords stay out of everything a person or a disk sees.

A distinctive fake key (``sk-test-SECRET-...``) and a PostgreSQL role whose password is
full of URL metacharacters (``@ : / % # ?``) are used for whole scenarios on every store:
agent configs saved with key *references*, agents built from them chatting with a local
OpenAI-compatible server (which checks the key, and in its error answers echoes it back
as real servers do), graph agents with checkpoints, the CLI, and connections that fail.
Logging is captured at DEBUG for every logger (threadline's, httpx, httpcore, asyncpg,
asyncio) during the whole scenario. The secrets must never appear in:

* ``repr``/``str`` of any object a user handles (stores, URLs, providers, agents, configs,
  the graph Persistency and its handles);
* log records (message, arguments and formatted tracebacks);
* exceptions: ``str``, ``repr``, every chained cause and context, formatted tracebacks;
* CLI output (stdout and stderr);
* what the stores keep: the SQLite file with its WAL, every file of an fsspec folder,
  a ``pg_dump`` of the PostgreSQL schema, the memory store's state. Stored configs hold
  ``env:NAME`` references; a key is stored only when the user puts one there himself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import traceback
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

import threadline
from threadline import (
    AgentConfig,
    AgentRecord,
    ProviderError,
    ProviderRecord,
    ThreadlineError,
)
from threadline.cli import cli
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.ids import new_id
from threadline.runtime.agent import AgentBuilder, PersistencePlugin
from threadline.urls import StoreURL
from threadline_openai import OpenAIProvider

from ._record import record
from ._stores import (
    KINDS,
    StoreHandle,
    open_store,
    postgres_admin,
    postgres_database,
    postgres_url,
    run_sync,
)

KEY_MARK = secrets.token_hex(8)
KEY = f"sk-test-SECRET-{KEY_MARK}"
PW_MARK = secrets.token_hex(8)
PG_PASSWORD = f"pg-SECRET-{PW_MARK}-a@b:c/d%e#f?g"
MARKS = (KEY, KEY_MARK, PG_PASSWORD, quote(PG_PASSWORD, safe=""), PW_MARK)
"""What must never be seen: each secret, URL-quoted, and its random part alone."""

LOGGERS = (
    "threadline",
    "threadline_openai",
    "threadline_postgres",
    "threadline_sqlite",
    "threadline_fsspec",
    "httpx",
    "httpcore",
    "asyncpg",
    "asyncio",
    "fsspec",
)

# -- watching for leaks -----------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


def render(exc: BaseException) -> list[str]:
    """``str``, ``repr`` and the formatted traceback of ``exc`` and of every chained one.

    Chained as Python shows them: the ``__cause__``, and the ``__context__`` unless it was
    suppressed (``raise ... from None``), as tracebacks and error trackers do.
    """
    out, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out += [str(e), repr(e), "".join(traceback.format_exception(type(e), e, e.__traceback__))]
        chained = [e.__cause__, None if e.__suppress_context__ else e.__context__]
        todo += [x for x in chained if x is not None]
    return out


@attrs.define
class Watch:
    """Everything shown during a scenario, scanned for the secrets at the end."""

    handler: _Collect
    shown: list[tuple[str, str]] = attrs.field(factory=list)
    checks: int = 0

    def see(self, where: str, *values: object) -> None:
        for value in values:
            self.shown.append((where, value if isinstance(value, str) else repr(value)))
            if not isinstance(value, str):
                self.shown.append((where + " (str)", str(value)))

    def error(self, where: str, exc: BaseException) -> None:
        for text in render(exc):
            self.shown.append((where, text))

    def cli(self, where: str, result: Result) -> None:
        self.shown.append((where, result.output))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.error(where + " (CLI exception)", result.exception)

    def leaks(self, extra: Sequence[tuple[str, str]] = ()) -> list[str]:
        found = []
        items = [*self.shown, *(("log", line) for line in self.handler.lines), *extra]
        self.checks += len(items)
        for where, text in items:
            for mark in MARKS:
                at = text.find(mark)
                if at >= 0:
                    found.append(f"{where}: ...{text[max(0, at - 80) : at + 60]!r}...")
                    break
        return found


@pytest.fixture
def watch() -> Iterator[Watch]:
    """Capture every log record at DEBUG (root and the named loggers) for the test."""
    handler = _Collect()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    old_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield Watch(handler)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# -- a model server that checks the key and echoes it back in its errors ---------------------


def _sse(*objs: object) -> bytes:
    return b"".join(
        b"data: " + (o if isinstance(o, str) else json.dumps(o)).encode() + b"\n\n" for o in objs
    )


def _chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-s",
        "model": "mock",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _http(
    status: str, body: bytes, content_type: str = "text/event-stream", retry: bool = False
) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n"
    head += f"x-should-retry: {'true' if retry else 'false'}\r\n\r\n"
    return head.encode() + body


ECHO_PROMPTS = (
    "echo-401",
    "echo-500",
    "echo-stream-error",
    "echo-malformed",
    "echo-html",
    "echo-json-error",
    "echo-503",
)
"""Prompts whose answers carry the key the request was sent with (each a typed error)."""


def answer(prompt: str, authorization: str, headers: str) -> bytes:
    """The server's answer to ``prompt``; a wrong key gets 401 whatever the prompt."""
    if authorization != f"Bearer {KEY}" or prompt == "echo-401":
        body = {
            "error": {
                "message": f"Incorrect API key provided: {authorization[7:]}.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
        return _http("401 Unauthorized", json.dumps(body).encode(), "application/json")
    if prompt == "echo-500":
        return _http("500 Oops", f"upstream failed for request:\n{headers}".encode(), "text/plain")
    if prompt == "echo-503":
        return _http("503 Busy", f"busy, key {KEY}".encode(), "text/plain", retry=True)
    if prompt == "echo-stream-error":
        error = {"error": {"message": f"quota exceeded for key {KEY}", "code": "server_error"}}
        return _http("200 OK", _sse(_chunk("partial "), error))
    if prompt == "echo-malformed":
        return _http("200 OK", _sse(_chunk("partial ")) + f'data: {{"key": "{KEY}\n\n'.encode())
    if prompt == "echo-html":
        return _http("200 OK", f"<html>proxy login for {KEY}</html>".encode(), "text/html")
    if prompt == "echo-json-error":
        return _http("200 OK", json.dumps({"error": f"bad key {KEY}"}).encode(), "application/json")
    if prompt == "echo-tool":
        call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": f'{{"k": "{KEY}'}}
        return _http(
            "200 OK", _sse(_chunk(tool_calls=[call]), _chunk(finish="tool_calls"), "[DONE]")
        )
    words = ["All", " is", " well"]
    return _http("200 OK", _sse(*(_chunk(w) for w in words), _chunk(finish="stop"), "[DONE]"))


class ModelServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers by the last user message."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> ModelServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            fields = {}
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            body = json.loads(await reader.readexactly(int(fields.get("content-length", "0"))))
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            prompt = str(users[-1].get("content")) if users else ""
            self.requests.append(
                {"prompt": prompt, "authorization": fields.get("authorization", "")}
            )
            writer.write(answer(prompt, fields.get("authorization", ""), head))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


@pytest_asyncio.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelServer]:
    """The model server, with ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and a model set."""
    started = await ModelServer().start()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", started.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "mock")
    monkeypatch.delenv("THREADLINE_STORE", raising=False)
    yield started
    await started.stop()


# -- a PostgreSQL role with a password --------------------------------------------------------


@attrs.frozen
class Role:
    name: str
    password: str

    def url(
        self,
        schema: str | None = None,
        *,
        port: int | None = None,
        database: str | None = None,
        query: str = "",
    ) -> str:
        base = postgres_url(schema, user=self.name, password=self.password)
        if port is not None:
            base = base.replace(":5432/", f":{port}/", 1)
        if database is not None:
            base = base.replace(f"/{postgres_database()}", f"/{database}", 1)
        if query:
            base += ("&" if "?" in base else "?") + query
        return base


@pytest.fixture(scope="module")
def role() -> Iterator[Role]:
    """A LOGIN role with :data:`PG_PASSWORD` (trust auth ignores it; the URL carries it)."""
    database = postgres_database()
    name = f"tl_secret_{secrets.token_hex(4)}"
    literal = PG_PASSWORD.replace("'", "''")
    run_sync(lambda: postgres_admin(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{literal}'"))
    run_sync(lambda: postgres_admin(f'GRANT CREATE, CONNECT ON DATABASE "{database}" TO "{name}"'))
    yield Role(name, PG_PASSWORD)
    with contextlib.suppress(Exception):
        run_sync(lambda: postgres_admin(f'DROP OWNED BY "{name}" CASCADE', database))
        run_sync(lambda: postgres_admin(f'DROP ROLE IF EXISTS "{name}"'))


# -- scenarios --------------------------------------------------------------------------------


async def invoke(*argv: str, env: Mapping[str, str | None] | None = None) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(argv), env=env)


def research() -> Strategy:
    s = Strategy("secret-research")

    @s.node("ask")
    async def ask(ctx: GraphContext, question: str) -> str:
        return await ctx.llm(question)

    @s.node("fail")
    async def fail(ctx: GraphContext, reply: str) -> str:
        try:
            await ctx.llm("echo-500")
        except ProviderError as exc:
            ctx.state["error"] = str(exc)
        return reply

    s.edge(s.start, ask).edge(ask, fail).edge(fail, s.finish)
    return s


async def scenario(handle: StoreHandle, server: ModelServer, watch: Watch) -> int:
    """Configs, agents, errors, graph runs and the CLI on one store; returns operations."""
    store, ops = handle.store, 0
    watch.see("store", store, store.url, store.primary, *store.plugins)
    tenant, user = new_id(), new_id()

    provider = ProviderRecord(
        tenant_id=tenant, name="openai", api_base=server.base_url, api_key_ref="env:OPENAI_API_KEY"
    )
    config = AgentConfig(
        agent=AgentRecord(
            tenant_id=tenant,
            code="helper",
            name="Helper",
            model="mock",
            provider_id=provider.id,
            system_prompt="be brief",
        ),
        provider=provider,
    )
    await store.save_agent_config(config)
    loaded = await store.load_agent_config(tenant_id=tenant, code="helper")
    assert loaded == config
    watch.see("config", loaded, loaded.provider if loaded else None)

    persistence = PersistencePlugin.from_store(store, tenant_id=tenant, user_id=user)
    agent = (
        await AgentBuilder.from_agent_config(config).with_persistence_plugin(persistence).build()
    )
    watch.see("agent", agent, agent.settings, agent.settings.provider, agent.persistence)
    assert await agent.chat("hello") == "All is well"
    ops += 3
    for prompt in ECHO_PROMPTS:
        ops += 1
        try:
            await agent.chat(prompt)
        except ProviderError as exc:
            watch.error(f"agent.chat({prompt})", exc)
        else:
            raise AssertionError(f"{prompt} did not fail")
    await agent.close()

    graph = GraphAgent(
        research(), provider="openai", tenant_id=tenant, user_id=user, features=[Persistency(store)]
    )
    sid = new_id()
    assert await graph.run("hello", session_id=sid) == "All is well"
    handle_ = graph.persistency(sid)
    checkpoints = await handle_.get_checkpoints()
    watch.see("graph", graph, graph.provider, handle_, graph.features, *checkpoints)
    await graph.close()
    ops += len(checkpoints) + 2

    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url, "OPENAI_MODEL": "mock"}
    common = ["--store", handle.url, "--tenant", tenant, "--user", user]
    for argv in (
        [
            "agents",
            "add",
            "--code",
            "cli-bot",
            "--api-base",
            server.base_url,
            "--api-key-env",
            "OPENAI_API_KEY",
            "--json",
        ],
        ["agents", "list"],
        ["agents", "list", "--json"],
        ["agents", "show", "cli-bot"],
        ["agents", "show", "helper"],
        ["chat", "--provider", "openai", "hello"],
        ["chat", "--provider", "openai", "echo-401"],
        ["chat", "--provider", "openai", "echo-stream-error"],
        ["sessions", "list", "--all-users", "--json"],
        ["sessions", "show", sid, "--json"],
    ):
        result = await invoke(*argv, *common, env=env)
        watch.cli(" ".join(argv), result)
        ops += 1
    shown = json.loads((await invoke("agents", "show", "cli-bot", *common)).output)
    assert shown["provider"]["api_key_ref"] == "env:OPENAI_API_KEY"
    return ops


STORE_CASES = [*KINDS, "postgres+password"]


@pytest.mark.parametrize("kind", STORE_CASES)
async def test_no_secret_in_logs_output_errors_or_storage(
    kind: str, tmp_path: Path, server: ModelServer, watch: Watch, request: pytest.FixtureRequest
) -> None:
    opened: Any
    if kind == "postgres+password":
        role: Role = request.getfixturevalue("role")
        schema = f"t_{secrets.token_hex(5)}"
        opened = open_store("postgres", tmp_path, url=role.url(schema), location=schema)
    else:
        opened = open_store(kind, tmp_path)
    async with opened as handle:
        operations = await scenario(handle, server, watch)
        stored = await handle.raw_bytes()
    assert all(r["authorization"] == f"Bearer {KEY}" for r in server.requests if r["prompt"])
    leaks = watch.leaks([("stored bytes", stored.decode("utf-8", "replace"))])
    record(
        "secrets_scenario",
        store=kind,
        what="API key and DB password never in repr, logs, errors, CLI output or storage",
        faults=len(ECHO_PROMPTS) + 3,
        operations=operations,
        lost=0,
        notes=f"{watch.checks} texts scanned, {len(leaks)} leaks",
    )
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks[:10])


# -- database passwords in failing connections ------------------------------------------------


def failing_urls(role: Role) -> dict[str, str]:
    db = postgres_database()
    quoted = quote(role.password, safe="")
    return {
        "refused port": role.url("s", port=1),
        "no such database": role.url("s", database="no_such_db_" + secrets.token_hex(3)),
        "no such role": role.url("s").replace(role.name, "no_such_role", 1),
        "bad schema option": role.url(None, query="schema=bad-name;DROP"),
        "unknown option": role.url("s", query="passwd=1"),
        "bad port": f"postgresql://{role.name}:{quoted}@127.0.0.1:99999/{db}",
        "unroutable host": role.url("s", query="connect_timeout=0.2").replace(
            "127.0.0.1", "10.255.255.1", 1
        ),
        "bad sslmode": role.url("s", query="sslmode=sure"),
        "sqlite with a password": f"sqlite://{role.name}:{quoted}@/tmp/x.db",
    }


TYPO_URLS = {
    "one slash": "postgresql:/{user}:{pw}@127.0.0.1:1/db",
    "no slashes": "postgresql:{user}:{pw}@127.0.0.1:1/db",
    "no scheme": "{user}:{pw}@127.0.0.1:1/db",
}


async def check_connection_errors(url: str, where: str, watch: Watch, tmp_path: Path) -> int:
    """Connect, the CLI and a graph Persistency on ``url``: typed errors, no password."""
    with pytest.raises(ThreadlineError) as info:
        store = await threadline.connect(url)
        await store.close()
    watch.error(f"{where}: connect", info.value)
    for argv in (["sessions", "list", "--store", url], ["migrate", url]):
        result = await invoke(*argv)
        assert result.exit_code != 0
        watch.cli(f"{where}: {argv[0]}", result)
    feature = Persistency(url)  # (its repr: test_persistency_repr_hides_the_password)
    graph = GraphAgent(research(), provider="echo", features=[feature])
    with pytest.raises(ThreadlineError) as info:
        await graph.run("hello")
    watch.error(f"{where}: graph", info.value)
    with contextlib.suppress(ThreadlineError):
        await graph.close()
    with contextlib.suppress(ThreadlineError):
        watch.see(f"{where}: StoreURL", StoreURL.parse(url))
    return 4


async def test_database_password_never_in_connection_errors(
    role: Role, watch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a URL read as a relative path lands here
    operations = 0
    cases = failing_urls(role)
    for name, url in cases.items():
        operations += await check_connection_errors(url, name, watch, tmp_path)
    leaks = watch.leaks()
    record(
        "secrets_connection_errors",
        store="postgres",
        what="DB password in failed connects",
        faults=len(cases),
        operations=operations,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "the password leaked:\n" + "\n".join(leaks[:10])


@pytest.mark.parametrize("typo", list(TYPO_URLS))
async def test_database_password_never_in_typo_url_errors(
    role: Role, watch: Watch, tmp_path: Path, typo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = TYPO_URLS[typo].format(user=role.name, pw=quote(role.password, safe=""))
    operations = await check_connection_errors(url, typo, watch, tmp_path)
    leaks = watch.leaks()
    record(
        "secrets_typo_url",
        store="postgres",
        what=f"DB password in a typo'd URL ({typo})",
        faults=1,
        operations=operations,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "the password leaked:\n" + "\n".join(leaks[:10])


async def test_file_url_with_a_password_is_refused(
    role: Role, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"file://{role.name}:{quote(role.password, safe='')}@localhost/tmp/x"
    try:
        with pytest.raises(ThreadlineError):
            store = await threadline.connect(url)
            await store.close()
    finally:
        on_disk = await asyncio.to_thread(lambda: [str(p) for p in tmp_path.rglob("*")])
        record(
            "secrets_file_url",
            store="fsspec-file",
            what="a file:// URL with a password",
            faults=1,
            operations=1,
            lost=0,
            notes=f"{sum(PW_MARK in p for p in on_disk)} paths with the password",
        )
    assert not any(PW_MARK in p for p in on_disk)


async def test_persistency_repr_hides_the_password(role: Role, watch: Watch) -> None:
    schema = f"t_{secrets.token_hex(5)}"
    feature = Persistency(role.url(schema))
    graph = GraphAgent(research(), provider="echo", features=[feature])
    watch.see("Persistency", feature, graph)
    try:
        backend = await feature.backend()
        watch.see("backend", backend, graph.persistency(new_id()))
    finally:
        await graph.close()
        await postgres_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', postgres_database())
    leaks = watch.leaks()
    record(
        "secrets_persistency_repr",
        store="postgres",
        what="repr of Persistency(URL)",
        faults=1,
        operations=1,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "\n".join(leaks)


# -- API keys at the provider -----------------------------------------------------------------


def provider_cases(server: ModelServer) -> dict[str, dict[str, Any]]:
    return {
        "key": {"api_key": KEY, "base_url": server.base_url},
        "key reference": {"api_key_ref": "env:OPENAI_API_KEY", "base_url": server.base_url},
        "literal key reference": {"api_key_ref": KEY, "base_url": server.base_url},
        "key from the environment": {"base_url": server.base_url},
        "refused port": {"api_key": KEY, "base_url": "http://127.0.0.1:1/v1"},
        "key in the URL's userinfo": {"api_key": KEY, "base_url": f"http://u:{KEY}@127.0.0.1:1/v1"},
        "key in an extra header": {
            "base_url": "http://127.0.0.1:1/v1",
            "headers": {"X-Api-Key": KEY},
        },
    }


async def test_api_key_never_in_provider_errors(server: ModelServer, watch: Watch) -> None:
    """Every error answer echoes the key; every error the caller sees is scrubbed."""
    operations = 0
    for name, options in provider_cases(server).items():
        provider = OpenAIProvider(model="mock", max_retries=0, connect_timeout=2, **options)
        watch.see(f"{name}: provider", provider)
        for prompt in ("hello", *ECHO_PROMPTS):
            operations += 1
            request = threadline.runtime.providers.ChatRequest(
                model="mock",
                messages=[
                    threadline.Message(
                        session_id=new_id(), tenant_id=new_id(), role="user", content=prompt
                    )
                ],
            )
            try:
                async for event in provider.stream(request):
                    watch.see(f"{name}: event", event)
            except ProviderError as exc:
                watch.error(f"{name}: {prompt}", exc)
        await provider.aclose()
    retrying = OpenAIProvider(
        api_key=KEY,
        base_url=server.base_url,
        model="mock",
        max_retries=1,
        retry_policy=threadline_openai_policy(),
    )
    with pytest.raises(ProviderError) as info:
        async for _ in retrying.stream(one_request("echo-503")):
            pass
    watch.error("retried 503", info.value)
    await retrying.aclose()
    leaks = watch.leaks()
    record(
        "secrets_provider_errors",
        store="-",
        what="API key echoed by the server",
        faults=len(ECHO_PROMPTS) * 7,
        operations=operations,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "the key leaked:\n" + "\n".join(leaks[:10])


def threadline_openai_policy() -> Any:
    from threadline_openai import RetryPolicy

    return RetryPolicy(initial_delay=0, jitter=0)


def one_request(prompt: str) -> threadline.runtime.providers.ChatRequest:
    message = threadline.Message(
        session_id=new_id(), tenant_id=new_id(), role="user", content=prompt
    )
    return threadline.runtime.providers.ChatRequest(model="mock", messages=[message])


async def test_api_key_never_in_tool_argument_errors(server: ModelServer, watch: Watch) -> None:
    provider = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="mock", max_retries=0)
    with pytest.raises(ProviderError) as info:
        async for _ in provider.stream(one_request("echo-tool")):
            pass
    await provider.aclose()
    watch.error("tool arguments", info.value)
    leaks = watch.leaks()
    record(
        "secrets_tool_arguments",
        store="-",
        what="API key in malformed tool-call arguments",
        faults=1,
        operations=1,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("where", ["query", "userinfo"])
async def test_api_key_in_the_base_url_never_logged(
    server: ModelServer, watch: Watch, where: str
) -> None:
    host = f"127.0.0.1:{server.port}"
    base = f"http://{host}/v1?api-key={KEY}" if where == "query" else f"http://user:{KEY}@{host}/v1"
    provider = OpenAIProvider(api_key=KEY, base_url=base, model="mock", max_retries=0)
    watch.see("provider", provider)
    try:
        async for event in provider.stream(one_request("hello")):
            watch.see("event", event)
    except ProviderError as exc:  # user info makes httpx send Basic auth: the server says 401
        watch.error("request", exc)
    finally:
        await provider.aclose()
    leaks = watch.leaks()
    record(
        "secrets_base_url_logs",
        store="-",
        what=f"API key in the base URL ({where})",
        faults=1,
        operations=1,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "\n".join(leaks)


# -- a key the user stores himself ------------------------------------------------------------


async def literal_key_config(handle: StoreHandle) -> tuple[str, AgentConfig]:
    tenant = new_id()
    provider = ProviderRecord(tenant_id=tenant, name="openai", api_key_ref=KEY)
    config = AgentConfig(
        agent=AgentRecord(
            tenant_id=tenant, code="literal", name="Literal", model="mock", provider_id=provider.id
        ),
        provider=provider,
    )
    await handle.store.save_agent_config(config)
    return tenant, config


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stored_key_stays_in_the_store(
    kind: str, tmp_path: Path, server: ModelServer, watch: Watch
) -> None:
    """A key the user puts in a config is stored (his choice) but never shown elsewhere."""
    async with open_store(kind, tmp_path) as handle:
        tenant, config = await literal_key_config(handle)
        loaded = await handle.store.load_agent_config(tenant_id=tenant, code="literal")
        assert loaded == config
        watch.see("config", loaded, config.provider, config.agent, handle.store)
        agent = await AgentBuilder.from_agent_config(config).with_store(handle.store).build()
        watch.see("agent", agent, agent.settings)
        assert await agent.chat("hello") == "All is well"
        with pytest.raises(ProviderError) as info:
            await agent.chat("echo-401")
        watch.error("401", info.value)
        await agent.close()
        stored = await handle.raw_bytes()
    assert KEY.encode() in stored, "the key the user stored is not in the store"
    leaks = watch.leaks()
    record(
        "secrets_literal_key",
        store=kind,
        what="a literal key: stored, never shown",
        faults=1,
        operations=4,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_cli_never_prints_a_stored_key(kind: str, tmp_path: Path, watch: Watch) -> None:
    async with open_store(kind, tmp_path) as handle:
        tenant, config = await literal_key_config(handle)
        common = ["--store", handle.url, "--tenant", tenant]
        path = tmp_path / "config.json"
        again = attrs.evolve(config.agent, code="again", id=new_id())
        path.write_text(json.dumps(AgentConfig(agent=again, provider=config.provider).to_dict()))
        for argv in (
            ["agents", "show", "literal"],
            ["agents", "list", "--json"],
            ["agents", "list"],
            ["agents", "add", "--from-file", str(path), "--json"],
        ):
            watch.cli(" ".join(argv), await invoke(*argv, *common))
    leaks = watch.leaks()
    record(
        "secrets_cli_literal_key",
        store=kind,
        what="CLI output of a stored literal key",
        faults=1,
        operations=4,
        lost=0,
        notes=f"{len(leaks)} leaks",
    )
    assert not leaks, "\n".join(leaks)
