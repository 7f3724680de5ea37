"""Throwaway ``redis-server`` processes for the tests that kill or restart one.

``redis-server --port N --appendonly yes --appendfsync always --dir <tmp> --save ""``: the
machine's own server (6379) is never touched. ``ServerUnavailableError`` when there is
no ``redis-server`` binary (``.ci/run`` and ``dev.py test`` install it with apt-get).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis


class ServerUnavailableError(RuntimeError):
    """No ``redis-server`` binary to start."""


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` with an append-only file in ``folder``."""

    def __init__(self, binary: str, folder: Path, fsync: str = "always") -> None:
        self.binary, self.folder, self.fsync = binary, folder, fsync
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again on the same port and files); wait until it answers."""
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", self.fsync, "--dir", str(self.folder),
            "--save", "", "--daemonize", "no", "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
                client.ping()
                client.close()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed beyond what fsync already wrote."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def start_server(folder: Path, fsync: str = "always") -> Iterator[RedisServer]:
    """A running throwaway server, killed (and its files left to ``folder``) afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailableError("no redis-server here (apt-get install redis-server)")
    server = RedisServer(binary, folder, fsync)
    server.start()
    try:
        yield server
    finally:
        server.kill()
