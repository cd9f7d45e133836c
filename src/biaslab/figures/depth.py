"""Figures of "Deeper Diffusion Models Amplify Bias" (Hakemi et al., 2025), from tidy tables:
Fig. 4 (% minority and diversity vs depth), Table 3 as a figure (kNN similarity vs k), the
training loss curves and the Fig. 3 toy. The same-seed grids (Figs. 5, A) are in
``biaslab.figures.same_seed``.

Every public ``fig_*`` function is pure: it takes DataFrames/arrays and returns a matplotlib
``Figure``; the caller saves it (``biaslab.figures.save``) and closes it. Conventions (depth
axis, replicates, facets): ``biaslab.figures.common``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biaslab.grid import depth_sort_key, fmt_value, setting_label

from .common import (
    MODEL_FACETS,
    SAMPLER_SETTING,
    depth_axis,
    depth_colors,
    depth_order,
    facet_title,
    fraction_colors,
    fraction_legend,
    groups,
    learned_by,
    max_replicates,
    metric_rows,
    no_data,
    pick_backbone,
    present,
    replicate_summary,
    replicate_values,
    select,
    varying,
    yerr,
)
from .tables import knn_rows

__all__ = ["fig_knn_vs_k", "fig_loss_curves", "fig_minority_vs_depth", "fig_toy"]

#: The groups of a Fig. 4 line: one point per (minority fraction, depth).
_BY = ["minority_fraction", "depth"]


# --------------------------------------------------------------------------------------------
# Fig. 4: % minority generated and diversity vs depth
# --------------------------------------------------------------------------------------------
@dataclass
class _Fig4Data:
    """The metric rows Fig. 4 reads, and the LPIPS backbone chosen."""

    share: pd.DataFrame
    lpips: pd.DataFrame
    conf: pd.DataFrame
    train: pd.DataFrame
    backbone: str | None

    @classmethod
    def of(cls, metrics: pd.DataFrame, lpips_backbone: str | None) -> _Fig4Data:
        lpips, backbone = pick_backbone(metric_rows(metrics, "diversity_lpips"), lpips_backbone)
        return cls(
            share=metric_rows(metrics, "minority_share"),
            lpips=lpips,
            conf=metric_rows(metrics, "confident_share"),
            train=metric_rows(metrics, "training_minority_share"),
            backbone=backbone,
        )


@dataclass
class _Fig4Row:
    """One row of panels: its rows of each metric, and how replicates are drawn."""

    key: dict[str, Any]
    share: pd.DataFrame
    lpips: pd.DataFrame
    conf_rep: pd.DataFrame | None  # confident_share per replicate
    conf_mean: pd.DataFrame | None  # ... and its mean over replicates
    multi_rep: bool
    x_of: dict[str, int]
    threshold: float

    @classmethod
    def of(cls, data: _Fig4Data, key: dict[str, Any], x_of, threshold: float) -> _Fig4Row:
        share, lpips, conf = (select(rows, key) for rows in (data.share, data.lpips, data.conf))
        conf_rep = replicate_values(conf, _BY) if not conf.empty else None
        conf_mean = replicate_summary(conf_rep, _BY) if conf_rep is not None else None
        multi_rep = max_replicates(pd.concat([share, lpips]), _BY) > 1
        return cls(key, share, lpips, conf_rep, conf_mean, multi_rep, x_of, threshold)

    def summary(self, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
        """(per-replicate values, their summary in depth order, its x positions)."""
        rep = replicate_values(rows, _BY)
        summ = replicate_summary(rep, _BY).sort_values("depth", key=lambda s: s.map(self.x_of))
        return rep, summ, summ["depth"].map(self.x_of).to_numpy(dtype=float)


def _draw_share(ax, row: _Fig4Row, frac: float, color) -> bool:
    """Left panel, one fraction: mean % minority vs depth; hollow where the classifier is not
    confident; faint replicate points. Whether any point is hollow."""
    sub = row.share[row.share["minority_fraction"] == frac]
    if sub.empty:
        return False
    rep, summ, xs = row.summary(sub)
    ys = 100 * summ["mean"].to_numpy(dtype=float)
    ax.errorbar(
        xs,
        ys,
        yerr=yerr(summ, 100),
        color=color,
        marker="o",
        capsize=3,
        label=fraction_legend(frac),
    )
    low = ~learned_by(sub, "depth", summ["depth"])  # the probe: not learned
    if row.conf_mean is not None:
        cm = summ[_BY].merge(row.conf_mean, on=_BY, how="left")["mean"].to_numpy(float)
        low |= np.isfinite(cm) & (cm < row.threshold)
    if low.any():
        ax.scatter(
            xs[low], ys[low], s=60, facecolors="white", edgecolors=[color], linewidths=1.5, zorder=3
        )
    if row.multi_rep:
        _draw_share_replicates(ax, row, rep, color)
    return bool(low.any())


def _draw_share_replicates(ax, row: _Fig4Row, rep: pd.DataFrame, color) -> None:
    """Each replicate's % minority as a faint point, hollow when it is not confident."""
    rx = rep["depth"].map(row.x_of).to_numpy(dtype=float)
    ry = 100 * rep["value"].to_numpy(dtype=float)
    rlow = np.zeros(len(rep), dtype=bool)
    if row.conf_rep is not None:
        conf_rep = row.conf_rep
        on = [
            c
            for c in rep.columns
            if c in conf_rep.columns and c not in ("value", "ci_low", "ci_high")
        ]
        rc = rep[on].merge(conf_rep, on=on, how="left")["value"].to_numpy(float)
        rlow = np.isfinite(rc) & (rc < row.threshold)
    ax.scatter(rx[~rlow], ry[~rlow], s=14, color=color, alpha=0.35, linewidths=0, zorder=2)
    ax.scatter(rx[rlow], ry[rlow], s=14, facecolors="none", edgecolors=[color], alpha=0.5, zorder=2)


