"""``threadline copy``, ``threadline export`` and ``threadline import``: move whole stores."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO

import click

from threadline.cli.options import print_json, print_table, store_option, store_url
from threadline.cli.progress import (
    CountingWriter,
    Progress,
    counted,
    progress_option,
    show_progress,
)
from threadline.store import Store
from threadline.transfer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    CopyReport,
    ImportReport,
)

__all__ = ["copy_command", "export_command", "import_command"]


@click.command(name="copy")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--tenant", "tenants", multiple=True, help="Copy only this tenant (repeatable; default: all)."
)
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Messages per write.",
)
@click.option(
    "--concurrency",
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    type=click.IntRange(min=1, max=64),
    help="Sessions copied at once.",
)
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print the verification report as JSON.")
def copy_command(
    src: str,
    dst: str,
    tenants: tuple[str, ...],
    batch_size: int,
    concurrency: int,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Copy everything from the store at SRC to the store at DST, then verify the counts.

    Rerunning after an interruption continues where it stopped; rows already copied
    are checked, never duplicated. SRC must exist; DST is created if needed. Exits with
    1 if the verification fails.
    """
    from threadline.cli.app import run
    from threadline.store import connect
    from threadline.transfer import copy_store, count_source_messages

    async def go() -> CopyReport:
        source = await connect(src, create=False)  # a source that does not exist is an error
        try:
            target = await connect(dst, create=True)
            try:
                bar: Progress | None = None
                if show_progress(progress):
                    total = await count_source_messages(source, tenants=tenants or None)
                    bar = Progress(total, label="copying", verb="copied", unit="messages")
                try:
                    return await copy_store(
                        source,
                        target,
                        tenants=tenants or None,
                        progress=bar,
                        batch_size=batch_size,
                        concurrency=concurrency,
                    )
                finally:
                    if bar is not None:
                        bar.close()
            finally:
                await target.close()
        finally:
            await source.close()

    report = run(go())
    if as_json:
        print_json(report.to_dict())
    else:
        rows = [
            (t.tenant_id, kind, c.source, c.destination, c.copied, "ok" if c.ok else "MISMATCH")
            for t in report.tenants
            for kind, c in t.counts.items()
        ]
        print_table(rows, ["tenant", "kind", "source", "destination", "copied", "check"])
        messages = report.total("messages", "source")
        rate = messages / report.seconds if report.seconds else 0.0
        click.echo(
            f"{len(report.tenants)} tenant(s), {messages:,} messages in "
            f"{report.seconds:.2f}s ({rate:,.0f} msg/s): "
            + ("verified" if report.ok else "VERIFICATION FAILED")
        )
    if not report.ok:
        sys.exit(1)


