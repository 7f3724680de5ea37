"""Loading the plugins (what every ``threadline`` command does first) imports no store
driver, HTTP client, web framework or agent framework: each plugin imports those when its
store, provider or command is first used, so ``threadline --help`` starts in a fraction of
a second however many plugins are installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("asyncpg", "redis", "httpx", "fsspec", "starlette", "uvicorn", "langchain_core",
         "langgraph", "agents", "sqlite_utils")  # fmt: skip

PROBE = """
import json, sys
from threadline.plugins import load_plugins, provider_registry, store_registry
load_plugins(); store_registry(); provider_registry()
sys.argv[1:], heavy = ["--help"], sys.argv[1:]
import threadline.cli
try:
    threadline.cli.main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_loading_every_installed_plugin_imports_no_driver_or_framework() -> None:
    env = {k: v for k, v in os.environ.items() if k != "THREADLINE_LOAD_PLUGINS"}  # all of them
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert "Commands:" in out  # the plugins' commands were registered and listed
    assert json.loads(out.splitlines()[-1]) == []
