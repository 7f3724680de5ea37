"""A throwaway PostgreSQL cluster for tests that stop and start the server.

:class:`TempCluster` runs ``initdb`` and ``pg_ctl`` into a temporary folder: its own
server on a free port of 127.0.0.1 (trust auth, unix socket inside the folder), which a
test may stop, start and restart at will, and which is stopped and deleted afterwards.
No server the user runs is ever stopped, restarted or reconfigured.

As root (CI), ``initdb`` and ``postgres`` refuse to run: the cluster then runs as the
``postgres`` OS user. Binaries are looked up in ``THREADLINE_PG_BINDIR``, on ``PATH``,
through ``pg_config --bindir``, then in Debian's ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import glob
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ClusterError",
    "ClusterUnavailableError",
    "TempCluster",
    "TempPgBouncer",
    "find_bindir",
    "postmaster_start_time",
    "temp_cluster",
    "temp_database",
]

STOP_MODES = ("smart", "fast", "immediate")
RUN_AS_WHEN_ROOT = "postgres"
"""The OS user that owns and runs the cluster when this process is root."""


class ClusterError(RuntimeError):
    """A ``initdb``/``pg_ctl`` command failed; the message holds its output and the log's end."""


class ClusterUnavailableError(ClusterError):
    """No throwaway cluster can be made here (no binaries, or root without a ``postgres`` user)."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or ``None`` when none is found."""
    candidates: list[str] = []
    if configured := os.environ.get("THREADLINE_PG_BINDIR"):
        candidates.append(configured)
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).resolve().parent))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parent.name
        return tuple(int(p) for p in number.split(".") if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in candidates:
        folder = Path(candidate)
        if candidate and all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return folder
    return None


def _free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, below the ephemeral range.

    Below it, no outgoing connection takes the port while the server is stopped, so a
    restart binds the same port again. Never 5432.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low) if low > 2048 else 0
        if port == 5432:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = probe.getsockname()[1]
            return chosen
    raise ClusterError("no free port on 127.0.0.1")


