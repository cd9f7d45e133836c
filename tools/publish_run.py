"""Run one config for real and publish its outputs under ``docs/results/<name>/``.

    python tools/publish_run.py config/cpu-himyb.yaml --name cpu-himyb --cores 2
    python tools/publish_run.py config/gpu-repro.yaml --name gpu-repro --cores 16 \\
        -- --resources gpu=4

The workflow runs in its own working directory (``runs/<name>/``, git-ignored, or
``runs/<workdir>/`` with ``--workdir``, shared with the run a config extends), so a published
run never mixes with ``results/`` of the default run; rerunning resumes it (Snakemake skips what
is complete, training resumes from checkpoints). When it has finished, the files a reader needs
are copied into ``docs/results/<name>/``:

* ``metrics.parquet`` and ``metrics.csv`` (the tidy metrics, every grid column),
  ``predictions.parquet`` (per sample: anyone can rerun the paired tests), ``probe.parquet``,
  ``train_log.parquet``, ``aggregate.parquet`` (per cell across training seeds),
  ``contrasts.parquet`` and ``claims.parquet`` (``biaslab.stats.contrasts``,
  ``biaslab.stats.claims``), and ``difflens/{probes,features,sae}.parquet`` when the run has them;
* ``tables/`` (``summary.md``, ``table3_knn.csv``, ``claims.md``) and ``figures/*.png``;
* ``report.html`` (``snakemake --report``) unless ``--no-report``;
* ``run.json`` and ``run.md``: per run (a rerun appends), the exact command, the commit (and
  whether the tree was dirty), the config file's content, the machine and the wall time.

``run.md`` embeds the claims table. The analysis (``README.md`` beside them) is written by a
person from these files. Arguments after ``--`` go to Snakemake unchanged.

Verdicts, not bits, are what must travel across machines:

    python tools/publish_run.py --verify default-run --cores 2

reruns the config a published folder was made with (its ``run.json``) in a scratch directory
and prints, claim by claim, the published verdict beside the new one; exit status 1 when one
differs. Runs published before issue 26 name the classifier-feature FID / KID ``fid``,
``kid``, ``kid_std``: their config's claims and claims table are mapped to ``fid_classifier``,
``kid_classifier``, ``kid_classifier_std`` on read (``biaslab.base.metric_names``); the published
files are records and stay as they are.
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
COPIED = (
    "metrics.parquet",
    "predictions.parquet",
    "probe.parquet",
    "train_log.parquet",
    "aggregate.parquet",
    "contrasts.parquet",
    "claims.parquet",
)
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


def run_facts(runs: list[dict], claims_md: str | None = None) -> str:
    """``run.md``: one numbered entry per run (command, commit, start, wall time, machine),
    then the claims table (``claims_md``) when there is one."""
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
    if claims_md is not None:
        lines += ["## Claims (`tables/claims.md`)", "", claims_md.rstrip(), ""]
    return "\n".join(lines)


def compare_verdicts(published, rerun):
    """Published claims beside a rerun's, one row per claim and cell: both verdicts, both
    effects and ``same`` (the verdict travelled)."""
    import pandas as pd

    from biaslab.stats.claims import claim_key

    keys = [c for c in claim_key(published) if c in rerun.columns]
    cols = ["verdict", "effect", "ci_low", "ci_high", "n_models"]

    def side(t, suffix):
        t = t[keys + [c for c in cols if c in t.columns]].copy()
        for c in keys:
            t[c] = t[c].astype(object).where(t[c].notna(), "-").astype(str)
        return t.rename(columns={c: f"{c}_{suffix}" for c in cols})

    out = side(published, "published").merge(side(rerun, "rerun"), on=keys, how="outer")
    out["same"] = out["verdict_published"] == out["verdict_rerun"]
    return pd.DataFrame(out)


def legacy_config(text: str, name: str = "") -> str:
    """A published config's text for a rerun with this code: claims on the metrics renamed in
    issue 26 (``fid``, ``kid``, ``kid_std``: the classifier-feature FID / KID, now
    ``fid_classifier``, ...; ``biaslab.base.metric_names``) get the new names. The text itself
    when no claim changes; else the config dumped again (its comments dropped)."""
    import yaml

    from biaslab.base.metric_names import rename_legacy_claims

    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        return text
    new, changed = rename_legacy_claims(config)
    if not changed:
        return text
    print(
        f"verify {name}: claims {changed} renamed to the issue-26 metric names (fid -> "
        "fid_classifier, kid -> kid_classifier)",
        flush=True,
    )
    return yaml.safe_dump(new, sort_keys=False)


def verify(name: str, *, cores: int, extra: list[str], scratch: Path | None = None) -> int:
    """Rerun the config of ``docs/results/<name>/`` in ``scratch`` (a new temporary directory
    by default) up to its claims, and print each claim's published and new verdict; 0 when
    every verdict is the same, 1 otherwise."""
    import tempfile

    import pandas as pd

    from biaslab.base.metric_names import rename_legacy_metrics
    from biaslab.stats.claims import claim_key

    dest = ROOT / "docs" / "results" / name
    if not (dest / "run.json").is_file():
        raise SystemExit(f"verify: {dest}/run.json not found (not a published run)")
    if not (dest / "claims.parquet").is_file():
        raise SystemExit(f"verify: {dest} has no claims.parquet (published before claims)")
    run = json.loads((dest / "run.json").read_text())["runs"][-1]
    scratch = Path(scratch or tempfile.mkdtemp(prefix=f"verify-{name}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    config = scratch / "config.yaml"
    config.write_text(legacy_config(run["config"], name))
    cmd = snakemake_command(config, scratch, cores, [*extra, "results/claims.parquet"])
    print(f"verify {name}: {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    wall = time.perf_counter() - t0
    table = compare_verdicts(
        # published before issue 26: fid / kid / kid_std were the classifier-feature metrics
        rename_legacy_metrics(pd.read_parquet(dest / "claims.parquet")),
        pd.read_parquet(scratch / "results" / "claims.parquet"),
    )
    results = ["verdict_published", "effect_published", "verdict_rerun", "effect_rerun", "same"]
    cells = [c for c in claim_key(table) if c != "claim" and table[c].nunique() > 1]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table[["claim", *cells, *results]].to_string(index=False))
    same = int(table["same"].sum())
    print(
        f"verify {name}: {same} of {len(table)} verdicts the same "
        f"(rerun in {scratch}, {wall / 60:.1f} min on {machine().get('cpu')})"
    )
    return 0 if same == len(table) else 1


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
    if own and own[0] == "--verify":
        vp = argparse.ArgumentParser(description="rerun a published config, compare verdicts")
        vp.add_argument("--verify", required=True, metavar="NAME")
        vp.add_argument("--cores", type=int, default=2)
        vp.add_argument("--scratch", type=Path, help="rerun here (default: a new temp dir)")
        vargs = vp.parse_args(own)
        raise SystemExit(
            verify(vargs.verify, cores=vargs.cores, extra=extra, scratch=vargs.scratch)
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
    claims = dest / "tables" / "claims.md"
    (dest / "run.md").write_text(run_facts(runs, claims.read_text() if claims.is_file() else None))
    print(f"published {len(copied)} files to {dest} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
