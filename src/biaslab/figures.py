"""Figures of "Deeper Diffusion Models Amplify Bias" (Hakemi et al., 2025), from tidy tables.

Every public ``fig_*`` function is pure: it takes DataFrames/arrays and returns a matplotlib
``Figure``; the caller saves it (``biaslab.io.save_figure``) and closes it.

Conventions shared by the metric figures
----------------------------------------
* Depth is a categorical x-axis in ``biaslab.grid.DEPTH_ORDER`` order (``depth_sort_key``).
* Replicates are the ``(train_seed, sample_seed)`` pairs. The line is the mean over replicates;
  each replicate is also drawn as a faint point when there are several.
* Other grid columns that vary inside the table (dataset, width, sampler setting, ...) are never
  averaged together: they become separate rows of panels, titled with their values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biaslab.grid import DEPTH_ORDER, KNOB_COLUMNS, depth_sort_key

# Headless: switching is allowed after importing pyplot as long as no figure exists yet.
matplotlib.use("Agg")

__all__ = [
    "depth_family",
    "fig_knn_vs_k",
    "fig_loss_curves",
    "fig_minority_vs_depth",
    "fig_same_seed_grid",
    "fig_toy",
    "knn_table",
    "markdown_table",
]

SAMPLER_SETTING = KNOB_COLUMNS
REPLICATE_COLUMNS = ("train_seed", "sample_seed")
# Grid columns that are neither the x-axis (depth), the line (minority_fraction) nor replicates:
# when one of them varies, its values get their own row of panels.
FACET_COLUMNS = (
    "dataset",
    "source",
    "resolution",
    "width",
    "train_steps",
    "n_samples",
    *SAMPLER_SETTING,
)
_FACET_NAMES = {
    "dataset": "",
    "source": "source ",
    "resolution": "res ",
    "width": "width ",
    "train_steps": "train steps ",
    "n_samples": "n=",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _depth_order(labels) -> list[str]:
    """Distinct depth labels (as str) in ``DEPTH_ORDER`` order, unknown labels last by name."""
    return sorted({str(d) for d in labels}, key=lambda d: (depth_sort_key(d), d))


def _fraction_label(fraction: float) -> str:
    return f"{100 * float(fraction):.3g}% minority in training"


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def _setting_label(key: Mapping[str, Any]) -> str:
    """``ddpm, 1000 steps, η=1`` from a dict of sampler knobs: sampler, steps, then the knobs
    that are on (eta for ddpm/ddim, S_churn for euler/heun, guidance, bypass)."""
    parts = []
    if "sampler" in key and pd.notna(key["sampler"]):
        parts.append(str(key["sampler"]))
    if "steps" in key and pd.notna(key["steps"]):
        parts.append(f"{_fmt(key['steps'])} steps")
    if "eta" in key and pd.notna(key["eta"]) and str(key.get("sampler")) in ("ddpm", "ddim"):
        parts.append(f"η={_fmt(key['eta'])}")
    if pd.notna(key.get("s_churn")) and str(key.get("sampler")) in ("euler", "heun"):
        parts.append(f"S_churn={_fmt(key['s_churn'])}")
    if pd.notna(key.get("guidance")) and key.get("guidance", 0) != 0:
        parts.append(f"w={_fmt(key['guidance'])}")
    if pd.notna(key.get("bypass")) and key.get("bypass", 0) != 0:
        ramp = " ramped" if key.get("bypass_schedule") == "linear" else ""
        parts.append(f"bypass p={_fmt(key['bypass'])}{ramp}")
    return ", ".join(parts)


def depth_family(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's depth figures (Fig. 4, Table 3): unconditional models sampled
    without a mid-block bypass."""
    keep = np.ones(len(metrics), dtype=bool)
    if "num_classes" in metrics:
        keep &= metrics["num_classes"].isna().to_numpy() | (metrics["num_classes"] == 0).to_numpy()
    if "bypass" in metrics:
        keep &= metrics["bypass"].fillna(0).to_numpy() == 0
    return metrics[keep]