class TempCluster:
    """A PostgreSQL server of its own in a temporary folder: ``with TempCluster() as c: c.url``.

    Entering runs ``initdb`` and starts the server (about a second); leaving stops it
    (``immediate``) and deletes the folder, whatever happened in between. :meth:`stop`,
    :meth:`start` and :meth:`restart` control it; the port stays the same throughout.
    """

    def __init__(
        self, bindir: Path | str | None = None, *, standby_of: TempCluster | None = None
    ) -> None:
        """:param standby_of: make this a streaming standby of that (running) cluster:
        ``pg_basebackup -R`` from it instead of ``initdb``."""
        self.standby_of = standby_of
        found = Path(bindir) if bindir is not None else find_bindir()
        if found is None:
            raise ClusterUnavailableError(
                "no initdb/pg_ctl found (set THREADLINE_PG_BINDIR, put them on PATH, or "
                "install the PostgreSQL server package)"
            )
        self.bindir = found
        self._uid, self._gid = _run_as()
        self.port = 0
        self.path: Path | None = None
        self.startup_seconds = 0.0
        """How long entering took: ``initdb`` plus the first start."""

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres``: the superuser, trust auth."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        """The data directory."""
        if self.path is None:
            raise ClusterError("the cluster is not created (use it as a context manager)")
        return self.path / "data"

    def __enter__(self) -> TempCluster:
        started = time.monotonic()
        self.path = Path(tempfile.mkdtemp(prefix="threadline-pg-"))
        try:
            if self._uid is not None and self._gid is not None:
                os.chown(self.path, self._uid, self._gid)
            if self.standby_of is None:
                self._run(
                    "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--locale=C", "--no-sync",
                )  # fmt: skip
            else:
                self._run(
                    "pg_basebackup", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
                    "-h", "127.0.0.1", "-p", str(self.standby_of.port), "-U", "postgres",
                )  # fmt: skip
            self.port = _free_port()
            with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(
                    "\n# threadline TempCluster\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.path}'\n"
                    "max_connections = 40\n"
                    "shared_buffers = 16MB\n"
                    "synchronous_standby_names = ''\n"
                )
            self.start()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start", "-l", str(self._log))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``: a crash, WAL recovery next)."""
        self._pg_ctl("stop", "-m", self._mode(mode))

    def restart(self, mode: str = "fast") -> None:
        """Stop (``mode``) and start again, waiting until it accepts connections."""
        self._pg_ctl("restart", "-m", self._mode(mode), "-l", str(self._log))

    def configure(self, *settings: str) -> None:
        """Append ``name = value`` lines to ``postgresql.conf`` and reload the server."""
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("".join(f"{line}\n" for line in settings))
        self._pg_ctl("reload")

    def promote(self) -> None:
        """Promote this standby to a primary and wait until it accepts writes."""
        self._pg_ctl("promote")

    def running(self) -> bool:
        """Whether the server runs (``pg_ctl status``)."""
        if self.path is None or not self.data.exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def close(self) -> None:
        """Stop the server if it runs and delete the folder (safe to call twice)."""
        if self.path is None:
            return
        try:
            if self.running():
                try:
                    self.stop("immediate")
                except ClusterError:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    # -- internals -----------------------------------------------------------------------

    @property
    def _log(self) -> Path:
        assert self.path is not None
        return self.path / "server.log"

    @staticmethod
    def _mode(mode: str) -> str:
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
        return mode

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", "-s", *args)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            env=env,
            cwd=self.path,
            user=self._uid,
            group=self._gid,
            extra_groups=[] if self._uid is not None else None,
        )
        if check and done.returncode != 0:
            log = ""
            with contextlib.suppress(OSError, AssertionError):
                log = "\n".join(self._log.read_text(errors="replace").splitlines()[-15:])
            raise ClusterError(
                f"{tool} {' '.join(args)} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}" + (f"\nserver log:\n{log}" if log else "")
            )
        return done

    def _kill_postmaster(self) -> None:
        """Last resort when ``pg_ctl stop`` failed: kill the postmaster of *this* cluster."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)


POOL_MODES = ("session", "transaction", "statement")


def find_pgbouncer() -> Path | None:
    """The ``pgbouncer`` binary (``THREADLINE_PGBOUNCER``, ``PATH``, Debian's /usr/sbin)."""
    for candidate in (
        os.environ.get("THREADLINE_PGBOUNCER"),
        shutil.which("pgbouncer"),
        "/usr/sbin/pgbouncer",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


class TempPgBouncer:
    """A pgbouncer of its own in front of a server: ``with TempPgBouncer(5432) as b: b.url("db")``.

    It listens on a free port of 127.0.0.1, forwards every database to
    ``server_host:server_port`` as ``server_user`` (trust auth on both sides) in
    ``pool_mode``, with ``pool_size`` server connections per database, so a test sees
    server connections shared by many clients. Runs as ``postgres`` when this process is
    root (pgbouncer refuses root); stopped and deleted on leaving.
    """

    def __init__(
        self,
        server_port: int = 5432,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 4,
        server_host: str = "127.0.0.1",
        server_user: str = "postgres",
    ) -> None:
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {', '.join(POOL_MODES)}")
        binary = find_pgbouncer()
        if binary is None:
            raise ClusterUnavailableError(
                "no pgbouncer found (install Debian's pgbouncer, or set THREADLINE_PGBOUNCER)"
            )
        self.binary = binary
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.server = (server_host, server_port, server_user)
        self.port = 0
        self.path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._uid, self._gid = _run_as()

    def url(self, database: str, user: str = "postgres") -> str:
        """A ``postgresql://`` URL to ``database`` through this pgbouncer."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> TempPgBouncer:
        self.path = Path(tempfile.mkdtemp(prefix="threadline-pgbouncer-"))
        try:
            host, server_port, user = self.server
            self.port = _free_port()
            (self.path / "users.txt").write_text(f'"{user}" ""\n', encoding="utf-8")
            (self.path / "pgbouncer.ini").write_text(
                "[databases]\n"
                f"* = host={host} port={server_port} user={user}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                f"unix_socket_dir = {self.path}\n"
                "auth_type = trust\n"
                f"auth_file = {self.path / 'users.txt'}\n"
                f"pool_mode = {self.pool_mode}\n"
                f"default_pool_size = {self.pool_size}\n"
                "max_client_conn = 500\n"
                f"logfile = {self.path / 'pgbouncer.log'}\n"
                f"pidfile = {self.path / 'pgbouncer.pid'}\n"
                "ignore_startup_parameters = extra_float_digits,options\n",
                encoding="utf-8",
            )
            if self._uid is not None and self._gid is not None:
                for item in (self.path, *self.path.iterdir()):
                    os.chown(item, self._uid, self._gid)
            # -q: log to the logfile only (an unread stderr pipe would fill and stall it)
            self._process = subprocess.Popen(
                [str(self.binary), "-q", str(self.path / "pgbouncer.ini")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.path,
                user=self._uid,
                group=self._gid,
                extra_groups=[] if self._uid is not None else None,
            )
            self._wait_listening()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop pgbouncer (the process this object started) and delete its folder."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    def _wait_listening(self) -> None:
        assert self._process is not None and self.path is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = ""
                with contextlib.suppress(OSError):
                    log = (self.path / "pgbouncer.log").read_text(errors="replace")[-1500:]
                raise ClusterError(f"pgbouncer exited ({self._process.returncode}): {log}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise ClusterError(f"pgbouncer did not listen on 127.0.0.1:{self.port} within 15 s")


def _run_as() -> tuple[int | None, int | None]:
    """The uid and gid a server runs as: this process's, or ``postgres``'s when root."""
    if os.geteuid() != 0:
        return None, None
    try:
        user = pwd.getpwnam(RUN_AS_WHEN_ROOT)
    except KeyError:
        raise ClusterUnavailableError(
            f"running as root, and there is no {RUN_AS_WHEN_ROOT!r} OS user to run "
            "the server as (it refuses to run as root)"
        ) from None
    return user.pw_uid, user.pw_gid


async def postmaster_start_time(url: str, timeout: float = 5) -> datetime.datetime | None:
    """``pg_postmaster_start_time()`` of the server at ``url``; ``None`` if it cannot be reached."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError):
        return None
    try:
        started: datetime.datetime = await conn.fetchval("SELECT pg_postmaster_start_time()")
        return started
    finally:
        await conn.close()


def _start_time_now(url: str) -> datetime.datetime | None:
    """:func:`postmaster_start_time` from synchronous code, even inside a running loop."""
    result: list[datetime.datetime | None] = [None]

    def run() -> None:
        result[0] = asyncio.run(postmaster_start_time(url))

    thread = threading.Thread(target=run, name="postmaster-start-time")
    thread.start()
    thread.join()
    return result[0]


@contextlib.contextmanager
def temp_cluster(watch: str | None = None) -> Iterator[TempCluster]:
    """A :class:`TempCluster`, checking that the server at ``watch`` was left alone.

    ``watch`` is the URL of a server the user runs (the tests' usual one): when it
    answered before, its postmaster start time must be the same afterwards, or
    :class:`ClusterError` says it was restarted. Raises :class:`ClusterUnavailableError`
    when no cluster can be made here.
    """
    before = _start_time_now(watch) if watch else None
    with TempCluster() as cluster:
        yield cluster
    if watch and before is not None:
        after = _start_time_now(watch)
        if after != before:
            raise ClusterError(
                f"the server at {urlsplit(watch).hostname}:{urlsplit(watch).port or 5432} was "
                f"restarted or stopped during the test (started {before}, now {after})"
            )


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def temp_database(admin_url: str, prefix: str = "threadline_test") -> Iterator[str]:
    """The URL of a new database on the server of ``admin_url``, dropped afterwards.

    For a test run that wants a database of its own on a server the user runs (nothing
    else there is touched). Raises :class:`ClusterUnavailableError` when the server
    cannot be reached or refuses ``CREATE DATABASE``.
    """
    name = f"{prefix}_{secrets.token_hex(5)}"
    try:
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise ClusterUnavailableError(f"{type(exc).__name__}: {exc}") from exc
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        try:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as exc:  # never hide the tests' own outcome
            print(f"could not drop {name}: {exc}")
