"""Cross-package tests: only our own plugins load, whatever else is installed."""

from __future__ import annotations

import os

OWN_PLUGINS = (
    "threadline-memory,threadline-sqlite,threadline-postgres,threadline-fsspec,threadline-openai,"
    "threadline-redis"
)
os.environ["THREADLINE_LOAD_PLUGINS"] = OWN_PLUGINS
