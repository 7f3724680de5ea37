"""The threadline command line, in process, on a named memory store."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from threadline.cli import cli
from threadline.cli.progress import Progress
from threadline.ids import new_id
from threadline.runtime.agent import default_store_url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "THREADLINE_STORE": f"memory://cli-{new_id()}",
        "TENANT_ID": new_id(),
        "USER_ID": new_id(),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return values


def invoke(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_chat_persists_and_continues(env: dict[str, str]) -> None:
    first = invoke("chat", "--system", "be brief", "hello")
    assert "Echo: hello" in first
    invoke("chat", "-c", input="and again\nsecond line\n")
    sessions = json.loads(invoke("sessions", "list", "--json"))
    assert len(sessions) == 1
    assert sessions[0]["messages"] == 7  # system + 3 user + 3 assistant
    shown = invoke("sessions", "show", sessions[0]["id"])
    assert "system" in shown and "Echo: second line" in shown


def test_sessions_are_scoped_to_the_tenant(env: dict[str, str]) -> None:
    invoke("chat", "private")
    [session] = json.loads(invoke("sessions", "list", "--json"))
    result = CliRunner().invoke(cli, ["sessions", "show", session["id"], "--tenant", new_id()])
    assert result.exit_code != 0
    assert "no session" in result.output
    result = CliRunner().invoke(
        cli, ["sessions", "delete", session["id"], "--tenant", new_id(), "--yes"]
    )
    assert result.exit_code != 0
    assert len(json.loads(invoke("sessions", "list", "--json"))) == 1
    deleted = json.loads(invoke("sessions", "delete", session["id"], "--yes", "--json"))
    assert deleted == {"deleted": session["id"]}
    assert json.loads(invoke("sessions", "list", "--json")) == []


def test_sessions_list_pages_by_cursor(env: dict[str, str]) -> None:
    """A full page ends with ``next: CURSOR`` on stderr; ``--after`` continues from it, and a
    session started between pages (the newest) does not shift the next page."""
    for i in range(5):
        invoke("chat", f"hi {i}")
    everything = [s["id"] for s in json.loads(invoke("sessions", "list", "--json"))]
    assert len(everything) == 5
    first = CliRunner().invoke(cli, ["sessions", "list", "--json", "--limit", "2"])
    assert first.exit_code == 0, first.output
    assert [s["id"] for s in json.loads(first.stdout)] == everything[:2]
    [hint] = first.stderr.splitlines()
    assert hint.startswith("next: ")
    invoke("chat", "a newer one")
    seen = []
    cursor = hint.removeprefix("next: ")
    while True:
        page = CliRunner().invoke(
            cli, ["sessions", "list", "--json", "--limit", "2", "--after", cursor]
        )
        assert page.exit_code == 0, page.output
        seen += [s["id"] for s in json.loads(page.stdout)]
        if not page.stderr:
            break
        cursor = page.stderr.strip().removeprefix("next: ")
    assert seen == everything[2:]
    table = CliRunner().invoke(cli, ["sessions", "list", "--limit", "1", "--after", cursor])
    assert table.exit_code == 0
    assert everything[4] in table.stdout and everything[3] not in table.stdout


def test_sessions_list_refuses_a_bad_cursor(env: dict[str, str]) -> None:
    invoke("chat", "hi")
    result = CliRunner().invoke(cli, ["sessions", "list", "--after", "nonsense!"])
    assert result.exit_code == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "--after" in line and "not a session cursor" in line


def test_migrate_lists_what_it_applied(tmp_path: Path) -> None:
    pytest.importorskip("threadline_sqlite")
    url = f"sqlite:///{tmp_path / 'm.db'}"
    applied = json.loads(invoke("migrate", url, "--json"))["applied"]
    assert applied and applied[0].startswith("0001")
    assert json.loads(invoke("migrate", url, "--json")) == {"applied": []}
    assert "up to date" in invoke("migrate", url)


def test_agents_add_list_show(env: dict[str, str]) -> None:
    invoke(
        "agents",
        "add",
        "--code",
        "helper",
        "--model",
        "gpt-4o-mini",
        "--window",
        "3",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--api-key-env",
        "MY_KEY",
    )
    listed = invoke("agents", "list")
    assert "helper" in listed and "gpt-4o-mini" in listed
    shown = json.loads(invoke("agents", "show", "helper"))
    assert shown["agent"]["window"] == 3
    assert shown["provider"]["api_key_ref"] == "env:MY_KEY"
    result = CliRunner().invoke(cli, ["agents", "add", "--code", "helper"])
    assert result.exit_code != 0
    assert "ConflictError" in result.output


def test_bad_input_is_a_clean_error(env: dict[str, str]) -> None:
    invoke("chat", "hello")
    result = CliRunner().invoke(cli, ["sessions", "show", "../../etc/passwd"])
    assert result.exit_code == 1
    assert "ValidationError" in result.output
    assert "Traceback" not in result.output


def test_copy_export_and_import_through_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    invoke("chat", "--system", "be brief", "remember me")
    source = env["THREADLINE_STORE"]
    copy = f"memory://copy-{new_id()}"
    invoke("copy", source, copy)
    [session] = json.loads(invoke("sessions", "list", "--json", "--store", copy))
    assert session["messages"] == 3
    dump = tmp_path / "export.jsonl"
    invoke("export", str(dump))
    lines = dump.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["format"] and len(lines) >= 5
    restored = f"memory://import-{new_id()}"
    invoke("import", str(dump), "--store", restored)
    shown = invoke("sessions", "show", session["id"], "--store", restored)
    assert "remember me" in shown and "Echo: remember me" in shown


def test_export_and_import_show_progress_when_asked(env: dict[str, str], tmp_path: Path) -> None:
    invoke("chat", "one")
    invoke("chat", "two")
    dump = tmp_path / "export.jsonl"
    result = CliRunner().invoke(cli, ["export", str(dump), "--progress"])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "records" in result.output
    restored = f"memory://progress-{new_id()}"
    result = CliRunner().invoke(cli, ["import", str(dump), "--store", restored, "--progress"])
    assert result.exit_code == 0, result.output
    assert "read" in result.output and "records/s" in result.output
    lines = len(dump.read_text(encoding="utf-8").splitlines())
    # Not a terminal: the label once, then one final line with the count and the rate.
    assert result.stderr.startswith("reading\n") and f"read {lines} records, " in result.stderr


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is for someone at a shell."""

    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_one_line_with_count_and_rate() -> None:
    screen = Terminal()
    bar = Progress(10_000, label="copying", verb="copied", unit="messages", stream=screen)
    for _ in range(10_000):
        bar(1)
    bar.close()
    drawn = screen.getvalue()
    assert drawn.count("\r") <= 4  # redrawn at most every 0.2 s, not once per message
    last = drawn.rsplit("\r", 1)[-1]
    assert "copying  [" + "#" * 30 + "]" in last
    assert "10,000/10,000 messages (100%)" in last and "messages/s" in last
    assert drawn.endswith("\n") and "copied" not in drawn  # the bar is the final line


