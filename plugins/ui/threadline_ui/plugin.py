"""Adds ``threadline ui`` to the command line (entry point ``threadline_ui.plugin``).

Kept small: Starlette, uvicorn and Jinja2 are imported when the command runs, not when
plugins load.
"""

from __future__ import annotations

import click

from threadline.hookspecs import hookimpl

__all__ = ["threadline_register_commands"]


@hookimpl
def threadline_register_commands(cli: click.Group) -> None:
    """Register the ``ui`` command."""
    from threadline_ui.command import ui_command

    cli.add_command(ui_command)
