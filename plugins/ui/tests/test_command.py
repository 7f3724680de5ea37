"""``threadline ui`` on the command line: every mistake is one line on stderr, exit != 0."""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from threadline.errors import ValidationError
from threadline_ui.config import UIConfig, is_loopback, parse_prices


def ui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadline.cli", "ui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_missing_store_is_one_line(tmp_path: Path) -> None:
    result = ui("--store", f"sqlite:///{tmp_path / 'none.db'}", "--port", "0")
    one_line_error(result, "StoreNotFoundError", "none.db")
    assert not (tmp_path / "none.db").exists()  # nothing created


def test_bad_options_are_one_line(store_url: str) -> None:
    cases = [
        (["--token", "short"], ["--token", "16 characters"]),
        (["--port", "70000"], ["--port"]),
        (["--tenant", "acme"], ["tenant_id must be a UUID"]),
        (["--agent", "nocolon"], ["module:attribute"]),
        (["--agent", "no_such_mod:x"], ["cannot import"]),
        (["--agent", "_travel:reserve_seat"], ["GraphAgent"]),
        (["--agent", "_travel:strategy"], ["GraphAgent"]),
        (["--prices", "/nonexistent/prices.json"], ["cannot read prices"]),
    ]
    # separate processes, run side by side (each mostly waits on its imports)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: ui("--store", store_url, *case[0]), cases))
    for (_, expected), result in zip(cases, results):
        one_line_error(result, *expected)


def test_taken_port_is_one_line(store_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        one_line_error(ui("--store", store_url, "--port", port), f"127.0.0.1:{port}")


def test_config_checks() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(ValidationError, match="at least 16"):
        UIConfig(tenant_id=None, token="x" * 15)
    with pytest.raises(ValidationError, match="tenant_id"):
        UIConfig(tenant_id="acme")
    with pytest.raises(ValidationError, match="'prompt'"):
        parse_prices({"m": {"prompt": -1, "completion": 1}})
    assert parse_prices({"m": {"prompt": 1, "completion": 2}})["m"].cost(1000, 500) == 0.002


def test_agent_option_loads_an_agent_or_a_factory() -> None:
    from threadline_ui.command import load_object
    from threadline_ui.config import inverses_of

    agent = load_object("_travel:agent")
    made = load_object("_travel:make_agent")  # a factory whose arguments all have defaults
    assert agent.agent_id == made.agent_id
    assert sorted(inverses_of([agent])[agent.agent_id]) == ["book_hotel", "charge", "reserve_seat"]