def _path_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse a store URL or an empty name where a file path belongs."""
    if not value.strip():
        raise click.BadParameter("is empty: give a file path, or - for standard I/O", ctx, param)
    if "://" in value:
        raise click.BadParameter(
            f"{value!r} is a store URL, not a file: pass the store with --store URL and a "
            "file path (or -) here",
            ctx,
            param,
        )
    return value


def _temporary_next_to(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.partial")


@click.command(name="export")
@click.argument("output", default="-", callback=_path_argument)
@store_option
@click.option("--tenant", "tenant_id", help="Only this tenant (default: every tenant).")
@click.option("--user", "user_id", help="Only this user's sessions.")
@click.option("--session", "session_id", help="Only this session.")
@progress_option
def export_command(
    output: str,
    store: str | None,
    tenant_id: str | None,
    user_id: str | None,
    session_id: str | None,
    progress: bool | None,
) -> None:
    """Write the store to OUTPUT (default: stdout) as threadline JSON Lines.

    The format is described in docs/export-format.md. A summary goes to stderr. The
    store must exist. OUTPUT is written only when the export succeeds (a failed export
    leaves no file and an existing OUTPUT untouched).
    """
    from threadline.cli.app import run
    from threadline.store import connect
    from threadline.transfer import export_records

    if output != "-":
        if os.path.isdir(output):
            raise click.BadParameter(f"{output} is a directory", param_hint="OUTPUT")
        folder = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"the folder {folder} does not exist", param_hint="OUTPUT")

    async def go() -> dict[str, int]:
        db = await connect(store_url(store, create=False), create=False)
        try:
            bar = None
            if show_progress(progress):
                bar = Progress(0, label="exporting", verb="exported", unit="records")
            try:
                if output == "-":
                    with click.open_file("-", "w", encoding="utf-8") as stdout:
                        return await _export(db, stdout, bar)
                partial = _temporary_next_to(output)
                try:
                    # Written synchronously, like stdout: the export is one stream.
                    with open(partial, "w", encoding="utf-8", newline="\n") as out:  # noqa: ASYNC230
                        counts = await _export(db, out, bar)
                    os.replace(partial, output)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(partial)
                return counts
            finally:
                if bar is not None:
                    bar.close()
        finally:
            await db.close()

    async def _export(db: Store, out: IO[str], bar: Progress | None) -> dict[str, int]:
        target: IO[str] = out if bar is None else CountingWriter(out, bar)  # type: ignore[assignment]
        return await export_records(
            db, target, tenant_id=tenant_id, user_id=user_id, session_id=session_id
        )

    counts = run(go())
    click.echo(
        "exported " + ", ".join(f"{n:,} {kind}" for kind, n in counts.items()),
        err=True,
    )


@click.command(name="import")
@click.argument("input_path", metavar="INPUT", callback=_path_argument)
@store_option
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Messages per write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@progress_option
def import_command(
    input_path: str, store: str | None, batch_size: int, as_json: bool, progress: bool | None
) -> None:
    """Import a threadline export from INPUT (a file, or - for stdin) into the store.

    Idempotent: importing the same file twice stores nothing twice, and the report
    counts what was new. The store is created if needed, once the file's first line
    shows a threadline export. A file without its footer (cut short) is imported up to
    its last whole record and exits with 1.
    """
    from threadline.cli.app import CommandError, run
    from threadline.errors import ThreadlineError
    from threadline.store import connect
    from threadline.transfer import import_records

    if input_path != "-":
        if os.path.isdir(input_path):
            raise click.BadParameter(f"{input_path} is a directory", param_hint="INPUT")
        if not os.path.exists(input_path):
            raise click.BadParameter(f"{input_path} does not exist", param_hint="INPUT")
    bar = None
    if show_progress(progress):
        bar = Progress(0, label="reading", verb="read", unit="records")
    with click.open_file(input_path, "r", encoding="utf-8") as lines:
        source: Iterable[str] = lines if bar is None else counted(lines, bar)
        # Read up to the header before opening the store: a file that is not an export
        # (or not text) is refused before anything is created.
        try:
            head, rest = _header_first(source)
        except ThreadlineError as exc:
            raise CommandError(exc) from exc

        async def go() -> ImportReport:
            db = await connect(store_url(store, create=True), create=True)
            try:
                return await import_records(db, itertools.chain(head, rest), batch_size=batch_size)
            finally:
                await db.close()

        try:
            report = run(go())
        finally:
            if bar is not None:
                bar.close()
    if as_json:
        print_json(report.to_dict())
    else:
        read = sum(report.counts.values())
        click.echo(
            "imported "
            + ", ".join(f"{n:,} {kind}" for kind, n in report.new.items())
            + f" new ({read:,} records read; the rest were already stored)"
        )
    if not report.complete:
        click.echo(f"error: incomplete import: {report.problem}", err=True)
        sys.exit(1)


def _header_first(lines: Iterable[str]) -> tuple[list[str], Iterator[str]]:
    """The lines up to the first non-blank one (checked to be an export header), and the rest.

    :raises ExportFormatError: the input is not UTF-8 text or does not start with a header.
    """
    from threadline.transfer import utf8_lines
    from threadline.transfer.format import ExportFormatError, Header, parse_line

    rest = utf8_lines(lines)
    head: list[str] = []
    for text in rest:
        head.append(text)
        if text.strip():
            try:
                line = parse_line(text, len(head))
            except ExportFormatError as exc:
                raise ExportFormatError(f"not a threadline export: {exc}") from None
            if not isinstance(line, Header):
                raise ExportFormatError(
                    f"line {len(head)}: not a threadline export (the first line must be its header)"
                )
            break
    else:
        raise ExportFormatError("empty input: not a threadline export (no header line)")
    return head, rest
