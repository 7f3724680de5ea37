"""Control of a local PostgreSQL cluster, for tests that stop and start the server.

Needs root and Debian's ``pg_ctlcluster``/``pg_lsclusters``; :func:`local_cluster` says
``None`` where the server cannot be controlled, and the test should skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from threadline.urls import StoreURL

__all__ = ["Cluster", "cluster_ctl", "cluster_online", "local_cluster"]

Cluster = tuple[str, str]
"""(version, name) of a cluster, as ``pg_lsclusters`` prints them."""


def local_cluster(url: str) -> Cluster | None:
    """The local cluster serving ``url``'s port, if this process can control it."""
    parsed = StoreURL.parse(url)
    if parsed.host not in ("127.0.0.1", "localhost", None) or not shutil.which("pg_lsclusters"):
        return None
    if not shutil.which("pg_ctlcluster") or os.geteuid() != 0:
        return None
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(parsed.port or 5432):
            return fields[0], fields[1]
    return None


def cluster_ctl(cluster: Cluster, action: str, mode: str = "fast") -> None:
    """``pg_ctlcluster`` ``action`` (start, stop, restart); ``mode`` applies to stops."""
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", f"--mode={mode}", *cluster, action],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def cluster_online(cluster: Cluster) -> bool:
    """Whether ``pg_lsclusters`` reports the cluster online."""
    out = subprocess.run(
        ["pg_lsclusters", "-h", *cluster], capture_output=True, text=True, check=False
    )
    return "online" in out.stdout
