"""The ``threadline`` entry point: ``threadline agents-sdk items SESSION_ID`` prints the items
an Agents SDK ``Runner`` would read from a session, one JSON object a line."""

from __future__ import annotations

import click

from threadline.hookspecs import hookimpl

__all__ = ["threadline_register_commands"]


@hookimpl
def threadline_register_commands(cli: click.Group) -> None:
    from threadline_openai_agents.cli import agents_sdk

    cli.add_command(agents_sdk)
