"""Tables from the tidy ``metrics.parquet``: the depth family of the paper's figures, the
Table 3 analogue (kNN similarity to the training set), the per-cell table of the sampler
study, and a Markdown renderer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from biaslab.base.columns import GRID_COLUMNS, KNOB_DEFAULTS, depth_sort_key, untreated_mask
from biaslab.figures.common import (
    MODEL_FACETS,
    SAMPLER_SETTING,
    metric_rows,
    pick_backbone,
    present,
    replicate_values,
    select,
    varying,
)
from biaslab.sampling.registry import is_stochastic

__all__ = [
    "CELL_METRICS",
    "cell_table",
    "depth_family",
    "knn_rows",
    "knn_table",
    "markdown_table",
    "sampler_settings",
]

#: Metrics gathered per cell by ``cell_table`` (value, ci_low, ci_high each).
CELL_METRICS = (
    "rho_model",
    "rho_model_confident",
    "label_adherence",
    "training_rho",
    "minority_share",
    "minority_share_confident",
    "training_minority_share",
    "amplification",
    "confident_share",
    "diversity_lpips",
    "fd",
    "fd_hard",
    "fd_training",
    "fid_classifier",
    "kid_classifier",
    "fid",
)


def depth_family(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's depth figures (Fig. 4, Table 3): unconditional models sampled
    without a mid-block bypass or an SAE intervention."""
    keep = np.ones(len(metrics), dtype=bool)
    if "num_classes" in metrics:
        keep &= metrics["num_classes"].isna().to_numpy() | (metrics["num_classes"] == 0).to_numpy()
    return metrics[keep & untreated_mask(metrics)]


# --------------------------------------------------------------------------------------------
# Table 3: memorization / kNN similarity to the training set
# --------------------------------------------------------------------------------------------
def sampler_settings(df: pd.DataFrame) -> list[tuple]:
    """The distinct sampler settings (values of the knob columns present), sorted."""
    cols = present(df, SAMPLER_SETTING)
    if not cols or df.empty:
        return []
    return [
        tuple(k)
        for k in df[cols].drop_duplicates().sort_values(cols).itertuples(index=False, name=None)
    ]


def knn_rows(
    metrics: pd.DataFrame, setting: tuple | None, backbone: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], str | None]:
    """``(knn_cosine rows, knn_l2 rows, setting key, backbone)`` of one sampler setting
    (``setting`` or the first in sorted order) and one feature backbone."""
    cos, backbone = pick_backbone(metric_rows(metrics, "knn_cosine"), backbone)
    l2 = metric_rows(metrics, "knn_l2")
    both = pd.concat([cos, l2], ignore_index=True)
    if both.empty:
        raise ValueError("no knn_cosine or knn_l2 rows in metrics")
    settings = sampler_settings(both)
    key: dict[str, Any] = {}
    if settings:
        chosen = tuple(setting) if setting is not None else settings[0]
        cols = present(both, SAMPLER_SETTING)
        if len(chosen) > len(cols):
            raise ValueError(f"setting {chosen}: more values than knob columns {cols}")
        # a setting may name the leading knobs only, e.g. (sampler, steps, eta)
        key = dict(zip(cols[: len(chosen)], chosen, strict=True))
        cos, l2 = select(cos, key), select(l2, key)
        if cos.empty and l2.empty:
            raise ValueError(f"no kNN rows for sampler setting {chosen}; have {settings}")
    for df in (cos, l2):
        df["k"] = df["k"].astype("Int64")
    return cos, l2, key, backbone


