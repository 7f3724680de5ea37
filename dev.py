#!/usr/bin/env python3
"""Developer tasks that work on a fresh machine with only Python 3.10+.

    python dev.py demo    # a conversation persisted to embedded SQLite, resumed in a new process
    python dev.py test    # the tox matrix (every plugin alone on 3.10, 3.11; fewer on 3.12+)
    python dev.py test -e py311-sqlite   # extra arguments go to tox

``test`` installs Debian's Chromium with apt-get when it is missing (the UI's browser tests
drive it); without apt they skip with the reason, except under CI (``CI`` set), where they fail.
It installs ``redis-server`` the same way (the Redis store's tests start servers of their own
to kill and restart), and ``pgbouncer`` (the PostgreSQL store's pooler tests start their own).

Virtual environments live in ``.venv`` (demo) and ``.venv-tox`` (test runner).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# Every plugin runs alone on the oldest Python and on 3.11 (which also runs the timing
# tests); 3.12 and 3.13 run the core, the embedded default and the plugins that need no
# PostgreSQL, so the whole CI stays well under 30 minutes on 2 cores.
PARTIAL_PYTHONS = {
    "3.12": ("core", "memory", "sqlite"),
    "3.13": ("core", "memory", "sqlite", "fsspec", "openai", "redis", "thirdparty"),
}
# Envs that share nothing with another env running beside them (no PostgreSQL database,
# free ports only) and run no timing tests (those run on 3.11): two at a time, on 2 cores.
# The rest (PostgreSQL, 3.11's timing tests, e2e, reliability) run one at a time after them.
PARALLEL_FACTORS = ("core", "memory", "sqlite", "fsspec", "openai", "redis", "thirdparty")
PARALLEL_EXTRA_ENVS = ("lint", "type")
# The e2e env (3.11, every plugin installed) runs all of tests/ but tests/reliability,
# timing tests included: a superset of py311-core, which is therefore not run again.
SKIPPED_ENVS = {"py311-core"}
EXTRA_ENVS = ("e2e", "reliability", "lint", "type")
CHROMIUM = os.environ.get("THREADLINE_UI_CHROMIUM", "/usr/bin/chromium")


def bin_path(env: Path, name: str) -> str:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return str(env / scripts / name)


def ensure_venv(env: Path, *requirements: str) -> None:
    """Create ``env`` if needed and install ``requirements`` into it."""
    if not Path(bin_path(env, "python")).exists():
        print(f"creating {env.name} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(env)
    subprocess.run(
        [
            bin_path(env, "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *requirements,
        ],
        check=True,
    )


def find_pythons() -> dict[str, str]:
    """Interpreter directories for each supported Python version found on this machine."""
    found: dict[str, str] = {}
    for version in PYTHONS:
        candidates = [shutil.which(f"python{version}")]
        candidates += sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))
        )
        candidates += sorted(glob.glob(f"/usr/local/bin/python{version}"))
        for candidate in candidates:
            if (
                candidate
                and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0
            ):
                found[version] = str(Path(candidate).parent)
                break
    return found


def demo(args: list[str]) -> int:
    """Show a conversation surviving a restart: the same session in two processes.

    Runs ``examples/streaming_persistence.py`` on ``demo.db`` in the repository root,
    first with ``--new`` (a fresh session, a tool call), then with ``--resume`` in a new
    process, which prints the history it restored from SQLite and continues. Offline:
    the built-in ``echo`` provider answers (``OPENAI_*`` variables are ignored here; run
    the example directly to talk to a model). Extra arguments go to both runs.
    """
    env = ROOT / ".venv"
    ensure_venv(env, "-e", str(ROOT), "-e", str(ROOT / "plugins" / "sqlite"))
    example = ROOT / "examples" / "streaming_persistence.py"
    python = bin_path(env, "python")
    db = ROOT / "demo.db"
    base = [python, str(example), "--store", f"sqlite:///{db}"]
    offline = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    offline["THREADLINE_LOAD_PLUGINS"] = "threadline-sqlite"
    print(f"\n== first process: a new conversation in {db.name} ==", flush=True)
    first = subprocess.run([*base, "--new", *args], env=offline, cwd=ROOT, check=False)
    if first.returncode != 0:
        return first.returncode
    print("\n== second process: the same session resumed after a restart ==", flush=True)
    return subprocess.run([*base, "--resume", *args], env=offline, cwd=ROOT).returncode


def ensure_debian_package(package: str, present: bool, purpose: str) -> None:
    """Install Debian's ``package`` with apt-get when ``present`` is false.

    Where that cannot be done (no apt-get, not root and no sudo) the tests that need it
    skip with the reason locally; under ``CI`` they fail instead.
    """
    if present:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        print(f"note: no {package} and no apt-get here: {purpose} skip (fail in CI)")
        return
    install = [apt, "install", "-y", "--no-install-recommends", package]
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        if shutil.which("sudo") is None:
            print(f"note: installing {package} needs root (no sudo here); {purpose} skip")
            return
        install = ["sudo", "-n", *install]
    print(f"installing {package} with apt-get ({purpose}) ...", flush=True)
    if subprocess.run(install, check=False).returncode != 0:
        update = [*install[: install.index(apt) + 1], "update"]
        subprocess.run(update, check=False)
        if subprocess.run(install, check=False).returncode != 0:
            print(f"note: apt-get could not install {package}; {purpose} skip (fail in CI)")


def ensure_chromium() -> None:
    """Debian's Chromium for the UI's browser tests."""
    ensure_debian_package("chromium", os.path.exists(CHROMIUM), "the UI's browser tests")


def ensure_redis_server() -> None:
    """Debian's redis-server for the Redis store's own-server tests."""
    present = shutil.which("redis-server") is not None
    ensure_debian_package("redis-server", present, "the Redis store's restart tests")


def ensure_pgbouncer() -> None:
    """Debian's pgbouncer for the PostgreSQL store's pooler tests (they start their own)."""
    present = shutil.which("pgbouncer") is not None or os.path.exists("/usr/sbin/pgbouncer")
    ensure_debian_package("pgbouncer", present, "the PostgreSQL store's pooler tests")


def test(args: list[str]) -> int:
    selected = [a for a in args if a == "-e" or a.startswith("-e")]
    if not selected or "ui" in " ".join(args):
        ensure_chromium()
    if not selected or "redis" in " ".join(args):
        ensure_redis_server()
    if not selected or "postgres" in " ".join(args):
        ensure_pgbouncer()
    env = ROOT / ".venv-tox"
    ensure_venv(env, "tox>=4.11", "tox-uv>=1.11")
    pythons = find_pythons()
    missing = [v for v in PYTHONS if v not in pythons]
    if missing:
        print(f"note: Python {', '.join(missing)} not found here; their tox envs are skipped")
    path = os.pathsep.join([*pythons.values(), os.environ.get("PATH", "")])
    environ = {**os.environ, "PATH": path, "UV_PYTHON_DOWNLOADS": "never"}
    environ.pop("PYENV_VERSION", None)
    if not any(a == "-e" or a.startswith("-e") for a in args):
        # a tox factor is a plugin folder's name without underscores (openai_agents: openaiagents)
        folders = ROOT.glob("plugins/*/pyproject.toml")
        plugins = sorted(p.parent.name.replace("_", "") for p in folders)
        plugins.append("thirdparty")  # examples/third_party_plugin, tested like ours
        envs = [
            f"py{v.replace('.', '')}-{p}"
            for v in pythons
            for p in ["core", *plugins]
            if p in PARTIAL_PYTHONS.get(v, (p,))
        ]
        envs = [e for e in envs if e not in SKIPPED_ENVS]
        side_by_side = [*(e for e in envs if _parallel(e)), *PARALLEL_EXTRA_ENVS]
        one_by_one = [*(e for e in envs if not _parallel(e)), *EXTRA_ENVS]
        one_by_one = [e for e in one_by_one if e not in side_by_side]
        tox = bin_path(env, "tox")
        first = subprocess.run(
            [tox, "run-parallel", "-p", "2", "--parallel-no-spinner", "-e", ",".join(side_by_side),
             *args],
            cwd=ROOT,
            env=environ,
        ).returncode  # fmt: skip
        then = subprocess.run(
            [tox, "run", "-e", ",".join(one_by_one), *args], cwd=ROOT, env=environ
        ).returncode
        return first or then
    return subprocess.run([bin_path(env, "tox"), *args], cwd=ROOT, env=environ).returncode


def _parallel(env: str) -> bool:
    """Whether a ``py3X-factor`` env may run beside another (see :data:`PARALLEL_FACTORS`)."""
    python, _, factor = env.partition("-")
    return python != "py311" and factor in PARALLEL_FACTORS


def main(argv: list[str]) -> int:
    tasks = {"demo": demo, "test": test}
    if not argv or argv[0] not in tasks:
        print(__doc__)
        return 2
    return tasks[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
