"""Run one config for real and publish its outputs under ``docs/results/<name>/``.

    python tools/publish_run.py config/cpu-himyb.yaml --name cpu-himyb --cores 2
    python tools/publish_run.py config/gpu-repro.yaml --name gpu-repro --cores 16 \\
        -- --resources gpu=4

The workflow runs in its own working directory (``runs/<name>/``, git-ignored, or
``runs/<workdir>/`` with ``--workdir``, shared with the run a config extends), so a published
run never mixes with ``results/`` of the default run; rerunning resumes it (Snakemake skips what
is complete, training resumes from checkpoints). When it has finished, the files a reader needs
are copied into ``docs/results/<name>/``:

* ``metrics.parquet`` and ``metrics.csv`` (the tidy metrics, every grid column), ``probe.parquet``,
  ``train_log.parquet``, and ``difflens/{probes,features,sae}.parquet`` when the run has them;
* ``tables/`` (``summary.md``, ``table3_knn.csv``) and ``figures/*.png``;
* ``report.html`` (``snakemake --report``) unless ``--no-report``;
* ``run.json`` and ``run.md``: per run (a rerun appends), the exact command, the commit (and
  whether the tree was dirty), the config file's content, the machine and the wall time.

The analysis (``README.md`` beside them) is written by a person from these files.
Arguments after ``--`` go to Snakemake unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("metrics.parquet", "probe.parquet", "train_log.parquet")
#: Copied when the run made them (DiffLens: ``difflens.datasets`` not empty).
OPTIONAL = ("difflens/probes.parquet", "difflens/features.parquet", "difflens/sae.parquet")


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def machine() -> dict:
    """CPU model, cores, memory and the CUDA device (if torch sees one)."""
    info = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def snakemake_command(config: Path, workdir: Path, cores: int, extra: list[str]) -> list[str]:
    return [
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        str(cores),
        *extra,
        "--configfile",
        str(config),
    ]


def publish(workdir: Path, dest: Path, *, report: bool, config: Path) -> list[str]:
    """Copy the run's outputs from ``workdir`` to ``dest``; the copied paths (relative)."""
    results = workdir / "results"
    missing = [f for f in COPIED if not (results / f).is_file()]
    if missing:
        raise SystemExit(f"publish: {missing} missing under {results}: the run did not finish")
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("figures", "tables"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    copied = []
    for name in (*COPIED, *(f for f in OPTIONAL if (results / f).is_file())):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(results / name, dest / name)
        copied.append(name)
    import pandas as pd

    pd.read_parquet(results / "metrics.parquet").to_csv(dest / "metrics.csv", index=False)
    copied.append("metrics.csv")
    for sub, pattern in (("tables", "*"), ("figures", "**/*.png")):
        for path in sorted((results / sub).glob(pattern)):
            if path.is_file():
                target = dest / sub / path.relative_to(results / sub)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied.append(str(target.relative_to(dest)))
    if report:
        cmd = snakemake_command(config, workdir, 1, ["--report", str(dest / "report.html")])
        subprocess.run(cmd, cwd=ROOT, check=True)
        copied.append("report.html")
    return copied


def record_run(dest: Path, run: dict) -> list[dict]:
    """Append ``run`` to ``dest/run.json`` (``{"runs": [...]}``: a rerun, say of the probes
    with ``-- --forcerun probe``, keeps the facts of the runs before it); all the runs."""
    path = dest / "run.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    runs.append(run)
    path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    return runs


def run_facts(runs: list[dict]) -> str:
    """``run.md``: one numbered entry per run (command, commit, start, wall time, machine)."""
    lines = [f"# Run facts: `{runs[-1]['config_file']}`", ""]
    for i, r in enumerate(runs, 1):
        m = r["machine"]
        hw = f"{m.get('cpu')}, {m.get('cpus')} cores, {m.get('memory_gib')} GiB"
        hw += f", GPU {m['gpu']}" if "gpu" in m else ", no GPU"
        dirty = " (with uncommitted changes)" if r["dirty"] else ""
        lines += [
            f"{i}. `{r['command']}` (Snakemake: `{r['snakemake']}`)",
            f"   - **Commit:** `{r['commit']}`{dirty}; **started** {r['started_utc']}, "
            f"**wall time** {r['wall_s'] / 60:.1f} min",
            f"   - **Machine:** {hw}",
        ]
    lines += ["", f"**Files:** {', '.join(f'`{f}`' for f in runs[-1]['files'])}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("--name", required=True, help="docs/results/<name>/ and runs/<name>/")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument(
        "--workdir",
        help="run in runs/<WORKDIR>/ instead of runs/<name>/: a config that extends a published "
        "one reuses its trained models (Snakemake reruns only what the extension adds)",
    )
    args = ap.parse_args(own)
    config = args.config.resolve()
    if not config.is_file():
        raise SystemExit(f"publish: config {args.config} is not a file")
    workdir = ROOT / "runs" / (args.workdir or args.name)
    dest = ROOT / "docs" / "results" / args.name
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = snakemake_command(config, workdir, args.cores, extra)
    commit = _git("rev-parse", "HEAD")  # the code the run starts with
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    wall = time.perf_counter() - t0
    copied = publish(workdir, dest, report=not args.no_report, config=config)
    rel = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    user_cmd = f"python tools/publish_run.py {shlex.join([str(rel), *own[1:]])}"
    if extra:
        user_cmd += " -- " + shlex.join(extra)
    run = {
        "command": user_cmd,
        "snakemake": shlex.join(cmd),
        "commit": commit,
        "dirty": dirty,
        "config_file": str(rel),
        "config": config.read_text(),
        "machine": machine(),
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_s": round(wall, 1),
        "files": copied,
    }
    runs = record_run(dest, run)
    (dest / "run.md").write_text(run_facts(runs))
    print(f"published {len(copied)} files to {dest} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
