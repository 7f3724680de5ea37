"""The UI in a real browser (Debian's Chromium via Playwright), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import OTHER_TENANT, PASSWORD, Seeded

from threadline.runtime.agent import LOCAL_TENANT_ID
from threadline_ui.config import inverses_of

pytestmark = pytest.mark.browser

T = LOCAL_TENANT_ID
HERE = Path(__file__).parent


def expect(page: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(page)


def test_session_list_search_and_conversation(
    seeded: Seeded, serve: Callable[..., str], page: Any, shot: Callable[[Any, str], Path]
) -> None:
    base = serve(seeded.url)
    page.goto(base + "/")
    rows = page.locator("#sessions tbody tr")
    expect(rows).to_have_count(7)  # three fillers, chat, zebra, failed, travel: this tenant only
    # newest activity first: the graph run was written last
    expect(rows.first).to_contain_text("travel")
    expect(page.locator("#sessions")).not_to_contain_text("Other tenant")
    expect(page.locator("#sessions")).to_contain_text("interrupted")
    if "postgres" in seeded.url:
        assert PASSWORD not in page.content()  # the store URL is shown without its password
        expect(page.locator("header .where")).to_contain_text("***")
    shot(page, "sessions")

    page.fill("input[name=q]", "ZEBRA")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Animals")
    expect(rows.first.locator(".snippet")).to_contain_text("zebra crossing")

    page.select_option("select[name=status]", "error")
    page.fill("input[name=q]", "")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Failing model")

    page.goto(base + f"/t/{T}/?since=2000-01-01&until=2000-12-31")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("No sessions match")

    page.goto(base + "/")
    page.click("text=Weather in Oslo")
    messages = page.locator("#messages article")
    expect(messages).to_have_count(4)  # the tool result is shown under its call
    call = page.locator("#call-call_weather_1")
    expect(call).to_contain_text("get_weather")
    expect(call).to_contain_text('"city": "Oslo"')
    expect(call.locator(".tool-result")).to_have_text("→ 7°C and drizzle")
    last = messages.last
    expect(last.locator("pre")).not_to_be_visible()  # metadata on demand
    last.locator("summary").click()
    expect(last.locator("pre")).to_contain_text("abc-123")
    shot(page, "conversation")

    page.goto(base + f"/t/{T}/s/{seeded.failed}")
    expect(page.locator("#messages article").last).to_contain_text("error")


def test_reply_streams_in_from_another_process(
    seeded: Seeded, serve: Callable[..., str], page: Any
) -> None:
    base = serve(seeded.url, poll_interval=0.1)
    page.goto(base + f"/t/{T}/s/{seeded.chat}")
    expect(page.locator("#live-state")).to_have_text("live")
    words = [f"word{i}" for i in range(24)]
    pauses = (7, 13, 19)  # the writer waits after these pieces (piece n + 2 is word n)
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "_writer.py"), seeded.url, seeded.chat, "24",
         ",".join(map(str, pauses))],
        env={**os.environ},
        stdin=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert writer.stdin is not None
    try:
        reply = page.locator("#messages article.role-assistant").nth(2)
        # While the writer waits, the page shows the reply as far as it got, still
        # streaming: the test releases it only after seeing that state (no timing).
        for piece in pauses:
            partial = "Echo: " + " ".join(words[: piece - 1])
            expect(reply.locator(".content")).to_have_text(partial)
            expect(reply).to_have_attribute("data-status", "streaming")
            writer.stdin.write("go\n")
            writer.stdin.flush()
        writer.stdin.close()
        assert writer.wait(30) == 0
    finally:
        writer.kill()
    # the question, then the reply growing word by word while it streamed, then complete
    expect(page.locator("#messages article.role-user").last).to_contain_text("word23")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".content")).to_have_text("Echo: " + " ".join(words))


def test_usage_page_shows_calls_tokens_and_charts(
    seeded: Seeded, serve: Callable[..., str], page: Any, shot: Callable[[Any, str], Path]
) -> None:
    from threadline_ui.config import Price

    base = serve(seeded.url, prices={"gpt-4o-mini": Price(prompt=0.15, completion=0.6)})
    page.goto(base + f"/t/{T}/s/{seeded.chat}/usage")
    expect(page.locator("#calls tbody tr")).to_have_count(2)
    expect(page.locator("#totals")).to_contain_text("302")  # 150 + 152 tokens
    # cost: (120*0.15 + 30*0.6 + 121*0.15 + 31*0.6) / 1e6
    expect(page.locator("#totals")).to_contain_text("0.0001")
    page.goto(base + f"/t/{T}/usage")
    expect(page.locator("#calls")).to_contain_text("failed")
    expect(page.locator("figure.chart")).to_have_count(3)
    expect(page.locator("figure.chart svg rect.bar").first).to_be_attached()
    shot(page, "usage")


def test_checkpoint_tree_diff_and_rollback_running_inverses(
    seeded: Seeded,
    serve: Callable[..., str],
    page: Any,
    tool_log: Path,
    shot: Callable[[Any, str], Path],
) -> None:
    from _travel import agent

    base = serve(seeded.url, inverses=inverses_of([agent]))
    assert tool_log.read_text().splitlines() == ["reserve 1A", "book Oslo", "charge 100"]
    page.goto(base + f"/t/{T}/s/{seeded.graph}/checkpoints")
    nodes = page.locator("#tree a.node")
    expect(nodes).to_have_count(4)  # after search, book and check; the tombstone
    expect(nodes.nth(0)).to_contain_text("v1 · book · auto · 2 msgs")
    expect(nodes.nth(1)).to_contain_text("v2 · check · auto · 8 msgs")
    expect(nodes.nth(3)).to_contain_text("finished · tombstone")

    page.check("#cp-3 input")
    page.check("#cp-1 input")
    page.check("#cp-2 input")  # a third pick drops the first
    expect(page.locator("#cp-3 input")).not_to_be_checked()
    page.click("#compare-button")
    expect(page.locator("h2")).to_have_text("From v1 to v2")
    added = page.locator("#added article")
    expect(added).to_have_count(6)  # the prompt, two tool calls with results, the echo
    expect(page.locator("#added .tool-name")).to_have_text(["book_hotel", "charge"])
    expect(page.locator("#removed")).to_contain_text("none")
    expect(page.locator("#state-diff")).to_contain_text("booked")
    shot(page, "diff")

    page.goto(base + f"/t/{T}/s/{seeded.graph}/checkpoints")
    page.click("#cp-1 a")
    undo = page.locator("#undo tbody tr")
    expect(undo).to_have_count(2)  # newest first: charge, then book_hotel
    expect(undo.nth(0)).to_contain_text("inverse refund() runs")
    expect(undo.nth(1)).to_contain_text("inverse cancel_hotel() runs")
    expect(undo.nth(1)).to_contain_text("booking-Oslo")
    expect(page.locator("#rollback-button")).to_have_text("Roll back to v1 and run 2 inverse tools")
    shot(page, "rollback")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#rollback-button")
    expect(page.locator("#done")).to_contain_text(
        "rolled back to version 1: wrote version 5; 2 inverse(s) ran, 0 call(s) not undone"
    )
    assert tool_log.read_text().splitlines()[3:] == ["refund 100", "cancel Oslo (booking-Oslo)"]
    expect(nodes).to_have_count(5)
    expect(nodes.nth(4)).to_contain_text("v5 · book · rollback (to v1) · 2 msgs")
    # the rollback opened a branch at v1: a second column in the picture
    assert page.locator("#tree a.node").nth(4).locator("circle").get_attribute("cx") == "44"
    shot(page, "checkpoints")


def test_rollback_without_inverses_lists_calls_not_undone(
    seeded: Seeded, serve: Callable[..., str], page: Any, tool_log: Path
) -> None:
    base = serve(seeded.url)
    page.goto(base + f"/t/{T}/s/{seeded.graph}/checkpoints")
    page.click("#cp-1 a")
    expect(page.locator("#undo tbody tr").nth(0)).to_contain_text("no inverse registered")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#rollback-button")
    expect(page.locator("#done")).to_contain_text("0 inverse(s) ran, 2 call(s) not undone")
    assert "refund" not in tool_log.read_text()


# The token check is the same on every store: SQLite shows it (no PostgreSQL seeding).
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_off_loopback_needs_the_token(seeded: Seeded, page: Any, tmp_path: Path) -> None:
    """Through the real command: bound to 0.0.0.0 it generates and prints a token."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "threadline.cli",
            "ui",
            "--store",
            seeded.url,
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "THREADLINE_UI_TOKEN"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert "?token=" in first, first + (process.stderr.read() if process.poll() else "")
        link = first.strip().rsplit(" ", 1)[-1]
        token = second.strip().rsplit(" ", 1)[-1]
        assert link.endswith(f"?token={token}") and len(token) >= 24
        bare = link.split("?")[0]
        response = page.goto(bare)
        assert response.status == 401
        expect(page.locator("body")).to_contain_text("needs its access token")
        assert page.goto(bare + f"t/{T}/s/{seeded.chat}").status == 401
        assert (
            page.request.get(bare, headers={"Authorization": "Bearer wrong-token-123456"}).status
            == 401
        )
        assert page.request.get(bare, headers={"Authorization": f"Bearer {token}"}).ok
        page.goto(link)  # the printed URL: the token becomes a cookie, then leaves the address
        expect(page.locator("#sessions tbody tr")).to_have_count(7)
        assert "token" not in page.url
        page.goto(bare + f"t/{T}/s/{seeded.chat}")
        expect(page.locator("#messages article")).to_have_count(4)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            print("STDERR", process.communicate()[1])
            raise


