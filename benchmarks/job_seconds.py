"""Job-seconds per rule of a finished Snakemake run, from its log.

Each job's wall time is the span between the timestamp of its "rule <name>:" block (with
"jobid: N") and that of "Finished jobid: N"; Snakemake stamps both to the second, so a job's
time is good to about a second and the sums to a few seconds. Jobs that ran side by side are
each counted whole (job-seconds, not wall time).

    python benchmarks/job_seconds.py runs/default-run/.snakemake/log/<date>.snakemake.log
    python benchmarks/job_seconds.py LOG --per-cell sample_evaluate_ intervene_ --cells 28
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\s*\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^\s*Finished jobid: (\d+) \(Rule: (\w+)\)")


def job_seconds(text: str) -> dict[str, list[float]]:
    """Rule -> the wall seconds of each of its finished jobs."""
    stamp = None
    pending = None
    started: dict[str, tuple[str, datetime]] = {}
    out: dict[str, list[float]] = defaultdict(list)
    for line in text.splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := RULE.match(line):
            pending = (m.group(1), stamp)
        elif (m := JOBID.match(line)) and pending is not None:
            started[m.group(1)] = pending
            pending = None
        elif (m := FINISHED.match(line)) and m.group(1) in started:
            rule, t0 = started.pop(m.group(1))
            out[rule].append((stamp - t0).total_seconds())
    return dict(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument(
        "--per-cell",
        nargs="*",
        default=[],
        metavar="PREFIX",
        help="rules (name prefixes) whose job-seconds are divided by --cells",
    )
    ap.add_argument("--cells", type=int, help="the run's sampler cells")
    args = ap.parse_args(argv)
    per_rule = job_seconds(args.log.read_text())
    total = sum(sum(v) for v in per_rule.values())
    for rule, times in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        mean = sum(times) / len(times)
        print(f"{rule:34s} {len(times):5d} jobs {sum(times):8.0f} s  mean {mean:6.1f} s")
    print(f"{'all':34s} {sum(map(len, per_rule.values())):5d} jobs {total:8.0f} s")
    if args.per_cell and args.cells:
        cell = sum(sum(v) for r, v in per_rule.items() if r.startswith(tuple(args.per_cell)))
        print(
            f"rules {' '.join(args.per_cell)}: {cell:.0f} job-seconds for {args.cells} cells = "
            f"{cell / args.cells:.2f} s per cell"
        )


if __name__ == "__main__":
    main()