def _facet_title(key: Mapping[str, Any], always_setting: bool = True) -> str:
    """Title of a row of panels: varying non-sampler facets, then the sampler setting."""
    parts = [
        f"{_FACET_NAMES.get(c, c + ' ')}{_fmt(v)}"
        for c, v in key.items()
        if c not in SAMPLER_SETTING and c != "minority_fraction"
    ]
    setting = _setting_label(key) if always_setting else ""
    if setting:
        parts.append(setting)
    return " | ".join(parts)


def _present(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c in df.columns]


def _varying(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns among ``columns`` with more than one distinct value (NaN counts as a value)."""
    return [c for c in _present(df, columns) if df[c].nunique(dropna=False) > 1]


def _groups(df: pd.DataFrame, columns: Sequence[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``[(key_dict, sub_df), ...]`` sorted by key; one ``({}, df)`` group when no columns."""
    columns = list(columns)
    if not columns:
        return [({}, df)]
    out = []
    for key, sub in df.groupby(columns, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(columns, key, strict=True)), sub))
    return out


def _select(df: pd.DataFrame, key: Mapping[str, Any], null_matches: bool = False) -> pd.DataFrame:
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


def _metric(df: pd.DataFrame, name: str) -> pd.DataFrame:
    out = df[df["metric"] == name].copy()
    out["depth"] = out["depth"].astype(str)
    return out


def _pick_backbone(rows: pd.DataFrame, backbone: str | None) -> tuple[pd.DataFrame, str | None]:
    """Keep one backbone (``backbone`` or the first by name); rows without one are kept."""
    if "backbone" not in rows.columns or rows["backbone"].isna().all():
        return rows, None
    names = sorted(rows["backbone"].dropna().astype(str).unique())
    chosen = backbone if backbone is not None else names[0]
    if chosen not in names:
        raise ValueError(f"backbone {chosen!r} not among {names}")
    return rows[rows["backbone"].isna() | (rows["backbone"].astype(str) == chosen)], chosen


