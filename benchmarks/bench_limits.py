"""Issue #13's table in one command: threadline against the database's own limit.

Runs ``bench_sqlite.py`` and ``bench_postgres.py`` ``--runs`` times each (fresh processes,
SQLite and PostgreSQL alternating so a drifting machine load hits both alike), then
prints every goal's limit, threadline's figure, the ratio of each run and their median.

    python benchmarks/bench_limits.py                # 3 runs of each; about 20 minutes
    python benchmarks/bench_limits.py --quick --runs 1
    python benchmarks/bench_limits.py --no-postgres  # SQLite only

Each script's own output (its full tables: raw with the store's SQL, the memory store,
other libraries, loop lag) goes to ``--log`` (default: a temporary folder, printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_table

HERE = Path(__file__).resolve().parent

# (script, key in its --json rows, the label, unit, factor to the unit, format)
ROWS = [
    ("sqlite", "W1 full", "SQLite W1 single appends, synchronous=full", "msg/s", 1, "{:,.0f}"),
    ("sqlite", "W1 normal", "SQLite W1, synchronous=normal (default)", "msg/s", 1, "{:,.0f}"),
    ("sqlite", "W2 full", "SQLite W2 batches of 100, full", "msg/s", 1, "{:,.0f}"),
    ("sqlite", "W2 normal", "SQLite W2 batches of 100, normal", "msg/s", 1, "{:,.0f}"),
    ("sqlite", "W3 10000", "SQLite W3 last 20 of 10,000, p50", "µs", 1e6, "{:,.1f}"),
    ("sqlite", "W3 1000000", "SQLite W3 last 20 of 1,000,000, p50", "µs", 1e6, "{:,.1f}"),
    ("sqlite", "bytes", "SQLite bytes per stored message", "B", 1, "{:,.0f}"),
    ("postgres", "W1", "PostgreSQL W1", "msg/s", 1, "{:,.0f}"),
    ("postgres", "W2", "PostgreSQL W2", "msg/s", 1, "{:,.0f}"),
    ("postgres", "W3 p50", "PostgreSQL W3 p50", "µs", 1e3, "{:,.1f}"),
    ("postgres", "W4", "PostgreSQL W4 (200 sessions x 20, 16 tasks)", "msg/s", 1, "{:,.0f}"),
    ("postgres", "bytes/msg", "PostgreSQL bytes per stored message", "B", 1, "{:,.0f}"),
]


def run_script(kind: str, args: argparse.Namespace, out: Path, n: int) -> dict[str, dict]:
    """Run one benchmark script once; its goal rows (``{}`` when it failed, said on stderr)."""
    figures = out / f"{kind}-{n}.json"
    command = [sys.executable, str(HERE / f"bench_{kind}.py"), "--json", str(figures)]
    if kind == "sqlite":
        command += ["--no-import"] + (["--quick"] if args.quick else [])
    else:
        command += ["--repeat", "1", "--url", args.postgres] + (["--quick"] if args.quick else [])
    log = out / f"{kind}-{n}.log"
    print(f"run {n + 1}/{args.runs}: {' '.join(command[1:2])} ... ", end="", flush=True)
    with log.open("w") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not figures.exists():
        print(f"failed (exit {done.returncode}), see {log}")
        return {}
    print("done")
    rows: dict[str, dict] = json.loads(figures.read_text())
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each script (median)")
    parser.add_argument("--quick", action="store_true", help="the scripts' --quick sizes")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="admin URL"
    )
    parser.add_argument("--log", help="folder for each run's output (default: a temp folder)")
    args = parser.parse_args()
    out = Path(args.log or tempfile.mkdtemp(prefix="threadline-limits-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"each run's full output: {out}")
    kinds = [k for k in ("sqlite", "postgres") if not getattr(args, f"no_{k}")]
    results: dict[str, list[dict[str, dict]]] = {kind: [] for kind in kinds}
    for n in range(max(1, args.runs)):
        for kind in kinds:
            results[kind].append(run_script(kind, args, out, n))

    table = []
    for kind, key, label, unit, scale, shown in ROWS:
        runs = [r[key] for r in results.get(kind, []) if key in r]
        if not runs:
            continue
        limit = statistics.median(r["limit"] for r in runs) * scale
        store = statistics.median(r["store"] for r in runs) * scale
        ratios = [r["ratio"] for r in runs]
        median = statistics.median(ratios)
        goal = str(runs[0]["goal"])
        bound = float(goal.split()[1])
        met = median >= bound if goal.startswith(">=") else median <= bound
        table.append([
            label, f"{shown.format(limit)} {unit}", f"{shown.format(store)} {unit}",
            f"{median:.2f}x", ", ".join(f"{r:.2f}" for r in ratios), f"{goal}x",
            "met" if met else "NOT MET",
        ])  # fmt: skip
    print_table(
        f"Issue #13: threadline vs the limit (the database alone on a minimal schema), "
        f"median of {max(1, args.runs)} runs",
        ["workload", "limit", "threadline", "ratio (median)", "runs", "goal", ""],
        table,
    )
    return 0 if table else 1


if __name__ == "__main__":
    raise SystemExit(main())
