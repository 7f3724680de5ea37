"""The progress display of ``copy``, ``export`` and ``import``: :func:`click.progressbar`.

On a terminal click redraws one line on stderr (a bar when the total is known, then the
count and the rate: ``copying  [#####-----]  12,000/100,000 messages (12%), 3,400
messages/s``). Elsewhere (``--progress`` into a log file) click prints the label once and
:meth:`Progress.close` adds one line with the final count and rate. click is already the
CLI's dependency, so no other library is needed for this.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TextIO

import click

__all__ = ["CountingWriter", "Progress", "counted", "progress_option", "show_progress"]

REDRAW_SECONDS = 0.2
"""The least time between two redraws (``import`` counts every line)."""


progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress line on stderr (default: when stderr is a terminal).",
)


def show_progress(flag: bool | None) -> bool:
    """``--progress`` / ``--no-progress`` as given, else whether stderr is a terminal."""
    return flag if flag is not None else _is_terminal(sys.stderr)


def _unsized() -> Iterator[int]:
    # click.progressbar needs an iterable or a length; one without a length hint gives
    # the bar of an unknown total (export and import do not count their records first).
    yield from ()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts ``unit`` done (call it with how many more) and shows them with their rate.

    ``label`` is shown while it runs (``copying``), ``verb`` in the final line (``copied``).
    """

    def __init__(
        self,
        total: int,
        *,
        label: str = "copying",
        verb: str = "copied",
        unit: str = "messages",
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.verb, self.unit = total, verb, unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._pending = 0
        self._started = self._shown = time.perf_counter()
        self.bar = click.progressbar(
            None if total else _unsized(),
            length=total or None,
            label=label,
            bar_template="%(label)s  [%(bar)s]  %(info)s" if total else "%(label)s  %(info)s",
            show_eta=False,
            show_percent=False,
            item_show_func=self._info,
            file=self.stream,
            width=30,
        )
        self._context = contextlib.ExitStack()
        self._context.enter_context(self.bar)

    def _rate(self) -> float:
        return self.done / max(time.perf_counter() - self._started, 1e-9)

    def _info(self, _item: int | None) -> str:
        done = f"{self.done:,}/{self.total:,}" if self.total else f"{self.done:,}"
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        return f"{done} {self.unit}{share}, {self._rate():,.0f} {self.unit}/s"

    def __call__(self, n: int) -> None:
        self.done += n
        self._pending += n
        now = time.perf_counter()
        if now - self._shown >= REDRAW_SECONDS:
            self._shown = now
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, 0
        self.bar.update(pending)

    def close(self) -> None:
        """Draw the final state and end the line (elsewhere than on a terminal: one line)."""
        self._flush()
        self.bar.render_progress()
        self._context.close()
        if not _is_terminal(self.stream):
            click.echo(f"{self.verb} {self._info(None)}", file=self.stream)


class CountingWriter:
    """Passes text through to ``out`` and counts the lines (records) written."""

    def __init__(self, out: IO[str], progress: Progress) -> None:
        self.out, self.progress = out, progress

    def write(self, text: str) -> int:
        """Write ``text`` and count its lines."""
        written = self.out.write(text)
        self.progress(text.count("\n"))
        return written


def counted(lines: Iterable[str], progress: Progress) -> Iterator[str]:
    """``lines`` unchanged, each one counted by ``progress``."""
    for line in lines:
        progress(1)
        yield line