def _draw_training_share(ax, train: pd.DataFrame, key: dict, frac: float, color) -> None:
    """Dashed line at the actual training share (the configured fraction if not measured)."""
    data_key = {c: key[c] for c in key if c in ("dataset", "source", "resolution")}
    tr = select(train, {**data_key, "minority_fraction": frac}, null_matches=True)
    ref = float(tr["value"].mean()) if not tr.empty else float(frac)
    ax.axhline(100 * ref, color=color, linestyle="--", linewidth=1, alpha=0.8)


def _draw_diversity(ax, row: _Fig4Row, frac: float, color) -> None:
    """Right panel, one fraction: mean LPIPS diversity vs depth, faint replicate points."""
    sub = row.lpips[row.lpips["minority_fraction"] == frac]
    if sub.empty:
        return
    rep, summ, xs = row.summary(sub)
    ax.errorbar(
        xs,
        summ["mean"].to_numpy(dtype=float),
        yerr=yerr(summ),
        color=color,
        marker="o",
        capsize=3,
        label=fraction_legend(frac),
    )
    if row.multi_rep:
        ax.scatter(
            rep["depth"].map(row.x_of).to_numpy(dtype=float),
            rep["value"].to_numpy(dtype=float),
            s=14,
            color=color,
            alpha=0.35,
            linewidths=0,
            zorder=2,
        )


def _finish_fig4_row(ax_s, ax_d, row: _Fig4Row, depths, backbone, any_hollow: bool) -> None:
    """Axes, titles, "no data" notes and legends of one row of Fig. 4."""
    title = facet_title(row.key)
    for ax in (ax_s, ax_d):
        depth_axis(ax, depths)
        ax.grid(alpha=0.3)
    ax_s.set_ylabel("% minority generated")
    ax_s.set_title(f"minority share — {title}" if title else "minority share", fontsize=10)
    ax_d.set_ylabel(
        f"diversity (mean pairwise LPIPS, {backbone})"
        if backbone
        else "diversity (mean pairwise LPIPS)"
    )
    ax_d.set_title(f"diversity — {title}" if title else "diversity", fontsize=10)
    if row.share.empty:
        no_data(ax_s, "no minority_share rows")
    if row.lpips.empty:
        no_data(ax_d, "no diversity_lpips rows")
    handles, labels = ax_s.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", linestyle="--"))
    labels.append("actual training share")
    if row.multi_rep:
        handles.append(
            Line2D([], [], color="0.3", marker="o", linestyle="none", alpha=0.35, markersize=4)
        )
        labels.append("individual seeds (bars: ±1 s.e.m.)")
    if any_hollow:
        handles.append(
            Line2D([], [], color="0.3", marker="o", linestyle="none", markerfacecolor="white")
        )
        labels.append(f"hollow: confident share < {row.threshold:.0%} or probe: not learned")
    ax_s.legend(handles, labels, fontsize=8)
    if not row.lpips.empty:
        ax_d.legend(fontsize=8)


