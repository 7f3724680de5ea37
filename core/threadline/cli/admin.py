"""``threadline plugins`` and ``threadline migrate``: what is installed, and schema upgrades."""

from __future__ import annotations

import json

import click

from threadline.cli.app import STORE_ENV, cli, run
from threadline.cli.options import json_option, print_json


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
        store = await connect(url, migrate=False, create=True)
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
