"""The approvals page in a real browser, on SQLite and PostgreSQL: runs that another
process left waiting are listed and answered, recorded as ``threadline runs`` does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _desk import DESK, OTHER_DESK, OTHER_TENANT, PAY, PAY_TOO
from conftest import run_async

import threadline
from threadline.runtime.agent import LOCAL_TENANT_ID
from threadline.runtime.waiting import approval_state, list_waiting

pytestmark = pytest.mark.browser

T = LOCAL_TENANT_ID
HERE = Path(__file__).parent
DRAFT = "Echo: Please refund order 42."


def expect(page: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(page)


@pytest.fixture
def desk(store_url: str) -> str:
    """The store after another process left four runs waiting (one in another tenant)."""
    subprocess.run([sys.executable, str(HERE / "_desk.py"), store_url], check=True, env=os.environ)
    return store_url


async def _waiting(url: str, tenant: str = T) -> dict[str, Any]:
    store = await threadline.connect(url, create=False)
    try:
        return {run.session_id: run for run in await list_waiting(store, tenant)}
    finally:
        await store.close()


async def _checkpoints(url: str, session: str) -> list[Any]:
    store = await threadline.connect(url, create=False)
    try:
        found = await store.list_checkpoints(T, session_id=session)
        return sorted(found, key=lambda c: c.version or 0)
    finally:
        await store.close()


async def _go_on(url: str) -> tuple[Any, list[str]]:
    """What the agents do when they next run the sessions, in this process."""
    from _desk import make_agent, refund

    async with make_agent(url) as agent:
        finished = await agent.run(None, session_id=DESK)
    results = []
    for session in (PAY, PAY_TOO):
        chat = await (
            threadline.quick_agent("You handle refunds.", store=url)
            .with_session_id(session)
            .with_provider("echo")
            .with_tools([refund])
            .build()
        )
        async for _ in chat.continue_turn():
            pass
        store = chat.store
        messages = await store.get_messages(T, session)
        results += [m.content for m in messages if m.role == "tool"]
        await chat.close()
    return finished, results


def test_resume_approve_and_reject_from_the_page(
    desk: str, serve: Callable[..., str], page: Any, shot: Callable[[Any, str], Path]
) -> None:
    held = {s: run.calls[0] for s, run in run_async(_waiting(desk)).items() if run.calls}
    base = serve(desk)
    page.goto(base + f"/t/{T}/approvals")
    runs = page.locator("section.waiting")
    expect(runs).to_have_count(3)  # this tenant's: the desk run and two held refunds
    waiting = page.locator(f"#session-{DESK}")
    expect(waiting.locator("h2")).to_contain_text("Interrupt at draft")
    expect(waiting.locator("h2 .age")).to_contain_text("waiting")
    expect(waiting.locator("pre.payload")).to_contain_text('"question": "send this reply?"')
    expect(waiting.locator("pre.payload")).to_contain_text(DRAFT)
    expect(waiting).to_contain_text("refund-desk")
    pay = page.locator(f"#session-{PAY}")
    expect(pay.locator("h2")).to_contain_text("Tool approval")
    expect(pay.locator(".tool-name")).to_have_text("refund")
    expect(pay.locator("pre.arguments")).to_contain_text('"amount": 80')
    expect(page.locator(f"#session-{OTHER_DESK}")).to_have_count(0)
    shot(page, "approvals")

    # invalid JSON: one clear message, what was typed is kept, nothing is written
    waiting.locator("textarea[name=value]").fill("{send: yes")
    waiting.locator("button", has_text="Resume").click()
    expect(page.locator("#error")).to_contain_text("ValidationError: the resume value is not JSON")
    expect(waiting.locator("textarea[name=value]")).to_have_value("{send: yes")
    assert DESK in run_async(_waiting(desk))

    waiting.locator("textarea[name=value]").fill('{"send": true}')
    waiting.locator("button", has_text="Resume").click()
    done = page.locator("#done")
    expect(done).to_contain_text('with {"send": true}: recorded; the run goes on when its agent')
    expect(page.locator(f"#session-{DESK}")).to_have_count(0)
    latest = run_async(_checkpoints(desk, DESK))[-1]
    assert latest.properties["kind"] == "resume"
    assert latest.properties["replay"]["values"] == [{"send": True}]

    # a waiting run is linked from its conversation and checkpoint pages
    for where in (f"/s/{PAY}", f"/s/{PAY}/checkpoints"):
        page.goto(base + f"/t/{T}" + where)
        expect(page.locator("#waiting-link")).to_be_visible()
    page.goto(base + f"/t/{T}/s/{DESK}")
    expect(page.locator("#waiting-link")).to_have_count(0)  # answered
    page.goto(base + f"/t/{T}/s/{PAY}")
    page.click("#waiting-link a")

    pay.locator("textarea[name=arguments]").fill('{"order": "42", "amount": 50}')
    pay.locator("button", has_text="Approve").click()
    expect(done).to_contain_text(
        f'approved {held[PAY].id} with arguments {{"amount": 50, "order": "42"}}: recorded'
    )
    too = page.locator(f"#session-{PAY_TOO}")
    too.locator("input[name=reason]").fill("over the limit")
    too.locator("button", has_text="Reject").click()
    expect(done).to_contain_text(f"rejected {held[PAY_TOO].id}: recorded")
    # both turns are decided; they stay listed until their agent runs the tools
    expect(runs).to_have_count(2)
    expect(runs.locator("h2")).to_have_text([re.compile("Tool approval decided")] * 2)
    expect(page.locator("form.answer")).to_have_count(0)

    # answering again (a second tab, another operator): refused, nothing written
    page.goto(base + f"/t/{T}/s/{DESK}")
    token = page.locator("input[name=csrf]").first.input_value()
    again = page.request.post(
        base + f"/t/{T}/approvals/{latest.properties['resumed']}/resume",
        form={"csrf": token, "value": "1"},
    )
    assert again.status == 409
    assert "NotWaitingError: interrupt" in again.text() and "no longer waits" in again.text()
    twice = page.request.post(
        base + f"/t/{T}/approvals/{run_async(_checkpoints(desk, PAY))[-1].id}"
        f"/calls/{held[PAY].id}/reject",
        form={"csrf": token, "reason": "late"},
    )
    assert twice.status == 409 and "NotWaitingError: no tool call" in twice.text()

    # recorded exactly as the CLI records it: the agents go on with these answers
    pay_state = approval_state(run_async(_checkpoints(desk, PAY)))
    assert pay_state is not None
    assert pay_state.decisions[held[PAY].id] == {
        "approved": True,
        "call_id": held[PAY].id,
        "arguments": {"order": "42", "amount": 50},
        "original_arguments": {"order": "42", "amount": 80},
    }
    finished, results = run_async(_go_on(desk))
    assert finished == "sent: " + DRAFT
    assert results == ["refunded 50 on 42", "rejected: over the limit"]


def test_with_agent_the_run_finishes_on_the_page(
    desk: str, serve: Callable[..., str], page: Any
) -> None:
    from _desk import make_agent

    from threadline_ui.config import agents_of

    base = serve(desk, agents=agents_of([make_agent(desk)]))
    page.goto(base + f"/t/{T}/approvals")
    expect(page.locator(".note").first).to_contain_text("continues here right away")
    waiting = page.locator(f"#session-{DESK}")
    waiting.locator("textarea[name=value]").fill('{"send": false}')
    waiting.locator("button", has_text="Resume").click()
    expect(page.locator("#done")).to_contain_text(
        "recorded; the run continued and finished: " + json.dumps("dropped: " + DRAFT)
    )
    page.goto(base + f"/t/{T}/s/{DESK}/checkpoints")
    expect(page.locator("#tree a.node").last).to_contain_text("tombstone")
    # a chat turn is not a GraphAgent's: recorded, left for its agent's continue_turn
    page.goto(base + f"/t/{T}/approvals")
    page.locator(f"#session-{PAY} button", has_text="Approve").click()
    expect(page.locator("#done")).to_contain_text("recorded; the run goes on when its agent")


def test_read_only_and_other_tenants_are_refused(
    desk: str, serve: Callable[..., str], page: Any
) -> None:
    other = run_async(_waiting(desk, OTHER_TENANT))[OTHER_DESK]
    mine = run_async(_waiting(desk))
    reader = serve(desk, read_only=True)
    page.goto(reader + f"/t/{T}/approvals")
    expect(page.locator("section.waiting")).to_have_count(3)  # shown ...
    expect(page.locator("form.answer")).to_have_count(0)  # ... but cannot be answered
    refused = page.request.post(
        reader + f"/t/{T}/approvals/{mine[DESK].id}/resume", form={"csrf": "x", "value": "1"}
    )
    assert refused.status == 403 and "read-only" in refused.text()

    base = serve(desk)
    page.goto(base + f"/t/{T}/approvals")
    token = page.locator("input[name=csrf]").first.input_value()
    forged = page.request.post(
        base + f"/t/{T}/approvals/{mine[DESK].id}/resume", form={"csrf": "nope", "value": "1"}
    )
    assert forged.status == 403
    for path in (
        f"/t/{T}/approvals/{other.id}/resume",  # another tenant's interrupt under this one
        f"/t/{T}/approvals/01a00000-0000-7000-8000-00000000beef/resume",  # no such run
        f"/t/{OTHER_TENANT}/approvals/{other.id}/resume",
    ):
        response = page.request.post(base + path, form={"csrf": token, "value": "1"})
        assert response.status == 404, path
        assert "send this reply" not in response.text()
    assert page.goto(base + f"/t/{OTHER_TENANT}/approvals").status == 404
    wrong_call = page.request.post(
        base + f"/t/{T}/approvals/{mine[PAY].id}/calls/call_nope/approve",
        form={"csrf": token, "arguments": ""},
    )
    assert wrong_call.status == 409
    assert "no tool call &#39;call_nope&#39; waits" in wrong_call.text()
    not_object = page.request.post(
        base + f"/t/{T}/approvals/{mine[PAY].id}/calls/{mine[PAY].calls[0].id}/approve",
        form={"csrf": token, "arguments": "[1, 2]"},
    )
    assert not_object.status == 400 and "must be a JSON object" in not_object.text()
    # nothing was written anywhere
    assert run_async(_waiting(desk, OTHER_TENANT)).keys() == {OTHER_DESK}
    assert run_async(_waiting(desk)).keys() == mine.keys()
