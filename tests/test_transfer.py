"""``threadline.transfer``: copy between stores, export and import, and their CLI commands."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
from click.testing import CliRunner

import threadline
from threadline.cli.transfer import copy_command, export_command, import_command
from threadline.errors import ConflictError, StoreError
from threadline.ids import new_id
from threadline.models import (
    AgentConfig,
    AgentRecord,
    ApiCall,
    Checkpoint,
    Message,
    MessageStatus,
    ProviderRecord,
    Role,
    Session,
    ToolCall,
)
from threadline.store import Store
from threadline.transfer import copy_store, export_records, import_records
from threadline.transfer.format import FORMAT_NAME, FORMAT_VERSION, ExportFormatError

TENANTS = (new_id(), new_id())
USERS = (new_id(), new_id())


# -- data -----------------------------------------------------------------------------------


async def populate(store: Store, sessions_per_user: int = 2, messages: int = 23) -> None:
    """Two tenants, agents with and without providers, sessions with every kind of row."""
    for t_index, tenant in enumerate(TENANTS):
        provider = ProviderRecord(
            tenant_id=tenant, name="local", api_base="http://x/v1", api_key_ref="env:KEY"
        )
        agent = await store.save_agent_config(
            AgentConfig(
                agent=AgentRecord(
                    tenant_id=tenant,
                    code="helper",
                    name="Helper",
                    system_prompt="Be brief.",
                    model="m",
                    temperature=0.25,
                    window=4,
                    response_format={"type": "json_object"},
                    custom_params={"top_p": 0.5},
                    provider_id=provider.id,
                ),
                provider=provider,
            )
        )
        await store.save_agent_config(
            AgentConfig(
                agent=AgentRecord(tenant_id=tenant, code="bare", name="Bare", enabled=False)
            )
        )
        for user in USERS:
            for s in range(sessions_per_user):
                session = await store.create_session(
                    Session(
                        tenant_id=tenant,
                        user_id=user,
                        agent_id=agent.agent.id,
                        title=f"t{t_index} s{s}",
                        metadata={"n": s, "tags": ["a", "ü"]},
                    )
                )
                saved = await store.save_messages(list(_messages(session, messages + s)))
                for reply in saved[1::4]:
                    await store.save_api_call(
                        ApiCall(
                            tenant_id=tenant,
                            session_id=session.id,
                            user_id=user,
                            model="m",
                            status="success",
                            response_message_id=reply.id,
                            prompt_tokens=10,
                            completion_tokens=5,
                            total_tokens=15,
                            latency_ms=12.5,
                            metadata={"k": "v"},
                        )
                    )
                first = await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=tenant,
                        session_id=session.id,
                        agent_id=agent.agent.id,
                        node_id="plan",
                        input={"item": "x"},
                        input_type="dict",
                        history=saved[:4],
                        state={"step": 1},
                    )
                )
                second = await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=tenant,
                        session_id=session.id,
                        agent_id=agent.agent.id,
                        node_id="pay",
                        history=saved[:9],
                        state={"step": 2},
                        properties={"p": True},
                        parent_id=first.id,
                    )
                )
                await store.create_checkpoint(
                    Checkpoint(
                        tenant_id=tenant,
                        session_id=session.id,
                        agent_id=agent.agent.id,
                        history=saved[:9],
                        tombstone=True,
                        parent_id=second.id,
                    )
                )
                # Last active long ago, the first created the most recently: copies must
                # keep the values and so the listing order.
                age = timedelta(days=30 * (s + 1), seconds=USERS.index(user), microseconds=7)
                await store.set_session_updated_at(tenant, session.id, _LONG_AGO - age)


_LONG_AGO = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _messages(session: Session, n: int) -> list[Message]:
    out: list[Message] = []
    for i in range(n):
        common: dict[str, Any] = {
            "session_id": session.id,
            "tenant_id": session.tenant_id,
            "user_id": session.user_id,
        }
        if i == 0:
            out.append(Message(**common, role="system", content="system prompt"))
        elif i % 5 == 3:
            out.append(
                Message(
                    **common,
                    role="assistant",
                    tool_calls=[ToolCall(id=f"c{i}", name="lookup", arguments={"q": [i, "é"]})],
                    metadata={"finish": "tool_calls"},
                )
            )
        elif i % 5 == 4:
            out.append(
                Message(
                    **common, role="tool", tool_call_id=f"c{i - 1}", name="lookup", content="42"
                )
            )
        else:
            status: MessageStatus = "interrupted" if i == n - 1 else "complete"
            role: Role = "user" if i % 2 else "assistant"
            out.append(Message(**common, role=role, content=f"message {i} ✓", status=status))
    return out


async def snapshot(store: Store, tenants: Sequence[str] = TENANTS) -> dict[str, Any]:
    """Everything of ``tenants`` as plain data, sessions in listing order."""
    out: dict[str, Any] = {}
    for tenant in tenants:
        sessions = await store.list_sessions(tenant, limit=10_000)
        out[tenant] = {
            "providers": [p.to_dict() for p in await store.list_providers(tenant)],
            "agents": [c.to_dict() for c in await store.list_agent_configs(tenant)],
            "sessions": [
                {
                    "session": s.to_dict(),
                    "messages": [m.to_dict() for m in await store.get_messages(tenant, s.id)],
                    "api_calls": [c.to_dict() for c in await store.list_api_calls(tenant, s.id)],
                    "checkpoints": [
                        c.to_dict() for c in await store.list_checkpoints(tenant, session_id=s.id)
                    ],
                }
                for s in sessions
            ],
        }
    return out


# -- stores ---------------------------------------------------------------------------------


@pytest.fixture
async def source() -> AsyncIterator[Store]:
    store = await threadline.connect("memory://")
    await populate(store)
    yield store
    await store.close()


@pytest.fixture(params=["memory", "sqlite", "file"])
def dst_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        pytest.importorskip("threadline_sqlite")
        return f"sqlite:///{tmp_path / 'dst.db'}"
    if request.param == "file":
        pytest.importorskip("threadline_fsspec")
        return f"file://{tmp_path / 'dst'}"
    return f"memory://transfer-{new_id()}"


@pytest.fixture
async def dst(dst_url: str) -> AsyncIterator[Store]:
    store = await threadline.connect(dst_url)
    yield store
    await store.close()


class FailingStore(Store):
    """A destination whose ``save_messages`` fails after ``allowed`` batches."""

    def __init__(self, inner: Store, allowed: int) -> None:
        super().__init__(*reversed(inner.plugins))
        self.allowed = allowed

    async def save_messages(self, messages: Sequence[Message]) -> list[Message]:
        if self.allowed <= 0:
            raise StoreError("disk full (test)")
        self.allowed -= 1
        return await super().save_messages(messages)

    async def close(self) -> None:  # the inner store is closed by its own fixture
        self._closed = True


# -- copy -----------------------------------------------------------------------------------


async def test_copy_reproduces_every_row(source: Store, dst: Store) -> None:
    report = await copy_store(source, dst, batch_size=7, concurrency=3)
    assert report.ok
    assert {t.tenant_id for t in report.tenants} == set(TENANTS)
    for tenant in report.tenants:
        counts = {k: (c.source, c.destination, c.copied) for k, c in tenant.counts.items()}
        assert counts["providers"] == (1, 1, 1)
        assert counts["agents"] == (2, 2, 2)
        assert counts["sessions"] == (4, 4, 4)
        assert counts["messages"] == (2 * (23 + 24),) * 3
        assert counts["checkpoints"] == (12, 12, 12)
        assert counts["api_calls"][0] == counts["api_calls"][1] == counts["api_calls"][2] > 0
    assert await snapshot(dst) == await snapshot(source)


async def test_rerun_copies_nothing(source: Store, dst: Store) -> None:
    await copy_store(source, dst)
    again = await copy_store(source, dst)
    assert again.ok
    assert all(again.total(kind) == 0 for kind in again.tenants[0].counts)
    assert again.total("messages", "destination") == again.total("messages", "source") > 0
    assert await snapshot(dst) == await snapshot(source)


async def test_only_some_tenants(source: Store, dst: Store) -> None:
    report = await copy_store(source, dst, tenants=[TENANTS[1]])
    assert [t.tenant_id for t in report.tenants] == [TENANTS[1]]
    assert await dst.list_tenants() == [TENANTS[1]]
    assert (await snapshot(dst, TENANTS[1:])) == (await snapshot(source, TENANTS[1:]))


@pytest.mark.parametrize("allowed", [0, 1, 3, 9])
async def test_failed_copy_then_rerun_gives_the_source(
    source: Store, dst: Store, allowed: int
) -> None:
    with pytest.raises(StoreError, match="disk full"):
        await copy_store(source, FailingStore(dst, allowed), batch_size=5, concurrency=2)
    report = await copy_store(source, dst, batch_size=5, concurrency=2)
    assert report.ok
    copied = report.total("messages")
    assert 0 < copied <= report.total("messages", "source")
    if allowed == 0:  # (a batch in flight when another fails may or may not have landed)
        assert copied == report.total("messages", "source")
    assert await snapshot(dst) == await snapshot(source)


async def test_cancelled_copy_then_rerun_gives_the_source(source: Store, dst: Store) -> None:
    done = 0
    task: asyncio.Task[Any]

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done >= 40:
            task.cancel()

    task = asyncio.ensure_future(
        copy_store(source, dst, batch_size=4, concurrency=2, progress=progress)
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    seen = 0

    def count(n: int) -> None:
        nonlocal seen
        seen += n

    report = await copy_store(source, dst, batch_size=4, progress=count)
    assert report.ok
    assert seen == report.total("messages", "source")
    assert await snapshot(dst) == await snapshot(source)


async def test_a_diverged_destination_session_is_a_conflict(source: Store, dst: Store) -> None:
    session = (await source.list_sessions(TENANTS[0], limit=1))[0]
    await dst.create_session(session)
    await dst.save_messages(
        [Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="other")]
    )
    with pytest.raises(ConflictError, match=f"session {session.id} differs"):
        await copy_store(source, dst)


async def test_a_destination_with_more_messages_is_a_conflict(source: Store, dst: Store) -> None:
    await copy_store(source, dst)
    session = (await source.list_sessions(TENANTS[0], limit=1))[0]
    await dst.save_message(
        Message(session_id=session.id, tenant_id=session.tenant_id, role="user", content="more")
    )
    with pytest.raises(ConflictError, match="holds"):
        await copy_store(source, dst)


async def test_a_later_edit_in_the_source_is_applied(source: Store, dst: Store) -> None:
    await copy_store(source, dst)
    session = (await source.list_sessions(TENANTS[0], limit=1))[0]
    last = (await source.get_messages(TENANTS[0], session.id))[-1]
    await source.update_message(
        Message.from_dict(last.to_dict() | {"content": "edited", "status": "complete"})
    )
    assert (await copy_store(source, dst)).ok
    assert await snapshot(dst) == await snapshot(source)


async def _add_unused_provider(store: Store, tenant: str) -> ProviderRecord:
    """A provider no agent uses: saved with its agent, then left when the agent moved."""
    unused = ProviderRecord(tenant_id=tenant, name="retired", metadata={"why": "moved"})
    agent = AgentRecord(tenant_id=tenant, code="mover", name="Mover", provider_id=unused.id)
    await store.save_agent_config(AgentConfig(agent=agent, provider=unused))
    current = ProviderRecord(tenant_id=tenant, name="current")
    moved = attrs.evolve(agent, provider_id=current.id)
    await store.save_agent_config(AgentConfig(agent=moved, provider=current))
    standalone = ProviderRecord(tenant_id=tenant, name="spare", enabled=False)
    await store.save_provider(standalone)
    assert unused in await store.list_providers(tenant)
    return unused


async def test_unused_providers_survive_copy_and_export(source: Store, dst: Store) -> None:
    unused = await _add_unused_provider(source, TENANTS[1])
    report = await copy_store(source, dst)
    assert report.ok
    assert report.total("providers") == 2 + 3  # one per tenant, three more in the second
    assert unused in await dst.list_providers(TENANTS[1])
    assert await snapshot(dst) == await snapshot(source)
    assert (await copy_store(source, dst)).total("providers") == 0

    text = await _export(source, tenant_id=TENANTS[1])
    provider_lines = [json.loads(line) for line in text.splitlines()]
    assert [r["data"]["name"] for r in provider_lines if r["type"] == "provider"] == [
        "current",
        "local",
        "retired",
        "spare",
    ]
    target = await threadline.connect("memory://")
    try:
        report_in = await import_records(target, io.StringIO(text))
        assert report_in.complete, report_in.problem
        assert report_in.counts["provider"] == 4
        assert unused in await target.list_providers(TENANTS[1])
        assert await snapshot(target, [TENANTS[1]]) == await snapshot(source, [TENANTS[1]])
        assert (await import_records(target, io.StringIO(text))).complete  # idempotent
        assert await snapshot(target, [TENANTS[1]]) == await snapshot(source, [TENANTS[1]])
    finally:
        await target.close()


async def test_a_file_without_provider_records_imports(source: Store, dst: Store) -> None:
    """Files written before provider records existed (no "provider" in the footer)."""
    lines = []
    for line in (await _export(source)).splitlines(keepends=True):
        row = json.loads(line)
        if row["type"] == "provider":
            continue
        if row["type"] == "footer":
            del row["counts"]["provider"]
            line = json.dumps(row) + "\n"
        lines.append(line)
    report = await import_records(dst, lines)
    assert report.complete, report.problem
    assert report.counts["provider"] == 0
    assert await snapshot(dst) == await snapshot(source)


# -- export / import ------------------------------------------------------------------------


async def _export(store: Store, **filters: Any) -> str:
    out = io.StringIO()
    await export_records(store, out, **filters)
    return out.getvalue()


async def test_export_import_round_trip(source: Store, dst: Store) -> None:
    text = await _export(source)
    lines = text.splitlines()
    header, footer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["type"] == "header"
    assert (header["format"], header["version"]) == (FORMAT_NAME, FORMAT_VERSION)
    assert footer["type"] == "footer"
    assert sum(footer["counts"].values()) == len(lines) - 2
    assert {json.loads(line)["type"] for line in lines[1:-1]} == {
        "provider",
        "agent_config",
        "session",
        "message",
        "api_call",
        "checkpoint",
    }
    report = await import_records(dst, io.StringIO(text), batch_size=6)
    assert report.complete, report.problem
    assert report.counts == footer["counts"]
    assert await snapshot(dst) == await snapshot(source)
    again = await import_records(dst, io.StringIO(text))  # idempotent
    assert again.complete
    assert await snapshot(dst) == await snapshot(source)
    assert await _export(dst) != ""


async def test_export_filters(source: Store) -> None:
    def records(text: str, kind: str) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in text.splitlines()]
        return [r["data"] for r in rows if r["type"] == kind]

    by_tenant = await _export(source, tenant_id=TENANTS[0])
    assert {s["tenant_id"] for s in records(by_tenant, "session")} == {TENANTS[0]}
    assert len(records(by_tenant, "session")) == 4
    assert len(records(by_tenant, "agent_config")) == 2
    assert json.loads(by_tenant.splitlines()[0])["filters"] == {"tenant_id": TENANTS[0]}

    by_user = await _export(source, tenant_id=TENANTS[1], user_id=USERS[0])
    sessions = records(by_user, "session")
    assert len(sessions) == 2 and {s["user_id"] for s in sessions} == {USERS[0]}
    assert {m["session_id"] for m in records(by_user, "message")} == {s["id"] for s in sessions}

    one = (await source.list_sessions(TENANTS[1], limit=1))[0]
    by_session = await _export(source, session_id=one.id)  # the tenant is found
    assert [s["id"] for s in records(by_session, "session")] == [one.id]
    assert len(records(by_session, "message")) == await source.count_messages(TENANTS[1], one.id)
    assert {c["session_id"] for c in records(by_session, "checkpoint")} == {one.id}

    target = await threadline.connect("memory://")
    assert (await import_records(target, io.StringIO(by_session))).complete
    assert await target.get_messages(TENANTS[1], one.id) == await source.get_messages(
        TENANTS[1], one.id
    )


async def test_import_refuses_what_is_not_an_export(dst: Store) -> None:
    header = {"type": "header", "format": FORMAT_NAME, "version": FORMAT_VERSION}
    cases = {
        "": "no header",
        "hello\n": "not JSON",
        '{"type": "footer", "counts": {}}\n': "first line must be its header",
        '{"type": "session", "data": {}}\n': "not a threadline export: line 1: invalid session",
        json.dumps(header | {"format": "other"}) + "\n": "not a threadline-export",
        json.dumps(header | {"version": FORMAT_VERSION + 1}) + "\n": "version 2 is not supported",
        json.dumps(header) + '\n{"type": "wat"}\n': "unknown record type 'wat'",
        json.dumps(header) + '\n{"type": "message", "data": {"role": "x"}}\n': "line 2: invalid",
    }
    for text, message in cases.items():
        with pytest.raises(ExportFormatError, match=message):
            await import_records(dst, io.StringIO(text))


async def test_a_truncated_file_imports_what_is_whole(source: Store, dst: Store) -> None:
    text = await _export(source)
    lines = text.splitlines(keepends=True)
    cut = len(lines) // 2
    partial = "".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2]  # cut mid-line
    report = await import_records(dst, io.StringIO(partial), batch_size=5)
    assert not report.complete
    assert "truncated" in (report.problem or "")
    assert sum(report.counts.values()) == cut - 1
    no_footer = await import_records(dst, io.StringIO("".join(lines[:-1])))
    assert not no_footer.complete and "no footer" in (no_footer.problem or "")
    assert await snapshot(dst) == await snapshot(source)  # the rest came with the second


async def test_a_footer_with_other_counts_is_incomplete(source: Store, dst: Store) -> None:
    lines = (await _export(source)).splitlines(keepends=True)
    del lines[next(i for i, line in enumerate(lines) if '"type":"api_call"' in line)]
    report = await import_records(dst, io.StringIO("".join(lines)))
    assert not report.complete
    assert "missing" in (report.problem or "")


# -- CLI ------------------------------------------------------------------------------------


def cli() -> click.Group:
    group = click.Group()
    for command in (copy_command, export_command, import_command):
        group.add_command(command)
    return group


@pytest.fixture
def sqlite_files(tmp_path: Path) -> tuple[str, str]:
    pytest.importorskip("threadline_sqlite")
    src = f"sqlite:///{tmp_path / 'src.db'}"

    async def fill() -> None:
        async with await threadline.connect(src) as store:
            await populate(store, sessions_per_user=1, messages=12)

    asyncio.run(fill())
    return src, f"sqlite:///{tmp_path / 'dst.db'}"


def _snapshot_of(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with await threadline.connect(url) as store:
            return await snapshot(store)

    return asyncio.run(go())


def test_cli_copy(sqlite_files: tuple[str, str]) -> None:
    src, dst = sqlite_files
    runner = CliRunner()
    result = runner.invoke(cli(), ["copy", src, dst, "--json", "--progress"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and len(data["tenants"]) == 2
    assert "copied" in result.stderr and "messages" in result.stderr
    assert _snapshot_of(dst) == _snapshot_of(src)
    table = runner.invoke(cli(), ["copy", src, dst, "--batch-size", "3"])
    assert table.exit_code == 0, table.output
    assert "verified" in table.stdout and "destination" in table.stdout


def test_cli_export_import(sqlite_files: tuple[str, str], tmp_path: Path) -> None:
    src, dst = sqlite_files
    runner = CliRunner()
    out = tmp_path / "dump.jsonl"
    result = runner.invoke(cli(), ["export", str(out), "--store", src])
    assert result.exit_code == 0, result.output
    assert "exported" in result.stderr
    stdout = runner.invoke(cli(), ["export", "-", "--store", src, "--tenant", TENANTS[0]])
    assert stdout.exit_code == 0
    assert json.loads(stdout.stdout.splitlines()[0])["format"] == FORMAT_NAME

    imported = runner.invoke(
        cli(), ["import", "-", "--store", dst, "--json"], input=out.read_text()
    )
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["complete"] is True
    assert _snapshot_of(dst) == _snapshot_of(src)

    truncated = out.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(truncated), encoding="utf-8")
    result = runner.invoke(cli(), ["import", str(cut), "--store", dst])
    assert result.exit_code == 1
    assert "incomplete import" in result.stderr and "no footer" in result.stderr

    future = tmp_path / "future.jsonl"
    future.write_text(
        json.dumps({"type": "header", "format": FORMAT_NAME, "version": 99}) + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli(), ["import", str(future), "--store", dst])
    assert result.exit_code == 1
    assert "version 99 is not supported" in result.output
