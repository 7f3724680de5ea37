"""``threadline ui``: serve the browser UI over a store.

Loopback by default. Bound to any other address it needs an access token (``--token``,
``$THREADLINE_UI_TOKEN``, or one generated and printed). One tenant per server unless
``--all-tenants``; ``--read-only`` refuses every write. Every mistake is one line on stderr
and a non-zero exit, as for every ``threadline`` command.
"""

from __future__ import annotations

import importlib
import inspect
import secrets
import sys
from typing import Any

import click

from threadline.cli.app import run
from threadline.cli.options import store_option, store_url
from threadline.errors import ConfigurationError
from threadline.runtime.agent import LOCAL_TENANT_ID

__all__ = ["load_object", "ui_command"]


def load_object(spec: str) -> Any:
    """The object ``module:attribute`` names (a factory without arguments is called)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--agent takes module:attribute, got {spec!r}")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--agent {spec}: cannot import {module_name}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ConfigurationError(f"--agent {spec}: {module_name} has no {attribute}")
        found = getattr(found, part)
    if callable(found) and not hasattr(found, "inverses"):
        try:
            required = [
                p
                for p in inspect.signature(found).parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
        except (TypeError, ValueError):
            required = []
        if required:
            raise ConfigurationError(
                f"--agent {spec}: names neither a GraphAgent nor a factory without arguments"
            )
        found = found()
    return found


def _token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from threadline_ui.config import MIN_TOKEN_LENGTH

    if value is not None and len(value.strip()) < MIN_TOKEN_LENGTH:
        raise click.BadParameter(f"must be at least {MIN_TOKEN_LENGTH} characters", ctx, param)
    return value.strip() if value is not None else None


@click.command(name="ui")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free one).",
)
@click.option(
    "--tenant",
    "tenant_id",
    envvar="TENANT_ID",
    default=LOCAL_TENANT_ID,
    show_default=True,
    help="The one tenant this server shows ($TENANT_ID).",
)
@click.option(
    "--all-tenants",
    is_flag=True,
    help="Admin mode: show every tenant of the store (pages are under /t/<tenant>/).",
)
@click.option(
    "--token",
    envvar="THREADLINE_UI_TOKEN",
    default=None,
    callback=_token,
    help="Access token required on every request ($THREADLINE_UI_TOKEN); generated when "
    "bound off loopback without one.",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Refuse every write (rollback, delete, answers to waiting runs).",
)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="MODULE:ATTR",
    help="A GraphAgent whose inverse tools a rollback of its runs executes, and whose runs "
    "the approvals page continues after an answer (repeatable).",
)
@click.option(
    "--prices",
    type=click.Path(dir_okay=False),
    default=None,
    help='JSON {"model": {"prompt": USD, "completion": USD}} per million tokens, for costs.',
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.01, 60),
    default=0.25,
    show_default=True,
    help="Seconds between store reads of a live conversation.",
)
def ui_command(
    store: str | None,
    host: str,
    port: int,
    tenant_id: str,
    all_tenants: bool,
    token: str | None,
    read_only: bool,
    agents: tuple[str, ...],
    prices: str | None,
    poll_interval: float,
) -> None:
    """Browse sessions, conversations, usage and checkpoints in a browser; roll back runs.

    Prints the URL to open. Stop with Ctrl-C.
    """
    from threadline.store import connect
    from threadline.urls import StoreURL
    from threadline_ui.config import UIConfig, agents_of, inverses_of, is_loopback, load_prices
    from threadline_ui.server import bind, serve, url_of

    generated = False
    if token is None and not is_loopback(host):
        token, generated = secrets.token_urlsafe(24), True
    sys.path.insert(0, "")  # --agent modules from the current directory, like python -m

    async def go() -> None:
        url = store_url(store, create=False)
        loaded = [load_object(spec) for spec in agents]
        config = UIConfig(
            tenant_id=None if all_tenants else tenant_id,
            token=token,
            read_only=read_only,
            inverses=inverses_of(loaded),
            agents=agents_of(loaded),
            prices=load_prices(prices) if prices else {},
            poll_interval=poll_interval,
            store_label=StoreURL.parse(url).redacted(),
        )
        sock = bind(host, port)
        opened = await connect(url, create=False)
        base = url_of(sock, host)
        link = base + "/" + (f"?token={token}" if token else "")

        def ready(_: object) -> None:
            scope = "every tenant" if all_tenants else f"tenant {tenant_id}"
            click.echo(f"threadline ui on {config.store_label} ({scope}): {link}")
            if generated:
                click.echo(f"access token (generated; needed off loopback): {token}")
            click.echo("press Ctrl-C to stop", err=True)

        try:
            await serve(opened, config, sock, on_ready=ready)
        finally:
            sock.close()
            for agent in loaded:
                await agent.close()
            await opened.close()

    run(go())
