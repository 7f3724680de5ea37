"""The whole command line with wrong arguments: one line on stderr, exit 1 or 2, nothing made.

Every case runs the real ``threadline`` group in process (``catch_exceptions=False``: an
exception escaping the CLI fails the test) with the working directory and ``HOME`` in an
empty temporary folder, and fails on a traceback, on exit code 0, on a stderr that is not
exactly one ``error:`` line (``warning:`` lines aside), on a password in the output, and on
any file or folder the refused command left behind. A few cases run ``threadline`` in a
subprocess, as a user would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import threadline
from threadline import Message, Session
from threadline.cli import cli
from threadline.ids import new_id

pytest.importorskip("threadline_sqlite")

UNKNOWN = new_id()
KEY = "sk-proj-" + "Ab1" * 16  # looks like a pasted OpenAI key

# (name, argv, exit code, text expected in the error line)
CASES: list[tuple[str, list[str], int, str]] = [
    # -- a store that does not exist is never created by a read, export or deletion
    ("copy-missing-source", ["copy", "sqlite:///doesnotexist.db", "sqlite:///x.db"], 1,
     "doesnotexist.db"),
    ("list-missing-folder", ["sessions", "list", "--store", "file://{work}/nonexistent/x"], 1,
     "no store at"),
    ("list-missing-sqlite", ["sessions", "list", "--store", "sqlite:///missing.db"], 1,
     "missing.db"),
    ("show-missing", ["sessions", "show", UNKNOWN, "--store", "sqlite:///missing.db"], 1,
     "no store"),
    ("delete-missing", ["sessions", "delete", UNKNOWN, "--yes", "--store", "sqlite:///m.db"], 1,
     "no store"),
    ("prune-missing", ["sessions", "prune", "--older-than", "1d", "--store", "sqlite:///m.db"],
     1, "no store"),
    ("checkpoints-list-missing", ["checkpoints", "list", UNKNOWN, "--store", "sqlite:///m.db"],
     1, "no store"),
    ("checkpoints-show-missing", ["checkpoints", "show", UNKNOWN, "--store", "sqlite:///m.db"],
     1, "no store"),
    ("rollback-missing", ["checkpoints", "rollback", UNKNOWN, UNKNOWN, "--store",
                          "sqlite:///m.db"], 1, "no store"),
    ("checkpoints-prune-missing", ["checkpoints", "prune", UNKNOWN, "--keep", "1", "--store",
                                   "sqlite:///m.db"], 1, "no store"),
    ("agents-list-missing", ["agents", "list", "--store", "sqlite:///m.db"], 1, "no store"),
    ("agents-show-missing", ["agents", "show", "x", "--store", "sqlite:///m.db"], 1, "no store"),
    ("erase-user-missing", ["erase-user", "--user", "u", "--store", "sqlite:///m.db"], 1,
     "no store"),
    ("export-missing", ["export", "out.jsonl", "--store", "sqlite:///m.db"], 1, "no store"),
    ("list-default-store", ["sessions", "list"], 1, "no store"),
    ("list-memory-never-opened", ["sessions", "list", "--store", f"memory://never-{UNKNOWN}"],
     1, "no store"),
    ("list-fsspec-memory", ["sessions", "list", "--store", f"fsspec+memory://no-{UNKNOWN}"], 1,
     "no store"),
    ("copy-missing-folder", ["copy", "file://{work}/nofolder", "sqlite:///x.db"], 1, "no store"),
    ("continue-missing", ["chat", "-c", "--store", "sqlite:///m.db", "hi"], 1, "no store"),
    ("chat-session-missing-store", ["chat", "--session", UNKNOWN, "--store", "sqlite:///m.db",
                                    "hi"], 1, "no store"),
    ("chat-session-unknown", ["chat", "--session", UNKNOWN, "--store", "{ok}", "hi"], 1,
     "--new"),
    ("list-sqlite-memory", ["sessions", "list", "--store", "sqlite:///:memory:"], 1, "no store"),
    ("list-empty-sqlite-file", ["sessions", "list", "--store", "sqlite:///{fx}/empty.db"], 1,
     "no threadline tables"),
    ("list-bad-cursor", ["sessions", "list", "--store", "{ok}", "--after", "nope"], 2,
     "not a session cursor"),
    # -- URLs
    ("store-empty", ["sessions", "list", "--store", ""], 2, "empty"),
    ("store-not-a-url", ["sessions", "list", "--store", "notaurl"], 1, "not a store URL"),
    ("store-unknown-scheme", ["sessions", "list", "--store", "nosuch://x"], 1, "nosuch"),
    ("store-malformed-ipv6", ["sessions", "list", "--store", "postgresql://u:pw@[::1:5444/db"],
     1, ""),
    ("sqlite-bad-option-value", ["sessions", "list", "--store",
                                 "sqlite:///x.db?busy_timeout=abc"], 1, "busy_timeout"),
    ("sqlite-unknown-option", ["sessions", "list", "--store", "sqlite:///x.db?bogus=1"], 1,
     "bogus"),
    ("sqlite-directory", ["sessions", "list", "--store", "sqlite:///{fx}"], 1, "directory"),
    ("migrate-directory", ["migrate", "sqlite:///{fx}"], 1, "directory"),
    ("migrate-unreachable-postgres", ["migrate", "postgresql://u:secretpw@127.0.0.1:1/db?"
                                      "connect_timeout=2"], 1, ""),
    ("list-unreachable-postgres", ["sessions", "list", "--store",
                                   "postgresql://u:secretpw@127.0.0.1:1/db?connect_timeout=2"],
     1, ""),
    ("copy-to-unreachable", ["copy", "{ok}", "postgresql://u:secretpw@127.0.0.1:1/db?"
                             "connect_timeout=2"], 1, ""),
    ("copy-empty-destination", ["copy", "{ok}", ""], 1, "not a store URL"),
    ("fsspec-connection-refused", ["sessions", "list", "--store", "fsspec+ftp://127.0.0.1:1/x"],
     1, ""),
    ("file-url-is-a-file", ["sessions", "list", "--store", "file://{fx}/empty.db"], 1, ""),
    # -- export and import
    ("export-url-as-path", ["export", "sqlite:///x.db"], 2, "--store"),
    ("import-url-as-path", ["import", "sqlite:///x.db", "--store", "sqlite:///new.db"], 2,
     "--store"),
    ("import-missing-file", ["import", "missing.jsonl", "--store", "sqlite:///new.db"], 2,
     "does not exist"),
    ("import-directory", ["import", "{fx}", "--store", "sqlite:///new.db"], 2, "directory"),
    ("import-binary", ["import", "{fx}/binary.bin", "--store", "sqlite:///new.db"], 1, "UTF-8"),
    ("import-latin1", ["import", "{fx}/latin1.jsonl", "--store", "sqlite:///new.db"], 1,
     "UTF-8"),
    ("import-foreign-jsonl", ["import", "{fx}/foreign.jsonl", "--store", "sqlite:///new.db"], 1,
     "not a threadline export"),
    ("import-empty-file", ["import", "{fx}/empty.jsonl", "--store", "sqlite:///new.db"], 1,
     "empty input"),
    ("import-not-json", ["import", "{fx}/notjson.txt", "--store", "sqlite:///new.db"], 1,
     "not a threadline export"),
    ("import-future-version", ["import", "{fx}/future.jsonl", "--store", "sqlite:///new.db"], 1,
     "version 99"),
    ("import-truncated", ["import", "{fx}/truncated.jsonl", "--store",
                          f"memory://trunc-{UNKNOWN}"], 1, "truncated"),
    ("import-deeply-nested", ["import", "{fx}/deep.jsonl", "--store", f"memory://deep-{UNKNOWN}"],
     1, "deep"),
    ("import-no-input", ["import", "--store", "sqlite:///new.db"], 2, "INPUT"),
    ("import-empty-path", ["import", "", "--store", "sqlite:///new.db"], 2, "empty"),
    ("export-empty-path", ["export", "", "--store", "{ok}"], 2, "empty"),
    ("export-to-directory", ["export", "{fx}", "--store", "{ok}"], 2, "directory"),
    ("export-missing-folder", ["export", "nodir/sub/out.jsonl", "--store", "{ok}"], 2,
     "does not exist"),
    ("export-unknown-session", ["export", "out.jsonl", "--session", UNKNOWN, "--store", "{ok}"],
     1, "no session"),
    # -- agents add
    ("api-key-pasted", ["agents", "add", "--code", "a", "--api-key-env", KEY, "--store",
                        "sqlite:///new.db"], 2, "looks like a key"),
    ("api-key-env-space", ["agents", "add", "--code", "a", "--api-key-env", "MY KEY", "--store",
                           "sqlite:///new.db"], 2, "environment variable name"),
    ("api-base-not-url", ["agents", "add", "--code", "a", "--api-base", "notaurl", "--store",
                          "sqlite:///new.db"], 2, "http"),
    ("api-base-ftp", ["agents", "add", "--code", "a", "--api-base", "ftp://host/v1", "--store",
                      "sqlite:///new.db"], 2, "http"),
    ("provider-type-unknown", ["agents", "add", "--code", "a", "--provider-type", "nosuch",
                               "--store", "sqlite:///new.db"], 2, "echo"),
    ("agents-add-no-code", ["agents", "add", "--store", "sqlite:///new.db"], 2, "--code"),
    ("agents-add-missing-file", ["agents", "add", "--from-file", "nofile.json", "--store",
                                 "sqlite:///new.db"], 2, "nofile.json"),
    ("agents-add-binary-file", ["agents", "add", "--from-file", "{fx}/binary.bin", "--store",
                                "sqlite:///new.db"], 1, "invalid config"),
    ("agents-add-deep-file", ["agents", "add", "--from-file", "{fx}/deep.json", "--store",
                              "sqlite:///new.db"], 1, ""),
    ("agents-add-window-zero", ["agents", "add", "--code", "a", "--window", "0", "--store",
                                "sqlite:///new.db"], 2, "window"),
    ("agents-add-empty-code", ["agents", "add", "--code", "", "--store", "sqlite:///new.db"], 2,
     "--code"),
    # -- ids and tenants
    ("show-path-as-id", ["sessions", "show", "../../etc/passwd", "--store", "{ok}"], 1,
     "ValidationError"),
    ("show-empty-tenant", ["sessions", "show", UNKNOWN, "--tenant", "", "--store", "{ok}"], 1,
     "tenant"),
    ("list-bad-tenant", ["sessions", "list", "--tenant", "a/../b", "--store", "{ok}"], 1,
     "tenant"),
    ("list-bad-user", ["sessions", "list", "--user", "x" * 1000, "--store", "{ok}"], 1, "user"),
    ("checkpoint-empty-id", ["checkpoints", "show", "", "--store", "{ok}"], 1, ""),
    ("delete-unknown-session", ["sessions", "delete", UNKNOWN, "--yes", "--store", "{ok}"], 1,
     "no session"),
    ("show-unknown-session", ["sessions", "show", UNKNOWN, "--store", "{ok}"], 1, "no session"),
    ("show-other-tenant", ["sessions", "show", "{sid}", "--tenant", UNKNOWN, "--store", "{ok}"],
     1, "no session"),
    ("rollback-unknown", ["checkpoints", "rollback", "{sid}", UNKNOWN, "--store", "{ok}"], 1,
     "no checkpoint"),
    ("checkpoints-prune-unknown", ["checkpoints", "prune", UNKNOWN, "--keep", "1", "--store",
                                   "{ok}"], 1, "no session"),
    ("delete-unconfirmed", ["sessions", "delete", "{sid}", "--store", "{ok}"], 1, "aborted"),
    ("agents-show-unknown", ["agents", "show", "nosuch", "--store", "{ok}"], 1, "no agent"),
    ("chat-bad-session-id", ["chat", "--session", "not valid!", "--new", "--store",
                             f"memory://c-{UNKNOWN}", "hi"], 1, "ValidationError"),
    ("chat-new-existing", ["chat", "--session", "{sid}", "--new", "--store", "{ok}", "hi"], 1,
     "exists"),
    # -- options
    ("older-than-unit", ["sessions", "prune", "--older-than", "3x", "--store", "{ok}"], 2,
     "duration"),
    ("older-than-zero", ["sessions", "prune", "--older-than", "0d", "--store", "{ok}"], 2,
     "more than zero"),
    ("older-than-missing", ["sessions", "prune", "--store", "{ok}"], 2, "--older-than"),
    ("older-than-negative", ["sessions", "prune", "--older-than", "-5d", "--store", "{ok}"], 2,
     ""),
    ("keep-zero", ["checkpoints", "prune", UNKNOWN, "--keep", "0", "--store", "{ok}"], 2,
     "--keep"),
    ("keep-text", ["checkpoints", "prune", UNKNOWN, "--keep", "abc", "--store", "{ok}"], 2,
     "--keep"),
    ("keep-missing", ["checkpoints", "prune", UNKNOWN, "--store", "{ok}"], 2, "--keep"),
    ("limit-zero", ["sessions", "list", "--limit", "0", "--store", "{ok}"], 2, "--limit"),
    ("limit-huge", ["sessions", "list", "--limit", str(2**70), "--store", "{ok}"], 1, "limit"),
    ("unknown-command", ["nosuchcommand"], 2, "nosuchcommand"),
    ("unknown-subcommand", ["sessions", "nosuch"], 2, "nosuch"),
    ("unknown-option", ["sessions", "list", "--nosuch"], 2, "--nosuch"),
    ("copy-one-argument", ["copy", "{ok}"], 2, "DST"),
    ("copy-batch-zero", ["copy", "{ok}", "sqlite:///x.db", "--batch-size", "0"], 2,
     "--batch-size"),
    ("copy-concurrency-huge", ["copy", "{ok}", "sqlite:///x.db", "--concurrency", "999"], 2,
     "--concurrency"),
    ("chat-window-negative", ["chat", "--window", "-1", "hi"], 2, "--window"),
    ("chat-continue-and-session", ["chat", "-c", "--session", UNKNOWN, "hi"], 2, "--continue"),
    ("chat-unknown-provider", ["chat", "--provider", "nosuch", "--store",
                               f"memory://p-{UNKNOWN}", "hi"], 1, "nosuch"),
    ("chat-bad-tool-json", ["chat", "--store", f"memory://t-{UNKNOWN}", "tool:x {{bad"], 1, ""),
    ("erase-user-no-user", ["erase-user", "--store", "{ok}"], 2, "--user"),
    ("migrate-no-url", ["migrate"], 2, "URL"),
    ("plugins-unknown-option", ["plugins", "--nosuch"], 2, "--nosuch"),
    ("version-with-extra", ["--nosuch-global"], 2, "--nosuch-global"),
]  # fmt: skip


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Input files and an existing SQLite store with one session, outside the watched folders."""
    fx = tmp_path_factory.mktemp("fixtures")
    ok = f"sqlite:///{fx / 'ok.db'}"
    tenant, user = new_id(), new_id()
    session = Session(tenant_id=tenant, user_id=user)

    async def fill() -> None:
        async with await threadline.connect(ok) as store:
            await store.create_session(session)
            await store.save_message(
                Message(tenant_id=tenant, session_id=session.id, role="user", content="hi")
            )

    asyncio.run(fill())
    header = json.dumps({"type": "header", "format": "threadline-export", "version": 1})
    (fx / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (fx / "latin1.jsonl").write_bytes(
        header.encode() + b"\n" + '{"x": "caf\xe9"}\n'.encode("latin-1")
    )
    (fx / "foreign.jsonl").write_text('{"a": 1}\n{"b": 2}\n', encoding="utf-8")
    (fx / "empty.jsonl").write_text("", encoding="utf-8")
    (fx / "empty.db").write_bytes(b"")
    (fx / "notjson.txt").write_text("hello world\n", encoding="utf-8")
    (fx / "future.jsonl").write_text(
        json.dumps({"type": "header", "format": "threadline-export", "version": 99}) + "\n",
        encoding="utf-8",
    )
    record = json.dumps({"type": "session", "data": Session(tenant_id=tenant).to_dict()})
    (fx / "truncated.jsonl").write_text(header + "\n" + record[:40], encoding="utf-8")
    deep = "[" * 100_000 + "]" * 100_000
    (fx / "deep.jsonl").write_text(header + "\n" + deep + "\n", encoding="utf-8")
    (fx / "deep.json").write_text(deep, encoding="utf-8")
    return {"fx": str(fx), "ok": ok, "sid": session.id, "tenant": tenant, "user": user}


@pytest.fixture
def workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures: dict[str, str]
) -> dict[str, str]:
    """An empty working directory and home; no store configured in the environment."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    for var in ("THREADLINE_STORE", "DATABASE_URL", "THREADLINE_DEBUG", "OPENAI_API_KEY",
                "OPENAI_BASE_URL"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANT_ID", fixtures["tenant"])
    monkeypatch.setenv("USER_ID", fixtures["user"])
    return {**fixtures, "work": str(work), "home": str(home)}


def _tree(*roots: str) -> list[str]:
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            found += [os.path.join(folder, name) for name in dirs + files]
    return sorted(found)


def _passwords(argv: list[str]) -> list[str]:
    return [m.group(1) for arg in argv for m in re.finditer(r"://[^:/@\s]*:([^@\s]+)@", arg)]


def check_refused(result: Any, argv: list[str], code: int, expected: str) -> str:
    """The checks every refused command must pass; returns its error line."""
    out, err = result.stdout, result.stderr
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert "Traceback" not in out + err, err
    assert exit_code == code, f"exit {exit_code}, wanted {code}: {out}{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    # Informational lines a command may print before failing: warnings, chat's session id.
    errors = [ln for ln in lines if not re.match(r"warning: |session [0-9a-f-]{36}$", ln)]
    assert len(errors) == 1 and errors[0].startswith("error: "), f"stderr not one line: {err!r}"
    assert expected in errors[0], f"{expected!r} not in {errors[0]!r}"
    for secret in [*_passwords(argv), KEY]:
        assert secret not in out + err, "a secret was printed"
    return errors[0]


@pytest.mark.parametrize(("name", "argv", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_wrong_arguments_get_one_line_and_create_nothing(
    workspace: dict[str, str], name: str, argv: list[str], code: int, expected: str
) -> None:
    args = [arg.format(**workspace) for arg in argv]
    before = _tree(workspace["work"], workspace["home"])
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    check_refused(result, args, code, expected)
    assert _tree(workspace["work"], workspace["home"]) == before, "the command created files"


def test_the_case_count_is_recorded() -> None:
    print(f"\n{len(CASES)} wrong-argument cases tried in process")
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_fresh_postgres_database_is_not_a_store(workspace: dict[str, str]) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    pytest.importorskip("threadline_postgres")
    name = "tl_cli_" + new_id().replace("-", "")[:16]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://127.0.0.1:5432/test")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def tables() -> list[str]:
        conn = await asyncpg.connect(f"postgresql://127.0.0.1:5432/{name}")
        try:
            rows = await conn.fetch(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            schemas = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname = 'audit'")
            return [r[0] for r in rows] + [r[0] for r in schemas]
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    try:
        url = f"postgresql://127.0.0.1:5432/{name}"
        for argv in (
            ["sessions", "list", "--store", url],
            ["copy", url, f"memory://pg-{new_id()}"],
            ["export", "out.jsonl", "--store", url],
            ["sessions", "prune", "--older-than", "1d", "--store", url],
            ["agents", "list", "--store", f"{url}?schema=audit"],
        ):
            result = CliRunner().invoke(cli, argv, catch_exceptions=False)
            line = check_refused(result, argv, 1, "no store at")
            assert name in line
        assert asyncio.run(tables()) == []
        assert _tree(workspace["work"]) == []
        # A write command creates it, and then reads work.
        assert CliRunner().invoke(cli, ["migrate", url]).exit_code == 0
        listed = CliRunner().invoke(cli, ["sessions", "list", "--store", url, "--json"])
        assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_reimport_reports_only_what_is_new(workspace: dict[str, str]) -> None:
    dump = Path(workspace["work"]) / "dump.jsonl"
    exported = CliRunner().invoke(cli, ["export", str(dump), "--store", workspace["ok"]])
    assert exported.exit_code == 0, exported.output
    target = f"memory://reimport-{new_id()}"
    first = CliRunner().invoke(cli, ["import", str(dump), "--store", target, "--json"])
    assert json.loads(first.stdout)["new"]["message"] >= 1
    assert json.loads(first.stdout)["new"]["session"] >= 1
    again = CliRunner().invoke(cli, ["import", str(dump), "--store", target, "--json"])
    report = json.loads(again.stdout)
    assert report["complete"] and set(report["new"].values()) == {0}
    assert report["counts"] == json.loads(first.stdout)["counts"]
    text = CliRunner().invoke(cli, ["import", str(dump), "--store", target])
    assert "imported 0 provider, 0 agent_config, 0 session, 0 message" in text.stdout


def test_a_failed_export_leaves_no_file_and_keeps_an_old_one(workspace: dict[str, str]) -> None:
    out = Path(workspace["work"]) / "keep.jsonl"
    out.write_text("old\n", encoding="utf-8")
    argv = ["export", str(out), "--session", UNKNOWN, "--store", workspace["ok"]]
    check_refused(CliRunner().invoke(cli, argv), argv, 1, "no session")
    assert out.read_text(encoding="utf-8") == "old\n"
    assert _tree(workspace["work"]) == [str(out)]


def test_chat_session_new_starts_it_and_then_continues(workspace: dict[str, str]) -> None:
    store, sid = f"memory://chat-{new_id()}", new_id()
    started = CliRunner().invoke(cli, ["chat", "--session", sid, "--new", "--store", store, "a"])
    assert started.exit_code == 0, started.output
    again = CliRunner().invoke(cli, ["chat", "--session", sid, "--store", store, "b"])
    assert again.exit_code == 0 and "Echo: b" in again.stdout
    shown = CliRunner().invoke(cli, ["sessions", "show", sid, "--store", store])
    assert "Echo: a" in shown.stdout and "Echo: b" in shown.stdout


def test_agents_add_warns_about_a_key_like_variable_name(workspace: dict[str, str]) -> None:
    store = f"memory://agents-{new_id()}"
    name = "sk_live_" + "Ab1" * 10
    result = CliRunner().invoke(
        cli, ["agents", "add", "--code", "a", "--api-key-env", name, "--store", store]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: --api-key-env looks like a key")
    assert name not in result.stderr


def test_debug_shows_the_traceback(workspace: dict[str, str]) -> None:
    argv = ["--debug", "sessions", "list", "--store", "sqlite:///missing.db"]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "StoreNotFoundError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: StoreNotFoundError")
    result = CliRunner().invoke(
        cli, argv[1:], env={"THREADLINE_DEBUG": "1"}, catch_exceptions=False
    )
    assert "Traceback" in result.stderr
    assert _tree(workspace["work"], workspace["home"]) == []


def _script() -> list[str]:
    script = Path(sys.executable).with_name("threadline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "threadline.cli"]


def _run(argv: list[str], cwd: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("THREADLINE_STORE",)}
    environment.update(env)
    return subprocess.run(
        _script() + argv, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


SUBPROCESS_CASES: list[tuple[str, list[str], dict[str, str], int, str]] = [
    ("script-copy-missing", ["copy", "sqlite:///doesnotexist.db", "sqlite:///x.db"], {}, 1,
     "doesnotexist.db"),
    ("script-malformed-url", ["sessions", "list", "--store", "postgresql://u:pw@[::1:5444/db"],
     {}, 1, ""),
    ("script-unknown-command", ["nosuch"], {}, 2, "nosuch"),
    ("script-load-plugins-nosuch", ["sessions", "list", "--store", "sqlite:///x.db"],
     {"THREADLINE_LOAD_PLUGINS": "nosuch"}, 1, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "argv", "env", "code", "expected"),
    SUBPROCESS_CASES,
    ids=[c[0] for c in SUBPROCESS_CASES],
)
def test_the_installed_script_answers_in_one_line(
    workspace: dict[str, str],
    name: str,
    argv: list[str],
    env: dict[str, str],
    code: int,
    expected: str,
) -> None:
    result = _run(argv, workspace["work"], HOME=workspace["home"], **env)
    check_refused(result, argv, code, expected)
    assert _tree(workspace["work"], workspace["home"]) == []


def test_connect_refuses_create_false_for_a_factory_without_it(tmp_path: Path) -> None:
    from threadline import plugins
    from threadline.hookspecs import hookimpl

    made: list[str] = []

    class OldPlugin:
        @hookimpl
        def threadline_register_stores(self, register: Any) -> None:
            async def factory(url: Any) -> object:
                made.append(str(url))
                return object()

            register("oldstyle", factory, "a factory without create")

    name = plugins.register(OldPlugin(), name=f"old-{new_id()}")
    assert name is not None
    try:
        with pytest.raises(threadline.ConfigurationError, match="create"):
            asyncio.run(threadline.connect("oldstyle://x", create=False, migrate=False))
        assert made == []
        store = asyncio.run(threadline.connect("oldstyle://x", migrate=False))
        assert made == ["oldstyle://x"] and store.url is not None
    finally:
        plugins.unregister(name)