def fig_minority_vs_depth(
    metrics: pd.DataFrame,
    *,
    confident_share_min: float = 0.9,
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

    Points whose mean ``confident_share`` is below ``confident_share_min`` (config
    ``figures.confident_share_min``; the per-sample cut-off of ``confident_share`` itself is
    ``metrics.confidence_threshold``) are drawn hollow
    (replicate points likewise, by their own share), with a note in the legend: the minority
    percentage of samples the classifier does not recognise is not meaningful.
    """
    data = _Fig4Data.of(metrics, lpips_backbone)
    plotted = pd.concat([data.share, data.lpips], ignore_index=True)
    if plotted.empty:
        raise ValueError("no minority_share or diversity_lpips rows in metrics")
    depths = depth_order(plotted["depth"])
    x_of = {d: i for i, d in enumerate(depths)}
    fractions = sorted(plotted["minority_fraction"].dropna().unique())
    colors = fraction_colors(fractions)
    facets = varying(plotted, MODEL_FACETS) + present(plotted, SAMPLER_SETTING)
    keys = [key for key, _ in groups(plotted, facets)]

    fig, axes = plt.subplots(len(keys), 2, figsize=(11, 3.9 * len(keys)), squeeze=False)
    for (ax_s, ax_d), key in zip(axes, keys, strict=True):
        row = _Fig4Row.of(data, key, x_of, confident_share_min)
        any_hollow = False
        for frac in fractions:
            any_hollow |= _draw_share(ax_s, row, frac, colors[frac])
            _draw_training_share(ax_s, data.train, key, frac, colors[frac])
            _draw_diversity(ax_d, row, frac, colors[frac])
        _finish_fig4_row(ax_s, ax_d, row, depths, data.backbone, any_hollow)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Table 3 as a figure: kNN similarity vs k
# --------------------------------------------------------------------------------------------
def _draw_knn_panel(ax, sub: pd.DataFrame, depths, colors, ks_all, name, backbone, title) -> None:
    """One kNN panel: a line per depth (mean over replicates, ±1 s.e.m. band if several)."""
    for d in depths:
        dd = sub[sub["depth"] == d]
        if dd.empty:
            continue
        rep = replicate_values(dd, ["k"])
        rep = rep.drop(columns=["ci_low", "ci_high"], errors="ignore")
        summ = replicate_summary(rep, ["k"]).sort_values("k")
        ks = summ["k"].to_numpy(dtype=float)
        m = summ["mean"].to_numpy(dtype=float)
        ax.plot(ks, m, marker="o", color=colors[d], label=f"depth {d}")
        if (summ["n_rep"] > 1).any():
            e = summ["err_lo"].to_numpy(dtype=float)
            ax.fill_between(ks, m - e, m + e, color=colors[d], alpha=0.15, linewidth=0)
    ax.set_xticks(ks_all)
    ax.set_xlabel("k (nearest training images)")
    ax.grid(alpha=0.3)
    if name == "knn_cosine":
        ax.set_ylabel(f"cosine similarity ({backbone})" if backbone else "cosine similarity")
        ax.set_title(f"feature kNN cosine ↑ — {title}", fontsize=9)
    else:
        ax.set_ylabel("pixel L2 distance")
        ax.set_title(f"pixel kNN L2 ↓ — {title}", fontsize=9)
    if sub.empty:
        no_data(ax, f"no {name} rows")
    else:
        ax.legend(fontsize=8)


def fig_knn_vs_k(
    metrics: pd.DataFrame, *, setting: tuple | None = None, backbone: str | None = None
) -> Figure:
    """Paper Table 3 as a figure: kNN similarity to the training set vs k, one line per depth.

    Left: ``knn_cosine`` (feature-space cosine similarity, averaged over the k nearest training
    images; higher = closer to memorization). Right: ``knn_l2`` (pixel Euclidean distance; lower
    = closer). Lines are coloured by depth (viridis, in ``DEPTH_ORDER``); each is the mean over
    replicates, with a ±1 s.e.m. band when there are several. Only one sampler setting is shown
    (``setting`` or the first in sorted order, named in the title); one row of panels per
    minority fraction (and per other varying grid facet).
    """
    cos, l2, key, backbone = knn_rows(metrics, setting, backbone)
    both = pd.concat([cos, l2], ignore_index=True)
    facets = varying(both, MODEL_FACETS)
    rows = groups(both, [*facets, "minority_fraction"])
    depths = depth_order(both["depth"])
    colors = depth_colors(depths)
    ks_all = sorted(int(k) for k in both["k"].dropna().unique())
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), squeeze=False)
    for r, (rkey, _) in enumerate(rows):
        title = " | ".join(
            p
            for p in (
                facet_title({c: rkey[c] for c in facets}, always_setting=False),
                fraction_legend(rkey["minority_fraction"]),
                setting_label(key),
            )
            if p
        )
        for ax, df, name in ((axes[r, 0], cos, "knn_cosine"), (axes[r, 1], l2, "knn_l2")):
            _draw_knn_panel(ax, select(df, rkey), depths, colors, ks_all, name, backbone, title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# training diagnostics
# --------------------------------------------------------------------------------------------
def _draw_loss_lines(ax, sub: pd.DataFrame, line_cols, colors, widths, window) -> None:
    """Per line (depth, width): every run raw and faint, the smoothed mean over runs solid."""
    styles = ["-", "--", ":", "-."]
    lines = sorted(
        groups(sub, line_cols),
        key=lambda kv: (depth_sort_key(kv[0]["depth"]), kv[0]["depth"], kv[0].get("width", 0)),
    )
    for lkey, lsub in lines:
        color = colors[lkey["depth"]]
        style = styles[widths.index(lkey["width"]) % len(styles)] if widths else "-"
        for _, run in groups(lsub, present(lsub, ("train_seed",))):
            run = run.sort_values("step")
            ax.plot(run["step"], run["loss"], color=color, alpha=0.2, linewidth=0.6)
        mean = lsub.groupby("step")["loss"].mean().sort_index()
        w = window if window is not None else max(1, len(mean) // 20)
        smooth = mean.rolling(w, center=True, min_periods=1).mean()
        label = f"depth {lkey['depth']}"
        if widths:
            label += f", width {fmt_value(lkey['width'])}"
        ax.plot(
            smooth.index,
            smooth.to_numpy(),
            color=color,
            linestyle=style,
            linewidth=1.8,
            label=label,
        )


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
    line_cols = ["depth", *varying(log, ["width"])]
    panels = groups(log, [*varying(log, ["dataset"]), "minority_fraction"])
    colors = depth_colors(depth_order(log["depth"]))
    widths = sorted(log["width"].unique()) if "width" in line_cols else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (pkey, sub) in zip(axes[0], panels, strict=True):
        _draw_loss_lines(ax, sub, line_cols, colors, widths, window)
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss")
        head = f"{pkey['dataset']} | " if "dataset" in pkey else ""
        ax.set_title(head + fraction_legend(pkey["minority_fraction"]), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Fig. 3: training-free toy
# --------------------------------------------------------------------------------------------
def _draw_toy_curves(ax, result: pd.DataFrame) -> None:
    """Mean majority share (±1 s.d. band) vs abstraction level, one line per initial share."""
    shares = sorted(result["initial_share"].unique())
    cmap = plt.get_cmap("plasma")
    lowest = 0.4
    for i, s in enumerate(shares):
        g = result[result["initial_share"] == s].groupby("level")["majority_share"]
        mean, sd = g.mean(), g.std(ddof=0).fillna(0.0)
        color = cmap(0.85 * i / max(len(shares) - 1, 1))
        label = f"initial majority share {s:g}"
        ax.plot(mean.index, mean.to_numpy(), marker="o", color=color, label=label)
        low, high = np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1)
        ax.fill_between(mean.index, low, high, color=color, alpha=0.12, linewidth=0)
        lowest = min(lowest, float(low.min()))
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
    _draw_toy_curves(fig.add_subplot(gs[0, :]), result)
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