def _replicate_values(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per (``by`` + replicate) with mean value / ci_low / ci_high."""
    keys = list(by) + _present(rows, REPLICATE_COLUMNS)
    cols = [c for c in ("value", "ci_low", "ci_high") if c in rows.columns]
    return rows.groupby(keys, sort=False, dropna=False)[cols].mean().reset_index()


def _max_replicates(rows: pd.DataFrame, by: Sequence[str]) -> int:
    """Largest number of distinct replicates among the ``by`` groups of ``rows``."""
    reps = _present(rows, REPLICATE_COLUMNS)
    if rows.empty or not reps:
        return 1 if not rows.empty else 0
    return int(rows[[*by, *reps]].drop_duplicates().groupby(list(by), dropna=False).size().max())


def _summary(rep: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean over replicates with an error bar: the run's CI if one replicate, else ±1 s.e.m."""
    rows = []
    for key, sub in _groups(rep, by):
        vals = sub["value"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        n = len(vals)
        mean = float(vals.mean()) if n else np.nan
        if n == 1:
            lo = float(sub["ci_low"].iloc[0]) if "ci_low" in sub else np.nan
            hi = float(sub["ci_high"].iloc[0]) if "ci_high" in sub else np.nan
            err_lo, err_hi = mean - lo, hi - mean
        elif n > 1:
            sem = float(vals.std(ddof=1) / np.sqrt(n))
            err_lo = err_hi = sem
        else:
            err_lo = err_hi = np.nan
        rows.append({**key, "mean": mean, "err_lo": err_lo, "err_hi": err_hi, "n_rep": n})
    return pd.DataFrame(rows, columns=[*by, "mean", "err_lo", "err_hi", "n_rep"])


def _yerr(summary: pd.DataFrame, scale: float = 1.0) -> np.ndarray:
    lo = np.clip(summary["err_lo"].to_numpy(dtype=float), 0.0, None) * scale
    hi = np.clip(summary["err_hi"].to_numpy(dtype=float), 0.0, None) * scale
    return np.vstack([lo, hi])


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _depth_axis(ax, depths: Sequence[str]) -> None:
    ax.set_xticks(range(len(depths)))
    ax.set_xticklabels(list(depths))
    ax.set_xlim(-0.5, len(depths) - 0.5)
    ax.set_xlabel("depth (Table A variant)")


def _depth_colors(depths: Sequence[str]) -> dict[str, Any]:
    """Colours from viridis by position in ``DEPTH_ORDER`` (stable across figures)."""
    cmap = plt.get_cmap("viridis")
    unknown = [d for d in depths if d not in DEPTH_ORDER]
    pos = {d: i for i, d in enumerate(DEPTH_ORDER)}
    pos.update({d: len(DEPTH_ORDER) + i for i, d in enumerate(unknown)})
    top = max(len(pos) - 1, 1)
    return {d: cmap(0.9 * pos[d] / top) for d in depths}


def _fraction_colors(fractions: Sequence[float]) -> dict[float, Any]:
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(sorted(fractions))}


# --------------------------------------------------------------------------------------------
# Fig. 4: % minority generated and diversity vs depth
# --------------------------------------------------------------------------------------------
def fig_minority_vs_depth(
    metrics: pd.DataFrame,
    *,
    confidence_threshold: float = 0.9,
    lpips_backbone: str | None = None,
) -> Figure:
    """Paper Fig. 4: percentage of minority samples generated, and sample diversity, vs depth.

    Left panel: ``100 * minority_share`` vs depth, one line per configured minority fraction
    (legend "10% minority in training"), with a dashed horizontal line of the same colour at the
    *actual* training share (``training_minority_share``, mean over matching rows; the configured
    fraction if that metric is absent). Right panel: ``diversity_lpips`` (mean pairwise LPIPS) vs
    depth for the backbone ``lpips_backbone`` (default: the first by name), named in the y label.

    One row of the two panels per sampler setting ``(sampler, steps, eta)`` -- and per value of any
    other non-replicate grid column that varies (dataset, width, ...) -- titled with it.

    Replicates (train_seed x sample_seed): the line is their mean. With a single replicate the
    error bars are the run's own interval (Clopper-Pearson 95% for the minority share); with
    several, they are ±1 standard error of the mean across replicates (the seed-to-seed spread
    already contains the sampling noise), and each replicate is drawn as a faint point.

    Points whose mean ``confident_share`` is below ``confidence_threshold`` are drawn hollow
    (replicate points likewise, by their own share), with a note in the legend: the minority
    percentage of samples the classifier does not recognise is not meaningful.
    """
    share = _metric(metrics, "minority_share")
    lpips, backbone = _pick_backbone(_metric(metrics, "diversity_lpips"), lpips_backbone)
    conf = _metric(metrics, "confident_share")
    train = _metric(metrics, "training_minority_share")
    plotted = pd.concat([share, lpips], ignore_index=True)
    if plotted.empty:
        raise ValueError("no minority_share or diversity_lpips rows in metrics")

    depths = _depth_order(plotted["depth"])
    x_of = {d: i for i, d in enumerate(depths)}
    fractions = sorted(plotted["minority_fraction"].dropna().unique())
    colors = _fraction_colors(fractions)
    facets = _varying(plotted, [c for c in FACET_COLUMNS if c not in SAMPLER_SETTING])
    facets += _present(plotted, SAMPLER_SETTING)
    rows = _groups(plotted, facets)

    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.9 * len(rows)), squeeze=False)
    by = ["minority_fraction", "depth"]
    for r, (key, _) in enumerate(rows):
        ax_s, ax_d = axes[r]
        title = _facet_title(key)
        any_hollow = False
        s_rows, d_rows = _select(share, key), _select(lpips, key)
        c_rows = _select(conf, key)
        conf_rep = _replicate_values(c_rows, by) if not c_rows.empty else None
        conf_mean = _summary(conf_rep, by) if conf_rep is not None else None
        multi_rep = _max_replicates(pd.concat([s_rows, d_rows]), by) > 1

        for frac in fractions:
            color = colors[frac]
            # ---- left: % minority ----
            sub = s_rows[s_rows["minority_fraction"] == frac]
            if not sub.empty:
                rep = _replicate_values(sub, by)
                summ = _summary(rep, by)
                summ = summ.sort_values("depth", key=lambda s: s.map(x_of))
                xs = summ["depth"].map(x_of).to_numpy(dtype=float)
                ys = 100 * summ["mean"].to_numpy(dtype=float)
                ax_s.errorbar(
                    xs,
                    ys,
                    yerr=_yerr(summ, 100),
                    color=color,
                    marker="o",
                    capsize=3,
                    label=_fraction_label(frac),
                )
                low = np.zeros(len(summ), dtype=bool)
                if conf_mean is not None:
                    cm = summ[by].merge(conf_mean, on=by, how="left")["mean"].to_numpy(float)
                    low = np.isfinite(cm) & (cm < confidence_threshold)
                if low.any():
                    any_hollow = True
                    ax_s.scatter(
                        xs[low],
                        ys[low],
                        s=60,
                        facecolors="white",
                        edgecolors=[color],
                        linewidths=1.5,
                        zorder=3,
                    )
                if multi_rep:
                    rx = rep["depth"].map(x_of).to_numpy(dtype=float)
                    ry = 100 * rep["value"].to_numpy(dtype=float)
                    rlow = np.zeros(len(rep), dtype=bool)
                    if conf_rep is not None:
                        on = [
                            c
                            for c in rep.columns
                            if c in conf_rep.columns and c not in ("value", "ci_low", "ci_high")
                        ]
                        rc = rep[on].merge(conf_rep, on=on, how="left")["value"].to_numpy(float)
                        rlow = np.isfinite(rc) & (rc < confidence_threshold)
                    ax_s.scatter(
                        rx[~rlow], ry[~rlow], s=14, color=color, alpha=0.35, linewidths=0, zorder=2
                    )
                    ax_s.scatter(
                        rx[rlow],
                        ry[rlow],
                        s=14,
                        facecolors="none",
                        edgecolors=[color],
                        alpha=0.5,
                        zorder=2,
                    )
            tr = _select(
                train,
                {
                    **{c: key[c] for c in key if c in ("dataset", "source", "resolution")},
                    "minority_fraction": frac,
                },
                null_matches=True,
            )
            ref = float(tr["value"].mean()) if not tr.empty else float(frac)
            ax_s.axhline(100 * ref, color=color, linestyle="--", linewidth=1, alpha=0.8)

            # ---- right: diversity ----
            sub = d_rows[d_rows["minority_fraction"] == frac]
            if not sub.empty:
                rep = _replicate_values(sub, by)
                summ = _summary(rep, by).sort_values("depth", key=lambda s: s.map(x_of))
                xs = summ["depth"].map(x_of).to_numpy(dtype=float)
                ax_d.errorbar(
                    xs,
                    summ["mean"].to_numpy(dtype=float),
                    yerr=_yerr(summ),
                    color=color,
                    marker="o",
                    capsize=3,
                    label=_fraction_label(frac),
                )
                if multi_rep:
                    ax_d.scatter(
                        rep["depth"].map(x_of).to_numpy(dtype=float),
                        rep["value"].to_numpy(dtype=float),
                        s=14,
                        color=color,
                        alpha=0.35,
                        linewidths=0,
                        zorder=2,
                    )

        # ---- cosmetics ----
        for ax in (ax_s, ax_d):
            _depth_axis(ax, depths)
            ax.grid(alpha=0.3)
        ax_s.set_ylabel("% minority generated")
        ax_s.set_title(f"minority share — {title}" if title else "minority share", fontsize=10)
        ax_d.set_ylabel(
            f"diversity (mean pairwise LPIPS, {backbone})"
            if backbone
            else "diversity (mean pairwise LPIPS)"
        )
        ax_d.set_title(f"diversity — {title}" if title else "diversity", fontsize=10)
        if s_rows.empty:
            _no_data(ax_s, "no minority_share rows")
        if d_rows.empty:
            _no_data(ax_d, "no diversity_lpips rows")
        handles, labels = ax_s.get_legend_handles_labels()
        handles.append(Line2D([], [], color="0.3", linestyle="--"))
        labels.append("actual training share")
        if multi_rep:
            handles.append(
                Line2D([], [], color="0.3", marker="o", linestyle="none", alpha=0.35, markersize=4)
            )
            labels.append("individual seeds (bars: ±1 s.e.m.)")
        if any_hollow:
            handles.append(
                Line2D([], [], color="0.3", marker="o", linestyle="none", markerfacecolor="white")
            )
            labels.append(f"hollow: confident share < {confidence_threshold:.0%}")
        ax_s.legend(handles, labels, fontsize=8)
        if not d_rows.empty:
            ax_d.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Table 3: memorisation / kNN similarity to the training set
