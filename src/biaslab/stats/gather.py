"""Gathering the per-cell tidy tables: concatenation with a duplicate-key check, the probe's
verdict attached to every row, and the per-cell summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from biaslab.base.columns import (
    DATA_COLUMNS,
    GRID_COLUMNS,
    KNOB_COLUMNS,
    MODEL_COLUMNS,
    depth_sort_key,
)
from biaslab.stats.contrasts import cell_columns

#: What identifies a row of each gathered table, beside the grid columns.
ROW_KEYS = {
    "metrics": ("metric", "k", "group", "backbone"),
    "predictions": ("sample_index",),
    "train_log": ("step",),
    "probe": ("metric", "t"),
    "difflens_probes": ("call",),
    "difflens_features": ("class_index", "rank"),
    "difflens_sae": ("step",),
    "pretrained_metrics": ("labeller", "attribute", "metric", "prompt_class", "attribute_value"),
    "pretrained_predictions": ("sample_index", "labeller", "attribute"),
}


def attach_probe(table: pd.DataFrame, probe: pd.DataFrame) -> pd.DataFrame:
    """``table`` (metrics or predictions) with the probe's verdict on its model as
    ``probe_learned`` (``biaslab.evaluation.probe``: False = the model did not learn what its bias
    readout needs; figures draw such cells hollow)."""
    keys = [c for c in (*DATA_COLUMNS, *MODEL_COLUMNS) if c in table and c in probe]
    verdicts = probe.groupby(keys, dropna=False, sort=False)["learned"].first().reset_index()
    out = table.merge(verdicts.rename(columns={"learned": "probe_learned"}), on=keys, how="left")
    if out["probe_learned"].isna().any():
        raise ValueError("attach_probe: a model of the table has no probe")
    return out.astype({"probe_learned": bool})


def gather(tables: list[pd.DataFrame], kind: str, sources: list[str] | None = None) -> pd.DataFrame:
    """Concatenate per-cell (or per-model) tidy tables of one ``kind`` (a ``ROW_KEYS`` key).
    Refuses two rows with the same grid columns and row key: the same cell gathered twice
    (two config values sharing one path) would otherwise double every row silently."""
    table = pd.concat(tables, ignore_index=True)
    keys = [c for c in (*GRID_COLUMNS, *ROW_KEYS[kind]) if c in table.columns]
    dup = table.duplicated(keys, keep=False)
    if dup.any():
        first = table.loc[dup, keys].iloc[0].to_dict()
        where = ""
        if sources is not None:
            sizes = [len(t) for t in tables]
            owner = np.repeat(np.arange(len(tables)), sizes)[dup.to_numpy()]
            where = f" (from {sorted({sources[i] for i in owner})[:4]})"
        raise ValueError(
            f"gather {kind}: {int(dup.sum())} rows share their grid key{where}, e.g. {first}"
        )
    return table


#: The summary's row order: skew, seed, then every sampler knob (``base.columns.KNOB_COLUMNS``).
_SORT_COLUMNS = ("minority_fraction", "train_seed", *KNOB_COLUMNS)


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, sampler setting): the robust readout (% minority among the samples
    the classifier recognises, exact 95% CI of that one model: a sampling interval), % minority
    of all samples, the unrecognised share, training %, amplification (percentage points, all
    samples), diversity; for coloured-MNIST cells also rho_model (recognised [95% CI], all),
    the measured training rho and label adherence. Across training seeds:
    ``results/aggregate.parquet``."""
    keys = [c for c in GRID_COLUMNS if c in metrics.columns]
    out = []
    for key, g in metrics.groupby(keys, sort=False, dropna=False):
        m = {r.metric: r for r in g[g["k"].isna()].itertuples()}
        row = dict(zip(keys, key, strict=True))
        ms = m["minority_share_confident"]
        row["% minority, recognised [95% CI]"] = (
            f"{100 * ms.value:.1f} [{100 * ms.ci_low:.1f}, {100 * ms.ci_high:.1f}]"
        )
        row["% minority, all"] = round(100 * m["minority_share"].value, 1)
        row["unrecognised %"] = round(100 * (1 - m["confident_share"].value), 1)
        row["training %"] = round(100 * m["training_minority_share"].value, 1)
        row["amplification (pp)"] = round(100 * m["amplification"].value, 1)
        row["diversity"] = round(m["diversity_lpips"].value, 4)
        if "rho_model" in m:  # class-conditional coloured-MNIST cells
            r = m.get("rho_model_confident", m["rho_model"])
            row["rho_model, recognised [95% CI]"] = (
                f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
            )
            row["rho_model, all"] = round(m["rho_model"].value, 3)
            row["training rho"] = round(m["training_rho"].value, 3)
            row["label adherence %"] = round(100 * m["label_adherence"].value, 1)
        out.append(row)
    table = pd.DataFrame(out)
    drop = [c for c in keys if table[c].nunique(dropna=False) <= 1 and c not in ("depth",)]
    table = table.drop(columns=drop)
    sort_cols = [c for c in table.columns if c in ("dataset", *_SORT_COLUMNS)]

    def sort_key(i: int) -> tuple:
        row = table.iloc[i]
        # (is-missing, value) pairs: NaN-free comparisons across dataset families
        vals = tuple((pd.isna(row[c]), "" if pd.isna(row[c]) else row[c]) for c in sort_cols)
        return vals, depth_sort_key(row["depth"])

    order = sorted(range(len(table)), key=sort_key)
    return table.iloc[order].reset_index(drop=True)


