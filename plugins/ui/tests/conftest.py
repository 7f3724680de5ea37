"""Fixtures: real stores (a SQLite file; a throwaway PostgreSQL database), seeded with
conversations, API calls and a graph run; UI servers in a thread; Debian's Chromium.

The browser is ``/usr/bin/chromium`` (``$THREADLINE_UI_CHROMIUM``) driven by Playwright's
Python client; Playwright's own browser downloads are never used. Without it (or without
the PostgreSQL server) tests skip with the reason, except under CI (``CI`` set), where they
fail. Screenshots go to ``docs/images/`` when ``THREADLINE_UI_SCREENSHOTS=1``, else to a
temporary folder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

os.environ["THREADLINE_LOAD_PLUGINS"] = ",".join(
    name
    for name, module in (
        ("threadline-sqlite", "threadline_sqlite"),
        ("threadline-postgres", "threadline_postgres"),
        ("threadline-ui", "threadline_ui"),
    )
    if __import__("importlib.util").util.find_spec(module) is not None
)
sys.path.insert(0, str(Path(__file__).parent))

import attrs

import threadline
from threadline.models import ApiCall, Message, Session, ToolCall, utcnow
from threadline.runtime.agent import LOCAL_AGENT_ID, LOCAL_TENANT_ID, LOCAL_USER_ID
from threadline_ui import BackgroundServer, UIConfig

CHROMIUM = os.environ.get("THREADLINE_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[3]
ADMIN_URL = os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
OTHER_TENANT = "00000000-0000-7000-8000-0000000000aa"
PASSWORD = "s3cret-pw-never-shown"


def run_async(coro: Any) -> Any:
    """Run a coroutine in a thread of its own: Playwright's sync API owns this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def unavailable(reason: str) -> None:
    """Skip with ``reason``; under CI fail instead."""
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


# -- browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (one for the whole run)."""
    if not os.path.exists(CHROMIUM):
        unavailable(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium), "
            "as .ci/run and dev.py test do"
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    # Waits are bounds, not timings: a loaded CI machine may take seconds to render a page
    # (Playwright's default for expect() is 5 s).
    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page (own cookies), 1200x800; actions wait up to 30 s."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(30_000)
    made = context.new_page()
    yield made
    context.close()


@pytest.fixture
def shot(tmp_path: Path) -> Callable[[Any, str], Path]:
    """``shot(page, "sessions")``: a screenshot (docs/images/ with THREADLINE_UI_SCREENSHOTS=1)."""
    folder = ROOT / "docs" / "images" if os.environ.get("THREADLINE_UI_SCREENSHOTS") else tmp_path

    def take(page: Any, name: str) -> Path:
        path = folder / f"ui-{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take


