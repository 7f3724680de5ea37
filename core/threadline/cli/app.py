"""The root ``threadline`` group, ``run`` and the one-line failure rule every command shares."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from threadline.errors import ThreadlineError

if TYPE_CHECKING:
    from threadline.store import Store

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


def show_warning(
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
        warnings.showwarning = show_warning
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


def with_store(url: str | None, work: Callable[[Store], Awaitable[T]], *, create: bool) -> T:
    """Open the store, run ``work`` on it, close it; errors become clean CLI errors.

    ``create=False`` (reading and deleting commands) never creates a store: one that does
    not exist is a :class:`~threadline.errors.StoreNotFoundError` naming the URL.
    """
    from threadline.cli.options import store_url
    from threadline.store import connect

    async def go() -> T:
        store = await connect(store_url(url, create=create), create=create)
        try:
            return await work(store)
        finally:
            await store.close()

    return run(go())
