"""Sampling and evaluation jobs: a process per cell against a process per model.

The workflow samples and evaluates one model's cells in one job (``biaslab.jobs.cells``,
``workflow/rules/sample.smk``). This benchmark measures that design beside the other one the
DAG could have, a job per cell that samples and evaluates it, on the models of a finished run
(say ``runs/default-run``, from ``tools/publish_run.py config.yaml``): for each model, its
unintervened cells run (a) one fresh interpreter per cell, (b) one fresh interpreter for all of
them, each timed whole (imports, model load, sampling, evaluation, writes). Both write into a
scratch folder, and every file is compared with the run's own: the designs must give the same
bytes (arrays and tables equal).

    python benchmarks/bench_cell_jobs.py runs/default-run --config config.yaml [--models 2]

Before this design the workflow ran two jobs per cell (``sample``, then ``evaluate``): the
docs/notes/performance.md gives their job-seconds from the default run's log beside these numbers.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from snakemake.utils import Paramspace

from biaslab.base.columns import KNOB_COLUMNS, intervened, knob_path_values
from biaslab.plan.checks import with_defaults
from biaslab.plan.families import plan

RUN = """
import json, sys
from biaslab.jobs.cells import Cell, ModelFiles, run_cells
from biaslab.evaluation.cell import MetricsConfig
job = json.loads(sys.argv[1])
run_cells(ModelFiles(**job["files"]), [Cell(**c) for c in job["cells"]],
          MetricsConfig.from_dict(job["metrics"]), threads=1, log=open("/dev/null", "w"))
"""


def model_jobs(run: Path, config: dict) -> list[dict]:
    """Each model's files and unintervened cells, as the workflow lays them out."""
    cfg = with_defaults(config)
    jobs = []
    for name, fam in plan(cfg).items():
        rows = [knob_path_values(r) for r in fam.knob_rows]
        space = Paramspace(pd.DataFrame(rows, columns=list(KNOB_COLUMNS)), "*", param_sep="~")
        cells = [
            (knobs, pattern)
            for row, knobs, pattern in zip(
                fam.knob_rows, rows, list(space.instance_patterns), strict=True
            )
            if not intervened(row)
        ]
        scope = "train_features" if fam.features_scope == "train" else "base_features"
        for fraction in fam.fractions:
            feats = f"minority~{fraction}/train_features" if scope == "train_features" else scope
            for depth in fam.depths:
                for seed in fam.seeds:
                    model = f"{name}/minority~{fraction}/depth~{depth}/seed~{seed}"
                    files = {
                        "model": str(run / f"results/models/{model}/model"),
                        "train": str(run / f"results/data/{name}/minority~{fraction}/train.npz"),
                        "base": str(run / f"results/data/{name}/base.npz"),
                        "train_features": str(run / f"results/features/{name}/{feats}.npz"),
                        "classifier": str(run / f"results/classifier/{name}/class_classifier.pt"),
                        "attribute_classifier": None,
                    }
                    for target in fam.attribute_targets:
                        files["attribute_classifier"] = str(
                            run / f"results/classifier/{name}/{target}_classifier.pt"
                        )
                    per_model = [
                        {
                            "sampling": {
                                **fam.sampling_params(knobs),
                                "batch_size": int(cfg["sampling"]["batch_size"]),
                            },
                            "grid": fam.cell_columns(fraction, depth, seed, knobs),
                            "cell": f"{model}/{pattern}",
                        }
                        for knobs, pattern in cells
                    ]
                    jobs.append({"files": files, "cells": per_model, "metrics": cfg["metrics"]})
    return jobs


def _run(job: dict, cells: list[dict], out: Path) -> float:
    import json

    spec = {
        "files": job["files"],
        "metrics": job["metrics"],
        "cells": [
            {
                "sampling": c["sampling"],
                "grid": c["grid"],
                "samples": str(out / c["cell"] / "samples.npz"),
                "predictions": str(out / c["cell"] / "predictions.parquet"),
                "metrics": str(out / c["cell"] / "metrics.parquet"),
            }
            for c in cells
        ],
    }
    for c in spec["cells"]:
        Path(c["samples"]).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"cells of {job['files']['model']} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def same_files(run: Path, out: Path, cell: str) -> bool:
    a = np.load(run / "results/samples" / cell / "samples.npz")
    b = np.load(out / cell / "samples.npz")
    if a.files != b.files or any(not np.array_equal(a[k], b[k]) for k in a.files):
        return False
    for table in ("predictions", "metrics"):
        x = pd.read_parquet(run / "results/eval" / cell / f"{table}.parquet")
        y = pd.read_parquet(out / cell / f"{table}.parquet")
        if not x.equals(y):
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished run's working directory")
    ap.add_argument("--config", type=Path, default=Path("config.yaml"))
    ap.add_argument("--models", type=int, default=None, help="the first N models only")
    args = ap.parse_args(argv)
    jobs = model_jobs(args.run.resolve(), yaml.safe_load(args.config.read_text()))
    jobs = jobs[: args.models] if args.models else jobs
    scratch = Path(tempfile.mkdtemp(prefix="bench_cell_jobs_"))
    rows = []
    try:
        for job in jobs:
            model = job["cells"][0]["cell"].rsplit("/", 1)[0]
            per_cell = sum(_run(job, [c], scratch / "cell") for c in job["cells"])
            per_model = _run(job, job["cells"], scratch / "model")
            same = all(
                same_files(args.run, scratch / d, c["cell"])
                for d in ("cell", "model")
                for c in job["cells"]
            )
            rows.append((model, len(job["cells"]), per_cell, per_model, same))
            print(
                f"{model}: {len(job['cells'])} cells, a process per cell {per_cell:.1f} s, "
                f"per model {per_model:.1f} s, files identical: {same}",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    n = sum(r[1] for r in rows)
    cell_s, model_s = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"\n{len(rows)} models, {n} cells (job-seconds, 1 thread, whole processes):")
    print(f"  a process per cell : {cell_s:7.1f} s = {cell_s / n:5.2f} s per cell")
    print(
        f"  a process per model: {model_s:7.1f} s = {model_s / n:5.2f} s per cell "
        f"({cell_s / model_s:.2f}x less)"
    )
    print(f"  files identical to the run's: {all(r[4] for r in rows)}")


if __name__ == "__main__":
    main()
