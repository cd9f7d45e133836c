"""Helpers shared by the figure modules: grid facets, replicate aggregation, depth colours and
order, panels without data, saving.

Conventions
-----------
* Depth is a categorical axis in ``biaslab.grid.DEPTH_ORDER`` order (``depth_order``).
* Replicates are the ``(train_seed, sample_seed)`` pairs (``REPLICATE_COLUMNS``). A figure
  draws their mean (``replicate_summary``) with an error bar that is the run's own interval when
  there is one replicate and ±1 s.e.m. across replicates when there are several.
* Other grid columns that vary inside a table (dataset, width, sampler setting, ...) are never
  averaged together: they become separate panels (``varying``, ``groups``, ``facet_title``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.grid import DEPTH_ORDER, KNOB_COLUMNS, depth_sort_key, fmt_value, setting_label
from biaslab.io import save_figure

# Headless: switching is allowed after importing pyplot as long as no figure exists yet.
matplotlib.use("Agg")

SAMPLER_SETTING = KNOB_COLUMNS
REPLICATE_COLUMNS = ("train_seed", "sample_seed")
#: Grid columns that are neither the x-axis (depth), the line (minority_fraction) nor
#: replicates: when one of them varies, its values get their own row of panels.
FACET_COLUMNS = (
    "dataset",
    "source",
    "resolution",
    "width",
    "train_steps",
    "n_samples",
    *SAMPLER_SETTING,
)
#: ``FACET_COLUMNS`` without the sampler knobs (the model / data facets).
MODEL_FACETS = tuple(c for c in FACET_COLUMNS if c not in SAMPLER_SETTING)
FACET_NAMES = {
    "dataset": "",
    "source": "source ",
    "resolution": "res ",
    "width": "width ",
    "train_steps": "train steps ",
    "n_samples": "n=",
}


# --------------------------------------------------------------------------------------------
# labels and facets
# --------------------------------------------------------------------------------------------
def depth_order(labels) -> list[str]:
    """Distinct depth labels (as str) in ``DEPTH_ORDER`` order, unknown labels last by name."""
    return sorted({str(d) for d in labels}, key=lambda d: (depth_sort_key(d), d))


def fraction_legend(fraction: float, conditional: bool = False) -> str:
    """``10% minority in training``; for a class-conditional family (``fraction`` = the
    bias-conflicting share ``1 - rho``) ``rho_data 0.8``."""
    if conditional:
        return f"rho_data {1 - float(fraction):.3g}"
    return f"{100 * float(fraction):.3g}% minority in training"


def facet_title(key: Mapping[str, Any], always_setting: bool = True) -> str:
    """Title of a row of panels: varying non-sampler facets, then the sampler setting."""
    parts = [
        f"{FACET_NAMES.get(c, c + ' ')}{fmt_value(v)}"
        for c, v in key.items()
        if c not in SAMPLER_SETTING and c != "minority_fraction"
    ]
    setting = setting_label(key) if always_setting else ""
    if setting:
        parts.append(setting)
    return " | ".join(parts)


def present(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns among ``columns`` that ``df`` has, in that order."""
    return [c for c in columns if c in df.columns]


def varying(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns among ``columns`` with more than one distinct value (NaN counts as a value)."""
    return [c for c in present(df, columns) if df[c].nunique(dropna=False) > 1]


def groups(
    df: pd.DataFrame, columns: Sequence[str], *, sort: bool = True
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``[(key_dict, sub_df), ...]`` (sorted by key unless ``sort=False``: first appearance);
    one ``({}, df)`` group when no columns."""
    columns = list(columns)
    if not columns:
        return [({}, df)]
    out = []
    for key, sub in df.groupby(columns, sort=sort, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(columns, key, strict=True)), sub))
    return out


def select(df: pd.DataFrame, key: Mapping[str, Any], null_matches: bool = False) -> pd.DataFrame:
    """Rows of ``df`` equal to ``key`` on its columns (NaN == NaN; optionally NaN matches all)."""
    mask = np.ones(len(df), dtype=bool)
    for c, v in key.items():
        if c not in df.columns:
            continue
        col = df[c]
        if pd.isna(v):
            m = col.isna().to_numpy()
        else:
            m = (col == v).fillna(False).to_numpy(dtype=bool)
        if null_matches:
            m = m | col.isna().to_numpy()
        mask = mask & m
    return df[mask]


