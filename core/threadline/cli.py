"""The ``threadline`` command line. Plugins add commands with ``threadline_register_commands``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from threadline.cli_options import json_option, print_json
from threadline.errors import ThreadlineError

T = TypeVar("T")

STORE_ENV = "THREADLINE_STORE"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine for a command, turning threadline errors into a clean exit."""
    try:
        return asyncio.run(coro)
    except ThreadlineError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


@click.group()
@click.version_option(package_name="threadline")
def cli() -> None:
    """threadline: durable LLM agents: messages, checkpoints and agent configs in a real store."""


@cli.command(name="plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the core's built-in plugin.")
def plugins_command(show_all: bool) -> None:
    """List the installed plugins and the hooks they implement, as JSON."""
    from threadline.plugins import BUILTIN_PLUGINS, get_plugins

    found = [p for p in get_plugins() if show_all or p["name"] not in BUILTIN_PLUGINS]
    click.echo(json.dumps(found, indent=2))


@cli.command(name="migrate")
@click.argument("url", envvar=STORE_ENV)
@json_option
def migrate_command(url: str, as_json: bool) -> None:
    """Apply pending schema migrations to the store at URL and list them."""
    from threadline.store import connect

    async def go() -> list[str]:
        store = await connect(url, migrate=False)
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = run(go())
    if as_json:
        print_json({"applied": applied})
    elif applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("up to date: no migrations to apply")


def _add_builtin_commands() -> None:
    from threadline.cli_chat import chat_command
    from threadline.cli_checkpoints import checkpoints_group
    from threadline.cli_records import agents_group, sessions_group
    from threadline.cli_retention import (
        erase_user_command,
        prune_checkpoints_command,
        prune_sessions_command,
    )
    from threadline.cli_transfer import copy_command, export_command, import_command

    sessions_group.add_command(prune_sessions_command)
    checkpoints_group.add_command(prune_checkpoints_command)
    for command in (
        chat_command,
        sessions_group,
        agents_group,
        checkpoints_group,
        erase_user_command,
        copy_command,
        export_command,
        import_command,
    ):
        cli.add_command(command)


_add_builtin_commands()


def _load_plugin_commands() -> None:
    from threadline.plugins import load_plugins, pm

    try:
        load_plugins()
    except ThreadlineError as exc:
        click.echo(f"warning: {exc}", err=True)
        return
    pm.hook.threadline_register_commands(cli=cli)


def main() -> None:
    """Entry point of the ``threadline`` script."""
    _load_plugin_commands()
    cli(prog_name="threadline")


if __name__ == "__main__":  # pragma: no cover
    main()
