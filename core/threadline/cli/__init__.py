"""The ``threadline`` command line. Plugins add commands with ``threadline_register_commands``.

Layout: :mod:`threadline.cli.app` holds the root group and the failure rule; each other
module adds one family of commands to it; this module puts them together and loads the
plugins' commands. Command modules import ``app`` and ``options`` only, never each other.
"""

from __future__ import annotations

import warnings

import click

from threadline.cli import admin  # noqa: F401  (adds plugins and migrate)
from threadline.cli.app import DEBUG_ENV, STORE_ENV, CommandError, cli, run, show_warning
from threadline.cli.branches import branches_command, fork_command
from threadline.cli.chat import chat_command
from threadline.cli.checkpoints import checkpoints_group
from threadline.cli.compaction import compact_command
from threadline.cli.records import agents_group, sessions_group
from threadline.cli.retention import (
    erase_user_command,
    prune_checkpoints_command,
    prune_sessions_command,
)
from threadline.cli.runs import approvals_group, runs_group
from threadline.cli.transfer import copy_command, export_command, import_command
from threadline.cli.usage import usage_command
from threadline.errors import ThreadlineError

__all__ = ["DEBUG_ENV", "STORE_ENV", "CommandError", "cli", "main", "run"]

sessions_group.add_command(prune_sessions_command)
sessions_group.add_command(fork_command)
sessions_group.add_command(branches_command)
sessions_group.add_command(compact_command)
checkpoints_group.add_command(prune_checkpoints_command)
for _command in (
    chat_command,
    sessions_group,
    agents_group,
    checkpoints_group,
    erase_user_command,
    copy_command,
    export_command,
    import_command,
    runs_group,
    approvals_group,
    usage_command,
):
    cli.add_command(_command)


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
    warnings.showwarning = show_warning  # one line each, also while plugins load
    _load_plugin_commands()
    cli(prog_name="threadline")
