"""A file system server that cannot be reached is a StoreUnavailableError naming the URL.

fsspec's ``ftp`` backend needs only the standard library, so these tests use real
sockets on 127.0.0.1: a port nobody listens on, and an FTP server that lets the store
log in and then goes away.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

import threadline
from threadline.errors import (
    ConfigurationError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from threadline_fsspec.backends import is_network_error, unavailable


def _closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def vanishing_ftp() -> Iterator[int]:
    """An FTP server that accepts the login, reads one command, then hangs up and stops
    (the client sees EOF)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 threadline test server\r\n")
            lines.readline()  # USER anonymous
            conn.sendall(b"230 logged in\r\n")
            lines.readline()  # the store's first command gets no answer: the connection ends
        server.close()  # the next connection attempt is refused too

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()
    thread.join(timeout=30)


async def test_a_closed_port_is_unavailable_and_the_password_hidden() -> None:
    url = f"fsspec+ftp://reader:pw-secret@127.0.0.1:{_closed_port()}/threadline"
    with pytest.raises(StoreUnavailableError) as raised:
        await threadline.connect(url)
    message = str(raised.value)
    assert "pw-secret" not in message
    assert "fsspec+ftp://reader:***@127.0.0.1" in message
    assert "refused" in message.lower()


async def test_a_server_that_goes_away_after_login_is_unavailable(vanishing_ftp: int) -> None:
    # The store's first read meets a closed connection (EOFError in ftplib, not an
    # OSError): it must still be a typed, retryable error, not a raw traceback.
    with pytest.raises(StoreUnavailableError, match=r"cannot reach ftp://") as raised:
        await threadline.connect(f"fsspec+ftp://127.0.0.1:{vanishing_ftp}/threadline")
    assert isinstance(raised.value, StoreError)


@pytest.fixture
def refusing_ftp() -> Iterator[int]:
    """An FTP server that refuses every login (530)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 threadline test server\r\n")
            lines.readline()  # USER
            conn.sendall(b"331 password please\r\n")
            lines.readline()  # PASS
            conn.sendall(b"530 Login incorrect.\r\n")
            conn.settimeout(1.0)  # a client that keeps the connection open is not waited for
            with contextlib.suppress(OSError):
                lines.readline()  # QUIT, or the client hangs up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()
    thread.join(timeout=30)


async def test_a_refused_login_is_a_configuration_error(refusing_ftp: int) -> None:
    url = f"fsspec+ftp://reader:pw-secret@127.0.0.1:{refusing_ftp}/threadline"
    with pytest.raises(ConfigurationError, match="530 Login incorrect") as raised:
        await threadline.connect(url)
    assert "pw-secret" not in str(raised.value) and "reader:***@" in str(raised.value)


async def test_opening_without_create_meets_the_hang_up_with_a_typed_error(
    vanishing_ftp: int,
) -> None:
    url = f"fsspec+ftp://127.0.0.1:{vanishing_ftp}/threadline"
    with pytest.raises((StoreUnavailableError, StoreNotFoundError)):
        await threadline.connect(url, create=False)


def test_network_errors_are_told_apart_from_missing_files() -> None:
    for error in (
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        socket.gaierror(-2, "Name or service not known"),
        EOFError(),
        OSError(113, "No route to host"),
    ):
        assert is_network_error(error), error
        found = unavailable(error, "ftp://host/dir")
        assert found is not None and str(found).startswith("cannot reach ftp://host/dir: ")
    for error in (FileNotFoundError(2, "missing"), PermissionError(13, "denied"), ValueError()):
        assert not is_network_error(error) and unavailable(error, "x") is None

    class EndpointConnectionError(Exception):  # botocore's name, as s3fs raises it
        pass

    assert is_network_error(EndpointConnectionError("Could not connect to the endpoint URL"))
