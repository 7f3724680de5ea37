"""The ``threadline`` command line. Plugins add commands with ``threadline_register_commands``."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import click

from threadline.cli_options import json_option, print_json
from threadline.errors import ThreadlineError

T = TypeVar("T")

STORE_ENV = "THREADLINE_STORE"
DEBUG_ENV = "THREADLINE_DEBUG"
"""Set to 1 to print the traceback of a failing command (like ``--debug``)."""

_DEBUG_HINT = "rerun with --debug for the traceback"
_PASSWORD = re.compile(r"(://[^\s/@:]*:)\S*@")
_state = {"debug": False}


def one_line(text: str) -> str:
    """``text`` on one line with every URL password shown as ``***``."""
    return _PASSWORD.sub(r"\1***@", " ".join(str(text).split()))


class CommandError(click.ClickException):
    """A failure of a command's work, shown as one line (its cause kept for ``--debug``)."""

    def __init__(self, exc: BaseException) -> None:
        if isinstance(exc, ThreadlineError):
            message = f"{type(exc).__name__}: {exc}"
        else:
            message = f"{type(exc).__name__}: {exc} (unexpected error; {_DEBUG_HINT})"
        super().__init__(one_line(message))
        self.original = exc


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine for a command; any failure becomes a one-line :class:`CommandError`."""
    try:
        return asyncio.run(coro)
    except click.ClickException:
        raise
    except Exception as exc:
        raise CommandError(exc) from exc


def _debugging() -> bool:
    return _state["debug"] or os.environ.get(DEBUG_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as one ``warning:`` line each (the source line only with --debug)."""
    where = f" ({filename}:{lineno})" if _debugging() else ""
    click.echo(f"warning: {one_line(str(message))}{where}", err=True)


def _fail(message: str, code: int, exc: BaseException | None = None) -> int:
    if exc is not None and _debugging():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(f"error: {one_line(message)}", err=True)
    return code


class ThreadlineGroup(click.Group):
    """The root group: every failure is one line on stderr, exit 1 (2 for usage errors).

    No traceback unless ``--debug`` or ``THREADLINE_DEBUG=1``.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _state["debug"] = False
        code = 0
        shown = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            if isinstance(result, int) and not isinstance(result, bool):
                code = result
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            code = _fail(exc.format_message() + where, 2, exc)
        except CommandError as exc:
            code = _fail(exc.format_message(), exc.exit_code, exc.original)
        except click.ClickException as exc:
            code = _fail(exc.format_message(), exc.exit_code, exc)
        except click.Abort as exc:
            code = _fail("aborted", 1, exc)
        except ThreadlineError as exc:
            code = _fail(f"{type(exc).__name__}: {exc}", 1, exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader went away (| head): stop quietly
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - flushed at exit, never read
                code = 1
            elif exc.filename is not None:
                code = _fail(f"{exc.strerror or exc}: {exc.filename}", 1, exc)
            else:
                code = _fail(f"{type(exc).__name__}: {exc} ({_DEBUG_HINT})", 1, exc)
        except Exception as exc:
            code = _fail(f"{type(exc).__name__}: {exc} (unexpected error; {_DEBUG_HINT})", 1, exc)
        finally:
            warnings.showwarning = shown
        if not standalone_mode:
            return code
        sys.exit(code)


@click.group(cls=ThreadlineGroup)
@click.version_option(package_name="threadline")
@click.option(
    "--debug",
    is_flag=True,
    help=f"Print the traceback of a failure (also ${DEBUG_ENV}=1).",
)
def cli(debug: bool) -> None:
    """threadline: durable LLM agents: messages, checkpoints and agent configs in a real store.

    Every failure prints one line on stderr and exits with 1 (2: a usage error).
    """
    _state["debug"] = debug


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
    warnings.showwarning = _show_warning  # one line each, also while plugins load
    _load_plugin_commands()
    cli(prog_name="threadline")


if __name__ == "__main__":  # pragma: no cover
    main()
