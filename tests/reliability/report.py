"""Run the reliability suite and render docs/reliability.md from what it recorded.

Run from the repository root, in an environment with every plugin installed (the
``reliability`` tox env, or the dev venv)::

    python tests/reliability/report.py                 # a fresh random seed
    python tests/reliability/report.py --seed 1234     # replay a run
    python tests/reliability/report.py -- -k crash     # extra arguments go to pytest
    python tests/reliability/report.py --records r.jsonl --no-run   # render only

It runs ``pytest tests/reliability`` with ``THREADLINE_RELIABILITY_REPORT`` naming a
temporary file (every test appends its figures there through ``_record.record``) and
``THREADLINE_RELIABILITY_SEED`` set, so the whole run replays from one number; a JUnit
XML file gives each test's outcome and time. The page lists every record, whichever
test wrote it, then the known bugs (tests marked ``xfail``), skips and failures. The exit
status is pytest's.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[2]
REPORT_ENV = "THREADLINE_RELIABILITY_REPORT"  # as in _record.py
SEED_ENV = "THREADLINE_RELIABILITY_SEED"
DEFAULT_OUTPUT = ROOT / "docs" / "reliability.md"
SUITE = "tests/reliability"


@attrs.frozen
class Outcome:
    """One test as JUnit XML reports it."""

    nodeid: str
    outcome: str  # passed, failed, error, skipped, xfailed, xpassed
    seconds: float
    message: str = ""


@attrs.frozen
class Run:
    """What a run of the suite left: records, outcomes, and how it was made."""

    records: list[dict[str, Any]]
    outcomes: list[Outcome]
    seed: int | None
    seconds: float
    exit_code: int
    pytest_args: list[str]
    finished: dt.datetime


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a records file (lines that do not parse are skipped)."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def _nodeid(classname: str, name: str) -> str:
    """pytest's node id back from JUnit's ``classname`` (``tests.x.test_y.TestZ``) and name."""
    parts = classname.split(".") if classname else []
    for cut in range(len(parts), 0, -1):
        module = "/".join(parts[:cut]) + ".py"
        if (ROOT / module).is_file():
            return "::".join([module, *parts[cut:], name])
    return "::".join([*parts, name])


def read_junit(path: Path) -> list[Outcome]:
    """Each test case of a pytest JUnit XML file, with its outcome."""
    if not path.exists():
        return []
    outcomes: list[Outcome] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        nodeid = _nodeid(case.get("classname", ""), case.get("name", ""))
        seconds = float(case.get("time", "0") or 0)
        outcome, message = "passed", ""
        for child in case:
            tag = child.tag
            text = child.get("message", "") or (child.text or "").strip()
            if tag == "skipped":
                kind = child.get("type", "")
                outcome = "xfailed" if kind == "pytest.xfail" else "skipped"
                message = text
            elif tag in ("failure", "error"):
                outcome = "failed" if tag == "failure" else "error"
                message = text
                if "[XPASS(strict)]" in text:
                    outcome = "xpassed"
        outcomes.append(Outcome(nodeid, outcome, seconds, message))
    return outcomes


def run_suite(seed: int, extra: Sequence[str], records: Path, junit: Path) -> tuple[int, float]:
    """Run pytest on the suite; return (exit code, seconds)."""
    env = {**os.environ, REPORT_ENV: str(records), SEED_ENV: str(seed)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        SUITE,
        "-q",
        "-rfEsxX",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *extra,
    ]
    print("$", shlex.join(command), f"({SEED_ENV}={seed})", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)
    return done.returncode, time.monotonic() - started


# -- rendering --------------------------------------------------------------------------------


def cell(value: object) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else cell(value)


def _lost(value: object) -> str:
    if value == 0:
        return "0"
    return f"**{_count(value)}**"


def _environment() -> str:
    impl = platform.python_implementation()
    return (
        f"{impl} {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def _family(test: str) -> str:
    """A record's test name without its ``[case]`` part."""
    return test.split("[", 1)[0].strip() or test