def metric_rows(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of metric ``name`` of a tidy metrics table, depth as str."""
    out = df[df["metric"] == name].copy()
    out["depth"] = out["depth"].astype(str)
    return out


def pick_backbone(rows: pd.DataFrame, backbone: str | None) -> tuple[pd.DataFrame, str | None]:
    """Keep one backbone (``backbone`` or the first by name); rows without one are kept."""
    if "backbone" not in rows.columns or rows["backbone"].isna().all():
        return rows, None
    names = sorted(rows["backbone"].dropna().astype(str).unique())
    chosen = backbone if backbone is not None else names[0]
    if chosen not in names:
        raise ValueError(f"backbone {chosen!r} not among {names}")
    return rows[rows["backbone"].isna() | (rows["backbone"].astype(str) == chosen)], chosen


# --------------------------------------------------------------------------------------------
# replicates
# --------------------------------------------------------------------------------------------
def replicate_values(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per (``by`` + replicate) with mean value / ci_low / ci_high."""
    keys = list(by) + present(rows, REPLICATE_COLUMNS)
    cols = [c for c in ("value", "ci_low", "ci_high") if c in rows.columns]
    return rows.groupby(keys, sort=False, dropna=False)[cols].mean().reset_index()


def max_replicates(rows: pd.DataFrame, by: Sequence[str]) -> int:
    """Largest number of distinct replicates among the ``by`` groups of ``rows``."""
    reps = present(rows, REPLICATE_COLUMNS)
    if rows.empty or not reps:
        return 1 if not rows.empty else 0
    return int(rows[[*by, *reps]].drop_duplicates().groupby(list(by), dropna=False).size().max())


def replicate_summary(
    rep: pd.DataFrame,
    by: Sequence[str],
    *,
    value: str = "value",
    lo: str = "ci_low",
    hi: str = "ci_high",
) -> pd.DataFrame:
    """The one replicate aggregator: per ``by`` group of ``rep`` (one row per replicate), the
    mean of the finite ``value``\\ s and its error bar -- the replicate's own interval
    (``lo``, ``hi`` columns; NaN when absent) if there is one, else mean ± 1 s.e.m.

    Columns: ``by``, ``mean``, ``lo``, ``hi`` (the bar's ends), ``err_lo``, ``err_hi`` (its
    lengths below / above the mean) and ``n_rep``; groups in sorted order."""
    rows = []
    for key, sub in groups(rep, by):
        vals = sub[value].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        n = len(vals)
        mean = float(vals.mean()) if n else np.nan
        if n == 1:
            low = float(sub[lo].iloc[0]) if lo in sub else np.nan
            high = float(sub[hi].iloc[0]) if hi in sub else np.nan
            err_lo, err_hi = mean - low, high - mean
        elif n > 1:
            err_lo = err_hi = float(vals.std(ddof=1) / np.sqrt(n))
            low, high = mean - err_lo, mean + err_hi
        else:
            low = high = err_lo = err_hi = np.nan
        rows.append(
            {
                **key,
                "mean": mean,
                "lo": low,
                "hi": high,
                "err_lo": err_lo,
                "err_hi": err_hi,
                "n_rep": n,
            }
        )
    return pd.DataFrame(rows, columns=[*by, "mean", "lo", "hi", "err_lo", "err_hi", "n_rep"])


def yerr(summary: pd.DataFrame, scale: float = 1.0) -> np.ndarray:
    """``errorbar``'s ``yerr`` from a ``replicate_summary`` (negative lengths clipped)."""
    lo = np.clip(summary["err_lo"].to_numpy(dtype=float), 0.0, None) * scale
    hi = np.clip(summary["err_hi"].to_numpy(dtype=float), 0.0, None) * scale
    return np.vstack([lo, hi])


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------
def learned_by(rows: pd.DataFrame, by: str, order) -> np.ndarray:
    """Per value of ``by`` (in ``order``): whether the probe found every model of those rows
    learned (``probe_learned``; True where the column is absent: no probe ran)."""
    if "probe_learned" not in rows:
        return np.ones(len(order), dtype=bool)
    flags = rows.groupby(by)["probe_learned"].all()
    return np.array([bool(flags.get(v, True)) for v in order], dtype=bool)


def hollow_unlearned(ax, x, y, learned: np.ndarray, color, size: float = 60) -> bool:
    """White-filled markers over the points of models the probe says did not learn what the
    bias readout needs; whether there were any."""
    x, y, bad = np.asarray(x, float), np.asarray(y, float), ~np.asarray(learned, bool)
    if bad.any():
        ax.scatter(
            x[bad],
            y[bad],
            s=size,
            facecolors="white",
            edgecolors=[color],
            linewidths=1.5,
            zorder=4,
        )
    return bool(bad.any())


#: Legend text of the hollow markers.
UNLEARNED_NOTE = "hollow: probe says the model did not learn the attribute"


def no_data(ax, text: str) -> None:
    """Write ``text`` in the middle of a panel that has nothing to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def depth_axis(ax, depths: Sequence[str]) -> None:
    """A categorical depth x-axis."""
    ax.set_xticks(range(len(depths)))
    ax.set_xticklabels(list(depths))
    ax.set_xlim(-0.5, len(depths) - 0.5)
    ax.set_xlabel("depth (Table A variant)")


def depth_colors(depths: Sequence[str]) -> dict[str, Any]:
    """Colours from viridis by position in ``DEPTH_ORDER`` (stable across figures)."""
    cmap = plt.get_cmap("viridis")
    unknown = [d for d in depths if d not in DEPTH_ORDER]
    pos = {d: i for i, d in enumerate(DEPTH_ORDER)}
    pos.update({d: len(DEPTH_ORDER) + i for i, d in enumerate(unknown)})
    top = max(len(pos) - 1, 1)
    return {d: cmap(0.9 * pos[d] / top) for d in depths}


def fraction_colors(fractions: Sequence[float]) -> dict[float, Any]:
    """tab10 colours by sorted minority fraction."""
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(sorted(fractions))}


def save(fig: Figure, paths: Sequence[str | os.PathLike]) -> None:
    """Save ``fig`` to each path (format from the suffix, atomically) and close it."""
    save_figure(fig, list(paths))
    plt.close(fig)
