"""Where an agent persists by default: the fixed local ids and the embedded store's URL.

The embedded default store's folder comes from ``platformdirs``, the core's one dependency
beyond pluggy, attrs and click: it is small, pure Python with no dependencies of its own
(pip vendors it), and follows each platform's rules (Windows known folders, XDG on
Unix and macOS) where a hand-written guess drifts. A store an earlier threadline made in
another folder keeps being used (:func:`default_database_path`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

__all__ = [
    "DEFAULT_DATABASE",
    "LOCAL_AGENT_ID",
    "LOCAL_TENANT_ID",
    "LOCAL_USER_ID",
    "STORE_ENV_VARS",
    "default_database_path",
    "default_store_url",
    "user_data_dir",
]

# The ids quick_agent uses when TENANT_ID / USER_ID / AGENT_ID are not set: one local user
# of the embedded store. Documented, fixed, and never used by the other builders.
LOCAL_TENANT_ID = "00000000-0000-7000-8000-000000000001"
LOCAL_USER_ID = "00000000-0000-7000-8000-000000000002"
LOCAL_AGENT_ID = "00000000-0000-7000-8000-000000000003"
STORE_ENV_VARS = ("THREADLINE_STORE", "DATABASE_URL")
DEFAULT_DATABASE = "threadline.db"


def user_data_dir() -> Path:
    """The platform's per-user data folder for threadline (``platformdirs``):
    ``$XDG_DATA_HOME/threadline`` or ``~/.local/share/threadline`` on Linux,
    ``~/Library/Application Support/threadline`` on macOS (``$XDG_DATA_HOME`` first when
    set), ``%LOCALAPPDATA%\\threadline`` on Windows."""
    return platformdirs.user_data_path("threadline", appauthor=False)


def _earlier_data_dirs() -> list[Path]:
    """Where threadline put its default store before it used platformdirs, where that
    differs: macOS ignored ``$XDG_DATA_HOME``, Windows read ``%LOCALAPPDATA%`` itself."""
    if sys.platform == "darwin":
        return [Path.home() / "Library" / "Application Support" / "threadline"]
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return [Path(os.environ["LOCALAPPDATA"]) / "threadline"]
    return []


def default_database_path() -> Path:
    """The embedded store's SQLite file: ``threadline.db`` in :func:`user_data_dir`, unless
    only an earlier threadline's folder holds one (then that file: no history left behind)."""
    path = user_data_dir() / DEFAULT_DATABASE
    if not path.exists():
        for folder in _earlier_data_dirs():
            earlier = folder / DEFAULT_DATABASE
            if earlier != path and earlier.is_file():
                return earlier
    return path


def default_store_url() -> str:
    """``THREADLINE_STORE``, else ``DATABASE_URL``, else :func:`default_database_path`."""
    for var in STORE_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    path = default_database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"