def test_cross_tenant_urls_are_refused(
    seeded: Seeded, serve: Callable[..., str], page: Any
) -> None:
    base = serve(seeded.url)
    for path in (
        f"/t/{OTHER_TENANT}/",
        f"/t/{OTHER_TENANT}/s/{seeded.other}",
        f"/t/{T}/s/{seeded.other}",  # another tenant's session under this tenant
        f"/t/{T}/s/{seeded.other}/events",
        f"/t/{OTHER_TENANT}/usage",
    ):
        response = page.goto(base + path)
        assert response.status == 404, path
        assert "secret plans" not in page.content()
    admin = serve(seeded.url, tenant_id=None)  # --all-tenants
    page.goto(admin + "/")
    expect(page.locator("ul.tenants li")).to_have_count(2)
    page.goto(admin + f"/t/{OTHER_TENANT}/")
    expect(page.locator("#sessions")).to_contain_text("Other tenant's secret plans")


def test_writes_need_csrf_and_are_refused_read_only(
    seeded: Seeded, serve: Callable[..., str], page: Any
) -> None:
    base = serve(seeded.url)
    page.goto(base + f"/t/{T}/s/{seeded.zebra}")
    forged = page.request.post(base + f"/t/{T}/s/{seeded.zebra}/delete", form={"csrf": "nope"})
    assert forged.status == 403
    cross = page.request.post(
        base + f"/t/{T}/s/{seeded.zebra}/delete",
        form={"csrf": page.locator("input[name=csrf]").input_value()},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status == 403
    page.reload()
    expect(page.locator("#messages article")).to_have_count(2)  # nothing was deleted
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("form.danger button")
    expect(page.locator("#sessions tbody tr")).to_have_count(6)

    reader = serve(seeded.url, read_only=True)
    page.goto(reader + f"/t/{T}/s/{seeded.graph}/checkpoints")
    page.click("#cp-1 a")
    expect(page.locator("#undo")).to_be_visible()  # the plan is shown ...
    expect(page.locator("#rollback-button")).to_have_count(0)  # ... but cannot be run
    checkpoint = page.url.rsplit("/", 1)[-1]
    refused = page.request.post(
        reader + f"/t/{T}/s/{seeded.graph}/checkpoints/{checkpoint}/rollback",
        form={"csrf": "x"},
    )
    assert refused.status == 403
    assert "read-only" in refused.text()
