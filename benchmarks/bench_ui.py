"""Page load of ``threadline ui`` for a 10,000-message session (target: under 200 ms).

Builds a store with one 10,000-message session (with tool calls and API calls) and 60
smaller ones, serves the UI on 127.0.0.1 in a thread, and measures p50 / p95 of:

* **server**: one HTTP GET over loopback, request to last byte (a new connection each);
* **browser**: Debian's headless Chromium (Playwright), navigation start to the load
  event (HTML, stylesheet and script; the live page's event stream opens after it).

Pages: the conversation's latest page (100 messages: count + one range read), a page in
the middle (``?before=5000``), the session list (50 rows) and the session's API calls.

    pip install -e . -e plugins/sqlite -e plugins/ui playwright   # + -e plugins/postgres
    python benchmarks/bench_ui.py                        # SQLite in a temporary folder
    python benchmarks/bench_ui.py --store postgresql://postgres@127.0.0.1:5432/bench_ui
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import environment, percentile, print_table

import threadline
from threadline.models import ApiCall, Message, Session, ToolCall, utcnow
from threadline.runtime.agent import LOCAL_TENANT_ID, LOCAL_USER_ID

MESSAGES = 10_000
TARGET_MS = 200.0
CHROMIUM = os.environ.get("THREADLINE_UI_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def build(url: str) -> str:
    """The store with the big session; returns its id."""
    store = await threadline.connect(url)
    t, u = LOCAL_TENANT_ID, LOCAL_USER_ID
    try:
        for i in range(60):
            s = await store.create_session(Session(tenant_id=t, user_id=u, title=f"small {i}"))
            await store.save_messages(
                [
                    Message(session_id=s.id, tenant_id=t, role=r, content=f"{r} {i}")
                    for r in ("user", "assistant")
                ]
            )
        big = await store.create_session(Session(tenant_id=t, user_id=u, title="10,000 messages"))
        batch: list[Message] = []
        now = utcnow()
        for n in range(MESSAGES // 4):
            call = ToolCall(id=f"call_{n}", name="lookup", arguments={"n": n})
            batch += [
                Message(session_id=big.id, tenant_id=t, role="user", content=f"question {n} " * 8),
                Message(session_id=big.id, tenant_id=t, role="assistant", tool_calls=(call,)),
                Message(
                    session_id=big.id,
                    tenant_id=t,
                    role="tool",
                    tool_call_id=call.id,
                    content=f"result {n}",
                ),
                Message(
                    session_id=big.id,
                    tenant_id=t,
                    role="assistant",
                    content=f"answer {n} " * 20,
                    metadata={"finish_reason": "stop"},
                ),
            ]
            if len(batch) >= 1000:
                await store.save_messages(batch)
                batch = []
        if batch:
            await store.save_messages(batch)
        for n in range(200):
            await store.save_api_call(
                ApiCall(
                    tenant_id=t,
                    session_id=big.id,
                    model="gpt-4o-mini",
                    status="success",
                    prompt_tokens=500 + n,
                    completion_tokens=80,
                    total_tokens=580 + n,
                    latency_ms=400.0 + n,
                    time_to_first_token_ms=120.0,
                    created_at=now - timedelta(minutes=200 - n),
                )
            )
        if await store.count_messages(t, big.id) != MESSAGES:
            raise RuntimeError("the big session does not hold 10,000 messages")
        return big.id
    finally:
        await store.close()


async def poll_cost(url: str, session_id: str, runs: int = 500) -> list[float]:
    """Seconds per store read a live page makes each poll interval (nothing new to send)."""
    store = await threadline.connect(url, create=False)
    try:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            await store.get_messages(LOCAL_TENANT_ID, session_id, after_seq=MESSAGES, limit=200)
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        await store.close()


def get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store URL (default: SQLite in a temporary folder)")
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    from threadline_ui import BackgroundServer, UIConfig

    with tempfile.TemporaryDirectory() as folder:
        url = options.store or f"sqlite:///{Path(folder) / 'bench.db'}"
        started = time.perf_counter()
        big = asyncio.run(build(url))
        print(f"built {MESSAGES:,} messages in {time.perf_counter() - started:.1f} s")
        config = UIConfig(tenant_id=LOCAL_TENANT_ID, store_label="bench")
        with BackgroundServer(url, config) as base:
            pages = {
                "conversation, latest page": f"{base}/t/{LOCAL_TENANT_ID}/s/{big}",
                "conversation, ?before=5000": f"{base}/t/{LOCAL_TENANT_ID}/s/{big}?before=5000",
                "session list (50 rows)": f"{base}/t/{LOCAL_TENANT_ID}/",
                "API calls (200) with charts": f"{base}/t/{LOCAL_TENANT_ID}/s/{big}/usage",
            }
            server: dict[str, list[float]] = {}
            for name, page_url in pages.items():
                get(page_url)  # warm
                server[name] = [get(page_url) for _ in range(options.runs)]
            browser = measure_browser(pages, options.runs)
        rows = []
        worst = 0.0
        for name in pages:
            s50, s95 = percentile(server[name], 50) * 1e3, percentile(server[name], 95) * 1e3
            b = browser.get(name)
            b50 = percentile(b, 50) if b else float("nan")
            b95 = percentile(b, 95) if b else float("nan")
            worst = max(worst, s95, b95 if b else 0.0)
            rows.append((name, f"{s50:.1f}", f"{s95:.1f}", f"{b50:.1f}", f"{b95:.1f}"))
        print_table(
            f"threadline ui page load, ms ({url.split(':', 1)[0]}, {environment()})",
            ["page", "server p50", "server p95", "browser p50", "browser p95"],
            rows,
        )
        poll = asyncio.run(poll_cost(url, big))
        print(
            f"\nlive page poll (one range read per interval, default 0.25 s): "
            f"p50 {percentile(poll, 50) * 1e3:.3f} ms, p95 {percentile(poll, 95) * 1e3:.3f} ms"
        )
        verdict = "PASS" if worst < TARGET_MS else "FAIL"
        print(f"\n{verdict}: worst p95 {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")
        return 0 if verdict == "PASS" else 1


def measure_browser(pages: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Navigation start to load event, in ms, per page (empty without Chromium)."""
    if not os.path.exists(CHROMIUM):
        print(f"no {CHROMIUM}: browser figures skipped")
        return {}
    from playwright.sync_api import sync_playwright

    found: dict[str, list[float]] = {}
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = chromium.new_page()
        for name, page_url in pages.items():
            page.goto(page_url)  # warm: caches the stylesheet and script like a real visit
            samples = []
            for _ in range(runs):
                page.goto(page_url, wait_until="load")
                samples.append(
                    page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return n.loadEventEnd - n.startTime; }"
                    )
                )
            found[name] = samples
        chromium.close()
    return found


if __name__ == "__main__":
    sys.exit(main())