def test_progress_of_an_unknown_total_shows_the_count_without_a_bar() -> None:
    screen = Terminal()
    bar = Progress(0, label="exporting", verb="exported", unit="records", stream=screen)
    bar(3)
    bar.close()
    last = screen.getvalue().rsplit("\r", 1)[-1]
    assert "exporting  3 records," in last and "records/s" in last and "#" not in last


@pytest.fixture
def no_store_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A home and XDG data folder of our own, and no store URL in the environment."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for var in ("THREADLINE_STORE", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANT_ID", new_id())
    monkeypatch.setenv("USER_ID", new_id())
    return tmp_path


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG folders are Linux's")
def test_default_store_is_sqlite_in_the_user_data_folder(no_store_configured: Path) -> None:
    pytest.importorskip("threadline_sqlite")
    invoke("chat", "hello")
    database = no_store_configured / "data" / "threadline" / "threadline.db"
    assert database.is_file()
    assert default_store_url() == f"sqlite:///{database}"
    [session] = json.loads(invoke("sessions", "list", "--json"))
    assert session["messages"] == 2


def test_a_store_where_an_earlier_threadline_put_it_keeps_being_used(
    no_store_configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before platformdirs, macOS ignored $XDG_DATA_HOME: a store made in ~/Library stays
    the default there (nothing left behind), and nothing is created in the XDG folder."""
    pytest.importorskip("threadline_sqlite")
    earlier = no_store_configured / "home" / "Library" / "Application Support" / "threadline"
    earlier.mkdir(parents=True)
    url = f"sqlite:///{earlier / 'threadline.db'}"
    invoke("chat", "remember me", "--store", url)
    with monkeypatch.context() as mac:
        mac.setattr(sys, "platform", "darwin")
        found = default_store_url()
    assert found == url
    [session] = json.loads(invoke("sessions", "list", "--json", "--store", found))
    assert "remember me" in invoke("sessions", "show", session["id"], "--store", found)
    assert not (no_store_configured / "data").exists()