def interval_note(metrics: pd.DataFrame) -> str:
    """The sentence under a per-model table that says what its intervals are: each model's
    sampling interval, and how many training seeds the run has per cell."""
    seeds = metrics.groupby(cell_columns(metrics), dropna=False)["train_seed"].nunique()
    n = int(seeds.max()) if len(seeds) else 0
    counts = (
        "1 training seed: sampling interval only"
        if n <= 1
        else (
            f"up to {n} training seeds per cell: one row per trained model; the intervals across "
            "models are in results/aggregate.parquet"
        )
    )
    return (
        "Intervals: exact (Clopper-Pearson) 95% sampling intervals of each trained model's "
        f"samples ({counts}). Recognised: class confidence >= metrics.confidence_threshold."
    )


#: The columns of Snakemake's ``benchmark:`` files that the job table keeps.
BENCHMARK_COLUMNS = ["s", "max_rss", "cpu_time", "mean_load", "io_in", "io_out"]


def job_benchmarks(paths: list[str], jobs: list[dict]) -> pd.DataFrame:
    """One row per benchmarked job: ``jobs[i]`` (its rule and model: dataset, fraction, depth,
    seed) beside the wall seconds, peak memory (MB), CPU seconds, mean load and I/O (MB) that
    Snakemake's ``benchmark:`` directive wrote to ``paths[i]``."""
    if len(paths) != len(jobs):
        raise ValueError(f"{len(paths)} benchmark files for {len(jobs)} jobs")
    rows = []
    for path, job in zip(paths, jobs, strict=True):
        tsv = pd.read_csv(path, sep="\t")
        missing = [c for c in BENCHMARK_COLUMNS if c not in tsv.columns]
        if missing or len(tsv) == 0:
            raise ValueError(f"{path}: not a Snakemake benchmark file (missing {missing})")
        values = pd.to_numeric(tsv.iloc[-1][BENCHMARK_COLUMNS], errors="coerce")
        rows.append({**job, **values.to_dict()})
    return pd.DataFrame(rows, columns=[*(jobs[0] if jobs else {}), *BENCHMARK_COLUMNS])


def benchmark_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, job-minutes in all, median and longest job (s), peak memory (MB)."""
    if table.empty:
        columns = ["rule", "jobs", "job_minutes", "median_s", "max_s", "max_rss_mb"]
        return pd.DataFrame(columns=columns)
    g = table.groupby("rule", sort=True)
    return pd.DataFrame(
        {
            "jobs": g.size(),
            "job_minutes": g["s"].sum() / 60,
            "median_s": g["s"].median(),
            "max_s": g["s"].max(),
            "max_rss_mb": g["max_rss"].max(),
        }
    ).reset_index()
