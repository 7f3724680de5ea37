"""Running the UI: bind a socket (a clear error when the port is taken), serve with uvicorn.

:class:`BackgroundServer` runs a server in a thread with its own event loop and store:
for tests, benchmarks and notebooks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from types import TracebackType

import uvicorn

from threadline.errors import ConfigurationError
from threadline.store import Store, connect
from threadline_ui.app import create_app
from threadline_ui.config import UIConfig

__all__ = ["BackgroundServer", "bind", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    :raises ConfigurationError: the address cannot be used (taken, not local, ...).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """The base URL a browser opens for a socket bound to ``host``."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def serve(
    store: Store,
    config: UIConfig,
    sock: socket.socket,
    *,
    on_ready: Callable[[uvicorn.Server], None] | None = None,
) -> None:
    """Serve the UI for ``store`` on ``sock`` until interrupted (the store stays open).

    Ctrl-C stops it gracefully in the main thread (uvicorn's signal handling); in another
    thread set ``server.should_exit`` (``on_ready`` receives the server).
    """
    app = create_app(store, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # live pages keep an event stream open: stop waiting for them after a second
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    if server.started and on_ready is not None:
        on_ready(server)
    await task


class BackgroundServer:
    """A UI server in a thread: ``with BackgroundServer(url, config) as base_url: ...``.

    The agents of ``config`` (``--agent``) are closed when it stops, in its own loop.
    """

    def __init__(self, store_url: str, config: UIConfig, host: str = "127.0.0.1") -> None:
        self.store_url = store_url
        self.config = config
        self.host = host
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="threadline-ui", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        store = await connect(self.store_url, create=False)
        try:
            sock = bind(self.host, 0)
            self.url = url_of(sock, self.host)

            def ready(server: uvicorn.Server) -> None:
                self._server = server
                self._ready.set()

            await serve(store, self.config, sock, on_ready=ready)
        finally:
            for agent in self.config.agents.values():  # their stores opened in this loop
                await agent.close()
            await store.close()

    def __enter__(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise TimeoutError("the UI server did not start within 30 s")
        return self.url

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(15)