def _int(value: object) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def summarise(records: Sequence[dict[str, Any]], notes_width: int = 240) -> list[list[str]]:
    """Table rows: records grouped by test family and store, figures summed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        key = (_family(str(r.get("test", "?"))), str(r.get("store", "")))
        groups.setdefault(key, []).append(r)
    rows = []
    for (family, store), members in sorted(groups.items()):
        whats = list(dict.fromkeys(str(m.get("what", "")) for m in members if m.get("what")))
        what = whats[0] if whats else ""
        if len(whats) > 1:
            what += f" (+{len(whats) - 1} variants)"
        seeds = sorted({str(m["seed"]) for m in members if m.get("seed") is not None})
        notes = list(dict.fromkeys(str(m.get("notes", "")) for m in members if m.get("notes")))
        shown = "; ".join(notes)
        if len(shown) > notes_width:
            shown = shown[: notes_width - 1].rstrip() + "…"
        rows.append(
            [
                cell(family),
                cell(store),
                cell(what),
                _count(len(members)),
                _count(sum(_int(m.get("faults")) for m in members)),
                _count(sum(_int(m.get("operations")) for m in members)),
                _lost(sum(_int(m.get("lost")) for m in members)),
                cell(", ".join(seeds)),
                cell(shown),
            ]
        )
    return rows


def describe_modules() -> list[tuple[str, str]]:
    """(path, first paragraph of its docstring) of every test module of the suite."""
    described = []
    for path in sorted((ROOT / SUITE).glob("test_*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except SyntaxError:
            doc = ""
        first = doc.split("\n\n", 1)[0]
        described.append((f"{SUITE}/{path.name}", first or "(no docstring)"))
    return described


def render(run: Run, reproduce: str) -> str:
    """The Markdown page."""
    lines: list[str] = []
    add = lines.append
    when = run.finished.strftime("%Y-%m-%d %H:%M UTC")
    counts: dict[str, int] = {}
    for outcome in run.outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    order = ("passed", "xfailed", "skipped", "failed", "error", "xpassed")
    summary = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k)) or "no tests ran"
    seeds = sorted({r["seed"] for r in run.records if r.get("seed") is not None})
    faults = sum(int(r.get("faults") or 0) for r in run.records)
    operations = sum(int(r.get("operations") or 0) for r in run.records)
    lost = sum(int(r.get("lost") or 0) for r in run.records)

    add("# Reliability report")
    add("")
    add("<!-- Generated by tests/reliability/report.py from a real run; do not edit by hand. -->")
    add("")
    add(
        "The reliability suite (`tests/reliability`) injects faults for real — processes "
        "killed with SIGKILL, servers that go away, concurrent writers, hostile input — and "
        "counts what was acknowledged and then lost. The goal for *lost* is zero everywhere."
    )
    add("")
    add(f"- **Date:** {when}")
    add(f"- **Python:** {_environment()}")
    add(f"- **Seed:** {run.seed if run.seed is not None else 'not recorded'}")
    if seeds and seeds != [run.seed]:
        add(f"- **Seeds recorded by tests:** {', '.join(str(s) for s in seeds)}")
    add(f"- **Reproduce:** `{reproduce}`")
    add(f"- **Outcome:** {summary} in {run.seconds:.0f} s (pytest exit status {run.exit_code})")
    add(f"- **Totals:** {faults:,} faults injected, {operations:,} operations, {lost:,} lost")
    add("")
    add("## Faults and losses")
    add("")
    if run.records:
        add(
            "One row per test and store; a test run once per input or operation (its "
            "name's `[...]` part) is summed over them (*Cases*). Every record is listed "
            "below the table."
        )
        add("")
        add("| Test | Store | What it does | Cases | Faults | Operations | Lost | Seed | Notes |")
        add("|---|---|---|---:|---:|---:|---:|---:|---|")
        for group in summarise(run.records):
            add("| " + " | ".join(group) + " |")
        add("")
        add(
            "*Faults*: faults injected (kills, outages, hostile inputs). *Operations*: what "
            "the tests did under them (turns, checkpoints, writes, calls). *Lost*: data that "
            "was acknowledged (or that the design promises) and is missing afterwards."
        )
        add("")
        add(f"<details><summary>Every record ({len(run.records)})</summary>")
        add("")
        add("| Test | Store | What it does | Faults | Operations | Lost | Seed | Notes |")
        add("|---|---|---|---:|---:|---:|---:|---|")
        for r in sorted(run.records, key=lambda r: (str(r.get("test")), str(r.get("store")))):
            seed = r.get("seed")
            row = [
                cell(r.get("test", "?")),
                cell(r.get("store", "")),
                cell(r.get("what", "")),
                _count(r.get("faults", "")),
                _count(r.get("operations", "")),
                _lost(r.get("lost", "")),
                cell("" if seed is None else seed),
                cell(r.get("notes", "")),
            ]
            add("| " + " | ".join(row) + " |")
        add("")
        add("</details>")
    else:
        add("No test recorded figures in this run.")
    add("")

    def section(title: str, wanted: tuple[str, ...], intro: str) -> None:
        chosen = [o for o in run.outcomes if o.outcome in wanted]
        if not chosen:
            return
        add(f"## {title}")
        add("")
        add(intro)
        add("")
        for o in chosen:
            message = cell(o.message.splitlines()[0] if o.message else "")
            add(f"- `{o.nodeid}` — {message}")
        add("")

    modules = describe_modules()
    if modules:
        add("## The tests")
        add("")
        for name, summary in modules:
            add(f"- `{name}` — {cell(summary)}")
        add("")
    section(
        "Known bugs",
        ("xfailed",),
        "Tests that found a bug; they are marked `xfail(strict=True)` until it is fixed "
        "(then they pass, and strictness makes the suite fail until the mark is removed).",
    )
    section("Failures", ("failed", "error", "xpassed"), "Tests that did not pass in this run.")
    section("Skipped", ("skipped",), "Tests that could not run here, and why.")
    add("## Running it")
    add("")
    add("- `python tests/reliability/report.py` runs the suite and rewrites this page;")
    add("  `tox -e reliability` or `pytest tests/reliability` run it without the page.")
    add(f"- `{SEED_ENV}=<seed>` replays a run's random choices (kill times, inputs).")
    add("- `THREADLINE_CRASH_KILLS=<n>` sets the kills per store of the crash tests (30).")
    add(
        "- PostgreSQL tests use the server at `THREADLINE_TEST_POSTGRES` (default "
        "`postgresql://postgres@127.0.0.1:5432/test`), each module in a database of its "
        "own; without a server they skip, or fail when `CI` is set."
    )
    add("")
    if run.outcomes:
        add("## Tests and times")
        add("")
        add("| Test | Outcome | Seconds |")
        add("|---|---|---:|")
        for o in run.outcomes:
            add(f"| `{cell(o.nodeid)}` | {o.outcome} | {o.seconds:.1f} |")
        add("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, help=f"default: ${SEED_ENV}, else random")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the page to write")
    parser.add_argument("--records", type=Path, help="keep the records in this file")
    parser.add_argument("--no-run", action="store_true", help="render --records only")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)

    raw_seed = os.environ.get(SEED_ENV, "").strip()
    seed: int | None = args.seed
    if seed is None and args.no_run and args.records is not None:
        recorded = {str(r["seed"]) for r in read_records(args.records) if r.get("seed")}
        seed = int(recorded.pop()) if len(recorded) == 1 else None
    if seed is None:
        seed = int(raw_seed) if raw_seed else random.SystemRandom().randrange(2**32)
    reproduce = f"{SEED_ENV}={seed} python tests/reliability/report.py"
    if args.pytest_args:
        reproduce += " -- " + shlex.join(args.pytest_args)

    with tempfile.TemporaryDirectory(prefix="threadline-reliability-") as scratch:
        records = args.records or Path(scratch) / "records.jsonl"
        junit = Path(scratch) / "junit.xml"
        if args.no_run:
            if args.records is None:
                parser.error("--no-run needs --records")
            exit_code, seconds = 0, 0.0
        else:
            if records.exists():
                records.unlink()
            exit_code, seconds = run_suite(seed, args.pytest_args, records, junit)
        run = Run(
            records=read_records(records),
            outcomes=read_junit(junit),
            seed=seed,
            seconds=seconds,
            exit_code=exit_code,
            pytest_args=list(args.pytest_args),
            finished=dt.datetime.now(dt.timezone.utc),
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(run, reproduce) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({len(run.records)} records, {len(run.outcomes)} tests)")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