# -- stores --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database for this run on the PostgreSQL server (dropped afterwards)."""
    try:
        import asyncpg
    except ImportError:
        unavailable("threadline-postgres (asyncpg) is not installed")
    from threadline.urls import StoreURL

    name = f"threadline_ui_test_{secrets.token_hex(5)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        run_async(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL not reachable at {StoreURL.parse(ADMIN_URL)}: {exc}")
    parsed = StoreURL.parse(ADMIN_URL)
    user = parsed.username or "postgres"
    # trust auth ignores the password: it is there to check that no page shows it
    yield f"postgresql://{user}:{PASSWORD}@{parsed.host}:{parsed.port or 5432}/{name}"
    try:
        run_async(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception as exc:
        print(f"could not drop {name}: {exc}")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated store: a SQLite file, or a schema of its own in PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ui.db'}"
    else:
        database = request.getfixturevalue("postgres_database")
        url = f"{database}?schema=ui_{secrets.token_hex(4)}"

    async def create() -> None:
        store = await threadline.connect(url)
        await store.close()

    run_async(create())
    return url


@attrs.frozen
class Seeded:
    """What :func:`seeded` wrote."""

    url: str
    chat: str
    zebra: str
    failed: str
    graph: str
    other: str
    many: list[str]


async def _seed(url: str) -> Seeded:
    store = await threadline.connect(url)
    t, u, a = LOCAL_TENANT_ID, LOCAL_USER_ID, LOCAL_AGENT_ID
    try:
        now = utcnow()

        async def session(title: str, *msgs: dict[str, Any], tenant: str = t) -> str:
            s = await store.create_session(
                Session(tenant_id=tenant, user_id=u, agent_id=a, title=title)
            )
            if msgs:
                await store.save_messages(
                    [Message(session_id=s.id, tenant_id=tenant, user_id=u, **m) for m in msgs]
                )
            return s.id

        many = [
            await session(f"filler {i}", {"role": "user", "content": f"hi {i}"}) for i in range(3)
        ]
        call = ToolCall(id="call_weather_1", name="get_weather", arguments={"city": "Oslo"})
        chat = await session(
            "Weather in Oslo",
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": (call,)},
            {
                "role": "tool",
                "content": "7°C and drizzle",
                "tool_call_id": "call_weather_1",
                "name": "get_weather",
            },
            {
                "role": "assistant",
                "content": "It is 7°C with drizzle in Oslo.",
                "metadata": {"finish_reason": "stop", "trace": "abc-123"},
            },
        )
        for i, (status, latency) in enumerate([("success", 820.0), ("success", 1430.5)]):
            await store.save_api_call(
                ApiCall(
                    tenant_id=t,
                    session_id=chat,
                    model="gpt-4o-mini",
                    status=status,
                    prompt_tokens=120 + i,
                    completion_tokens=30 + i,
                    total_tokens=150 + 2 * i,
                    latency_ms=latency,
                    time_to_first_token_ms=210.0 + i,
                    tokens_per_second=41.5,
                    created_at=now - timedelta(minutes=30 - 10 * i),
                )
            )
        zebra = await session(
            "Animals",
            {"role": "user", "content": "Tell me about the zebra crossing the road."},
            {"role": "assistant", "content": "Zebras have stripes.", "status": "interrupted"},
        )
        failed = await session(
            "Failing model",
            {"role": "user", "content": "Anything?"},
            {
                "role": "assistant",
                "content": "Partial answ",
                "status": "error",
                "metadata": {"error": "ProviderServerError: 502"},
            },
        )
        await store.save_api_call(
            ApiCall(
                tenant_id=t,
                session_id=failed,
                model="gpt-4o-mini",
                status="failed",
                error_message="502 Bad Gateway",
                error_code="502",
                latency_ms=95.0,
                created_at=now - timedelta(minutes=5),
            )
        )
        other = await session(
            "Other tenant's secret plans",
            {"role": "user", "content": "tenant-b confidential zebra"},
            tenant=OTHER_TENANT,
        )
    finally:
        await store.close()
    from _travel import make_agent

    graph = "01a00000-0000-7000-8000-00000000c0de"
    async with make_agent(url) as agent:
        await agent.run("Oslo", session_id=graph)
    return Seeded(url, chat, zebra, failed, graph, other, many)


@pytest.fixture
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the travel agent's tools and inverses append to."""
    path = tmp_path / "tools.log"
    monkeypatch.setenv("UI_TEST_TOOL_LOG", str(path))
    return path


@pytest.fixture
def seeded(store_url: str, tool_log: Path) -> Seeded:
    """The store with four sessions of this tenant, one of another, API calls and a
    finished travel graph run (reserve_seat, book_hotel, charge) with its checkpoints."""
    return run_async(_seed(store_url))


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(url, **config)``: a UI server in a thread; returns its base URL."""
    servers: list[BackgroundServer] = []

    def start(url: str, host: str = "127.0.0.1", **options: Any) -> str:
        from threadline.urls import StoreURL

        options.setdefault("tenant_id", LOCAL_TENANT_ID)
        options.setdefault("store_label", StoreURL.parse(url).redacted())
        server = BackgroundServer(url, UIConfig(**options), host=host)
        base = server.__enter__()
        servers.append(server)
        return base

    yield start
    for server in servers:
        server.__exit__(None, None, None)