# --------------------------------------------------------------------------------------------
def _sampler_settings(df: pd.DataFrame) -> list[tuple]:
    cols = _present(df, SAMPLER_SETTING)
    if not cols or df.empty:
        return []
    return [
        tuple(k)
        for k in df[cols].drop_duplicates().sort_values(cols).itertuples(index=False, name=None)
    ]


def _knn_rows(
    metrics: pd.DataFrame, setting: tuple | None, backbone: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], str | None]:
    cos, backbone = _pick_backbone(_metric(metrics, "knn_cosine"), backbone)
    l2 = _metric(metrics, "knn_l2")
    both = pd.concat([cos, l2], ignore_index=True)
    if both.empty:
        raise ValueError("no knn_cosine or knn_l2 rows in metrics")
    settings = _sampler_settings(both)
    key: dict[str, Any] = {}
    if settings:
        chosen = tuple(setting) if setting is not None else settings[0]
        cols = _present(both, SAMPLER_SETTING)
        if len(chosen) > len(cols):
            raise ValueError(f"setting {chosen}: more values than knob columns {cols}")
        # a setting may name the leading knobs only, e.g. (sampler, steps, eta)
        key = dict(zip(cols[: len(chosen)], chosen, strict=True))
        cos, l2 = _select(cos, key), _select(l2, key)
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
    Euclidean distance), each the mean over replicates (train_seed x sample_seed), plus
    ``n_replicates``. Only the sampler ``setting`` is used: values of the leading knob columns
    (``sampler, steps, eta, s_churn, guidance, bypass, bypass_schedule``), e.g.
    ``("ddpm", 1000, 1.0)``; default the first in sorted order.
    """
    cos, l2, _, _ = _knn_rows(metrics, setting, backbone)
    both = pd.concat([cos, l2], ignore_index=True)
    facets = _varying(both, [c for c in FACET_COLUMNS if c not in SAMPLER_SETTING])
    index = [*facets, "minority_fraction", "depth"]
    parts = []
    for prefix, df in (("cos", cos), ("l2", l2)):
        if df.empty:
            continue
        rep = _replicate_values(df, [*index, "k"])
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


def fig_knn_vs_k(
    metrics: pd.DataFrame, *, setting: tuple | None = None, backbone: str | None = None
) -> Figure:
    """Paper Table 3 as a figure: kNN similarity to the training set vs k, one line per depth.

    Left: ``knn_cosine`` (feature-space cosine similarity, averaged over the k nearest training
    images; higher = closer to memorisation). Right: ``knn_l2`` (pixel Euclidean distance; lower
    = closer). Lines are coloured by depth (viridis, in ``DEPTH_ORDER``); each is the mean over
    replicates, with a ±1 s.e.m. band when there are several. Only one sampler setting is shown
    (``setting`` or the first in sorted order, named in the title); one row of panels per
    minority fraction (and per other varying grid facet).
    """
    cos, l2, key, backbone = _knn_rows(metrics, setting, backbone)
    both = pd.concat([cos, l2], ignore_index=True)
    facets = _varying(both, [c for c in FACET_COLUMNS if c not in SAMPLER_SETTING])
    rows = _groups(both, [*facets, "minority_fraction"])
    depths = _depth_order(both["depth"])
    colors = _depth_colors(depths)
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), squeeze=False)
    for r, (rkey, _) in enumerate(rows):
        title = " | ".join(
            p
            for p in (
                _facet_title({c: rkey[c] for c in facets}, always_setting=False),
                _fraction_label(rkey["minority_fraction"]),
                _setting_label(key),
            )
            if p
        )
        for ax, df, name in ((axes[r, 0], cos, "knn_cosine"), (axes[r, 1], l2, "knn_l2")):
            sub = _select(df, rkey)
            for d in depths:
                dd = sub[sub["depth"] == d]
                if dd.empty:
                    continue
                rep = _replicate_values(dd, ["k"])
                summ = _summary(rep.drop(columns=["ci_low", "ci_high"], errors="ignore"), ["k"])
                summ = summ.sort_values("k")
                ks = summ["k"].to_numpy(dtype=float)
                m = summ["mean"].to_numpy(dtype=float)
                ax.plot(ks, m, marker="o", color=colors[d], label=f"depth {d}")
                if (summ["n_rep"] > 1).any():
                    e = summ["err_lo"].to_numpy(dtype=float)
                    ax.fill_between(ks, m - e, m + e, color=colors[d], alpha=0.15, linewidth=0)
            ks_all = sorted(int(k) for k in both["k"].dropna().unique())
            ax.set_xticks(ks_all)
            ax.set_xlabel("k (nearest training images)")
            ax.grid(alpha=0.3)
            if name == "knn_cosine":
                ax.set_ylabel(
                    f"cosine similarity ({backbone})" if backbone else "cosine similarity"
                )
                ax.set_title(f"feature kNN cosine ↑ — {title}", fontsize=9)
            else:
                ax.set_ylabel("pixel L2 distance")
                ax.set_title(f"pixel kNN L2 ↓ — {title}", fontsize=9)
            if sub.empty:
                _no_data(ax, f"no {name} rows")
            else:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Fig. 5: same sampling seeds across depths
# --------------------------------------------------------------------------------------------
def _as_image(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(image, cmap) for imshow from [H, W], [C, H, W] or [H, W, C] uint8."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x, "gray"
    if x.ndim == 3:
        if x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
            x = np.moveaxis(x, 0, -1)
        if x.shape[-1] == 1:
            return x[..., 0], "gray"
        return x, None
    raise ValueError(f"cannot display a sample of shape {x.shape}")


def differing_columns(predictions: Mapping[str, np.ndarray], columns: Sequence[int]) -> list[int]:
    """The sample indices among ``columns`` whose predicted label is not the same at every
    depth (the highlighted pairs of paper Fig. 5)."""
    out = []
    for c in columns:
        labels = {int(p[c]) for p in predictions.values() if c < len(p)}
        if len(labels) > 1:
            out.append(int(c))
    return out


def minority_first_columns(
    predictions: Mapping[str, np.ndarray], minority: Sequence[int], n: int
) -> list[int]:
    """Paper Fig. A: the first ``n`` sample indices where the shallowest depth generated a
    minority label (``minority``: the minority group, say "blond male"), to show what the
    deeper models make of the same seeds; topped up with the following indices when fewer
    exist."""
    if not predictions:
        raise ValueError("predictions is empty")
    shallow = predictions[min(predictions, key=lambda d: (depth_sort_key(str(d)), str(d)))]
    hits = np.flatnonzero(np.isin(shallow, list(minority)))[:n].tolist()
    rest = [i for i in range(len(shallow)) if i not in set(hits)]
    return [int(i) for i in hits + rest[: max(0, n - len(hits))]]


def fig_same_seed_grid(
    samples: Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray] | None = None,
    class_names: Mapping[int, str] | None = None,
    n: int = 10,
    title: str | None = None,
    columns: Sequence[int] | None = None,
) -> Figure:
    """Paper Fig. 5: the same sampling seeds decoded by models of increasing depth.

    ``samples`` maps a depth label to a uint8 array ``[N, H, W]`` or ``[N, C, H, W]`` whose i-th
    sample was drawn from the same initial noise for every depth. Rows are depths (ordered by
    ``depth_sort_key``, labelled "depth 4"), columns the sample indices ``columns`` (default:
    the first ``n``; headed "seed i"); each tile is annotated with its predicted label
    (``class_names[pred]`` when given), and the columns whose label differs between depths
    are framed in red.
    """
    if not samples:
        raise ValueError("samples is empty")
    depths = sorted(samples, key=lambda d: (depth_sort_key(str(d)), str(d)))
    n_avail = min(len(samples[d]) for d in depths)
    cols = list(range(min(int(n), n_avail))) if columns is None else [int(c) for c in columns]
    if not cols:
        raise ValueError("need at least one sample per depth")
    if max(cols) >= n_avail:
        raise ValueError(f"column {max(cols)} is beyond the {n_avail} samples per depth")
    differ = set(differing_columns(predictions, cols)) if predictions else set()
    fig, axes = plt.subplots(
        len(depths),
        len(cols),
        figsize=(1.25 * len(cols) + 0.6, 1.35 * len(depths) + 0.4),
        squeeze=False,
    )
    for r, d in enumerate(depths):
        preds = None if predictions is None else predictions.get(d)
        for j, c in enumerate(cols):
            ax = axes[r, j]
            img, cmap = _as_image(samples[d][c])
            if cmap is None:
                ax.imshow(img, interpolation="nearest")
            else:
                ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(c in differ)
                spine.set_color("red")
                spine.set_linewidth(2.5)
            if preds is not None and c < len(preds):
                p = preds[c]
                label = class_names.get(int(p), str(p)) if class_names else str(p)
                ax.text(
                    0.03,
                    0.03,
                    label,
                    transform=ax.transAxes,
                    fontsize=7,
                    color="white",
                    va="bottom",
                    ha="left",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
                )
            if r == 0:
                ax.set_title(f"seed {c}", fontsize=8, color="red" if c in differ else "black")
            if j == 0:
                ax.set_ylabel(f"depth {d}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# training diagnostics
# --------------------------------------------------------------------------------------------
def fig_loss_curves(log: pd.DataFrame, *, window: int | None = None) -> Figure:
    """Training loss vs step (diagnostic for the models behind Figs. 4-5 and Table 3).

    One panel per minority fraction (and per dataset when several), one colour per depth (and
    width, when several): every run (train seed) is drawn raw and faint, and the mean over runs
    at each step is smoothed by a centred moving average of ``window`` logged points (default:
    about 1/20 of the points) and drawn solid. Log-scale y; non-positive losses are dropped.
    """
    if log.empty:
        raise ValueError("empty training log")
    log = log.copy()
    log["depth"] = log["depth"].astype(str)
    log = log[np.isfinite(log["loss"].to_numpy(dtype=float)) & (log["loss"] > 0)]
    panel_cols = [*_varying(log, ["dataset"]), "minority_fraction"]
    line_cols = ["depth", *_varying(log, ["width"])]
    panels = _groups(log, panel_cols)
    depths = _depth_order(log["depth"])
    colors = _depth_colors(depths)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    widths = sorted(log["width"].unique()) if "width" in line_cols else []
    styles = ["-", "--", ":", "-."]
    for ax, (pkey, sub) in zip(axes[0], panels, strict=True):
        lines = sorted(
            _groups(sub, line_cols),
            key=lambda kv: (depth_sort_key(kv[0]["depth"]), kv[0]["depth"], kv[0].get("width", 0)),
        )
        for lkey, lsub in lines:
            color = colors[lkey["depth"]]
            style = styles[widths.index(lkey["width"]) % len(styles)] if widths else "-"
            run_cols = _present(lsub, ("train_seed",))
            for _, run in _groups(lsub, run_cols):
                run = run.sort_values("step")
                ax.plot(run["step"], run["loss"], color=color, alpha=0.2, linewidth=0.6)
            mean = lsub.groupby("step")["loss"].mean().sort_index()
            w = window if window is not None else max(1, len(mean) // 20)
            smooth = mean.rolling(w, center=True, min_periods=1).mean()
            label = f"depth {lkey['depth']}"
            if widths:
                label += f", width {_fmt(lkey['width'])}"
            ax.plot(
                smooth.index,
                smooth.to_numpy(),
                color=color,
                linestyle=style,
                linewidth=1.8,
                label=label,
            )
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss")
        head = f"{pkey['dataset']} | " if "dataset" in pkey else ""
        ax.set_title(head + _fraction_label(pkey["minority_fraction"]), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Fig. 3: training-free toy
# --------------------------------------------------------------------------------------------
def fig_toy(
    result: pd.DataFrame,
    examples: Sequence[np.ndarray] | None = None,
    *,
    example_share: float = 0.7,
    example_seed: int = 0,
) -> Figure:
    """Paper Fig. 3: majority share grows with abstraction (2x2 majority pooling), no training.

    Top: mean majority share (±1 s.d. band over maps) vs abstraction level, one line per initial
    majority share, from ``biaslab.toy.abstraction_curve``. Bottom: a row of small example maps,
    ``examples`` (a pyramid, level 0 first, e.g. ``biaslab.toy.example_pyramid``); when None,
    one is generated deterministically with ``example_share`` / ``example_seed`` at the size of
    level 0 in ``result``.
    """
    from biaslab import toy

    if result.empty:
        raise ValueError("empty toy result")
    if examples is None:
        size = (
            int(result.loc[result["level"] == result["level"].min(), "map_size"].max())
            if "map_size" in result.columns
            else 2 ** int(result["level"].max())
        )
        examples = toy.example_pyramid(
            size, example_share, seed=example_seed, levels=int(result["level"].max())
        )
    examples = list(examples)
    n_ex = max(len(examples), 1)
    fig = plt.figure(figsize=(max(7.0, 1.3 * n_ex), 6.2))
    gs = fig.add_gridspec(2, n_ex, height_ratios=[3.2, 1])
    ax = fig.add_subplot(gs[0, :])
    shares = sorted(result["initial_share"].unique())
    cmap = plt.get_cmap("plasma")
    lowest = 0.4
    for i, s in enumerate(shares):
        sub = result[result["initial_share"] == s]
        g = sub.groupby("level")["majority_share"]
        mean, sd = g.mean(), g.std(ddof=0).fillna(0.0)
        color = cmap(0.85 * i / max(len(shares) - 1, 1))
        ax.plot(
            mean.index,
            mean.to_numpy(),
            marker="o",
            color=color,
            label=f"initial majority share {s:g}",
        )
        ax.fill_between(
            mean.index,
            np.clip(mean - sd, 0, 1),
            np.clip(mean + sd, 0, 1),
            color=color,
            alpha=0.12,
            linewidth=0,
        )
        lowest = min(lowest, float(np.clip(mean - sd, 0, 1).min()))
    levels = sorted(result["level"].unique())
    ax.set_xticks(levels)
    if "map_size" in result.columns:
        size_of = result.groupby("level")["map_size"].first()
        ax.set_xticklabels([f"{lv}\n{size_of[lv]}×{size_of[lv]}" for lv in levels])
    ax.set_xlabel("abstraction level (2×2 majority-pooling steps)")
    ax.set_ylabel("majority share")
    ax.set_ylim(max(lowest - 0.02, -0.02), 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    n_maps = result["map_index"].nunique() if "map_index" in result.columns else None
    ax.set_title(
        "Abstraction amplifies the majority (mean ± s.d."
        + (f" over {n_maps} maps)" if n_maps else ")"),
        fontsize=10,
    )
    two = ListedColormap(["#d95f02", "#1b9e77"])
    for j, m in enumerate(examples):
        a = fig.add_subplot(gs[1, j])
        a.imshow(np.asarray(m, dtype=float), cmap=two, vmin=0, vmax=1, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        a.set_title(f"L{j}: {np.mean(m):.2f}", fontsize=8)
        if j == 0:
            a.set_ylabel("example\n(green =\nmajority)", fontsize=7)
    fig.tight_layout()
    return fig
