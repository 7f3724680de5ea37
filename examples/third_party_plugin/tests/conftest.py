"""Only this plugin loads in its tests, whatever else is installed."""

import os

os.environ["THREADLINE_LOAD_PLUGINS"] = "threadline-jsonl"