def knn_table(
    metrics: pd.DataFrame, *, setting: tuple | None = None, backbone: str | None = None
) -> pd.DataFrame:
    """Paper Table 3 analogue: kNN similarity of generated samples to the training set.

    Wide table, one row per (varying grid facets, ``minority_fraction``, ``depth``), ordered by
    depth; columns ``cos@k1 ... cos@k10`` (mean feature-space cosine similarity to the k nearest
    training images; backbone ``backbone`` or the first by name) and ``l2@k1 ... l2@k10`` (pixel
    Euclidean distance), each the mean over the trained models (``train_seed``), plus
    ``n_replicates`` (the number of models). Only the sampler ``setting`` is used: values of
    the leading knob columns (``sampler, steps, eta, s_churn, guidance, bypass,
    bypass_schedule``), e.g.
    ``("ddpm", 1000, 1.0)``; default the first in sorted order.
    """
    cos, l2, _, _ = knn_rows(metrics, setting, backbone)
    both = pd.concat([cos, l2], ignore_index=True)
    facets = varying(both, MODEL_FACETS)
    index = [*facets, "minority_fraction", "depth"]
    parts = []
    for prefix, df in (("cos", cos), ("l2", l2)):
        if df.empty:
            continue
        rep = replicate_values(df, [*index, "k"])
        mean = rep.groupby([*index, "k"], dropna=False)["value"].mean().reset_index()
        wide = mean.pivot_table(index=index, columns="k", values="value", dropna=False)
        wide.columns = [f"{prefix}@k{int(k)}" for k in wide.columns]
        parts.append(wide)
        n = rep.groupby(index, dropna=False).size().div(rep["k"].nunique()).rename(f"n_{prefix}")
        parts.append(n.to_frame())
    table = pd.concat(parts, axis=1).reset_index()
    n_cols = [c for c in table.columns if c in ("n_cos", "n_l2")]
    table["n_replicates"] = table[n_cols].max(axis=1).round().astype(int)
    table = table.drop(columns=n_cols)
    table["depth"] = table["depth"].astype(str)
    table = table.sort_values(
        [*facets, "minority_fraction", "depth"],
        key=lambda s: s.map(depth_sort_key) if s.name == "depth" else s,
        kind="stable",
    ).reset_index(drop=True)
    return table


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """Render a DataFrame as a GitHub Markdown table (floats to ``digits`` decimals)."""

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{float(v):.{digits}f}"
        return str(v)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    align = (
        "|"
        + "|".join(
            "---:" if pd.api.types.is_numeric_dtype(table[c]) else ":---" for c in table.columns
        )
        + "|"
    )
    body = [
        "| " + " | ".join(cell(v) for v in row) + " |"
        for row in table.itertuples(index=False, name=None)
    ]
    return "\n".join([header, align, *body]) + "\n"


# --------------------------------------------------------------------------------------------
# the sampler study: one row per cell
# --------------------------------------------------------------------------------------------
def cell_table(metrics: pd.DataFrame, *, lpips_backbone: str | None = None) -> pd.DataFrame:
    """One row per cell (every grid column present) with ``<metric>``, ``<metric>_lo`` and
    ``<metric>_hi`` for each of ``CELL_METRICS`` found; diversity from ``lpips_backbone``
    (default: the first by name)."""
    m = metrics[metrics["k"].isna()] if "k" in metrics else metrics
    m = m[m["metric"].isin(CELL_METRICS)].copy()
    if m.empty:
        raise ValueError(f"no rows of {CELL_METRICS} in metrics")
    div = m["metric"] == "diversity_lpips"
    if div.any() and "backbone" in m:
        names = sorted(m.loc[div, "backbone"].dropna().astype(str).unique())
        chosen = lpips_backbone if lpips_backbone is not None else (names[0] if names else None)
        if chosen is not None:
            m = m[~div | (m["backbone"].astype(str) == chosen)]
    keys = [c for c in (*GRID_COLUMNS, "probe_learned") if c in m.columns]
    for col in ("ci_low", "ci_high"):
        if col not in m:
            m[col] = np.nan
    # groupby keeps the NaN keys and only the cells that exist: pivot_table(dropna=False)
    # builds the cartesian product of every key's values (14 GB, 65 s on the default run)
    wide = (
        m.groupby([*keys, "metric"], dropna=False, sort=True)[["value", "ci_low", "ci_high"]]
        .mean()
        .unstack("metric")
    )
    out = pd.DataFrame(index=wide.index)
    for name in wide["value"].columns:
        out[name] = wide["value"][name]
        out[f"{name}_lo"] = wide["ci_low"][name] if name in wide["ci_low"] else np.nan
        out[f"{name}_hi"] = wide["ci_high"][name] if name in wide["ci_high"] else np.nan
    out = out.reset_index()
    out = out.dropna(subset=[c for c in CELL_METRICS if c in out.columns], how="all")
    out["depth"] = out["depth"].astype(str)
    for k, v in KNOB_DEFAULTS.items():  # every knob's "off" value where a table lacks it
        if k not in out:
            out[k] = v
        out[k] = out[k].fillna(v)
    out["stochastic"] = [is_stochastic(r) for r in out.to_dict("records")]
    return out
