"""Figures of "Deeper Diffusion Models Amplify Bias" (Hakemi et al., 2025), from tidy tables:
Fig. 4 (% minority and diversity vs depth) and Table 3 as a figure (kNN similarity vs k). The
training loss curves and the Fig. 3 toy are in ``biaslab.figures.diagnostics``, the same-seed
grids (Figs. 5, A) in ``biaslab.figures.same_seed``.

Every public ``fig_*`` function is pure: it takes DataFrames/arrays and returns a matplotlib
``Figure``; the caller saves it (``biaslab.figures.save``) and closes it. Conventions (depth
axis, trained models and their bands, facets, readouts): ``biaslab.figures.common``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biaslab.figures.common import (
    MODEL_FACETS,
    SAMPLER_SETTING,
    Bands,
    band_legend,
    depth_axis,
    depth_colors,
    depth_order,
    draw_band,
    draw_models,
    facet_title,
    fraction_colors,
    fraction_legend,
    groups,
    learned_by,
    metric_rows,
    no_data,
    pick_backbone,
    present,
    readout,
    readout_label,
    replicate_summary,
    replicate_values,
    select,
    varying,
    yerr,
)
from biaslab.figures.tables import knn_rows
from biaslab.sampling.registry import setting_label

__all__ = ["fig_knn_vs_k", "fig_minority_vs_depth"]

#: The groups of a Fig. 4 line: one point per (minority fraction, depth).
_BY = ["minority_fraction", "depth"]
#: Model points sit this far right of their depth, beside the bar of the mean.
_DODGE = 0.1


# --------------------------------------------------------------------------------------------
# Fig. 4: % minority generated and diversity vs depth
# --------------------------------------------------------------------------------------------
@dataclass
class _Fig4Data:
    """The metric rows Fig. 4 reads (the share: its robust readout, ``common.readout``), and
    the LPIPS backbone chosen."""

    share: pd.DataFrame
    share_metric: str
    lpips: pd.DataFrame
    conf: pd.DataFrame
    train: pd.DataFrame
    backbone: str | None

    @classmethod
    def of(cls, metrics: pd.DataFrame, lpips_backbone: str | None) -> _Fig4Data:
        lpips, backbone = pick_backbone(metric_rows(metrics, "diversity_lpips"), lpips_backbone)
        share_metric = readout(metrics, "minority_share")
        return cls(
            share=metric_rows(metrics, share_metric),
            share_metric=share_metric,
            lpips=lpips,
            conf=metric_rows(metrics, "confident_share"),
            train=metric_rows(metrics, "training_minority_share"),
            backbone=backbone,
        )


@dataclass
class _Fig4Row:
    """One row of panels: its rows of each metric, and the bands drawn on each panel."""

    key: dict[str, Any]
    share: pd.DataFrame
    lpips: pd.DataFrame
    conf_rep: pd.DataFrame | None  # confident_share per model
    conf_mean: pd.DataFrame | None  # ... and its mean over models
    x_of: dict[str, int]
    threshold: float
    share_bands: Bands = field(default_factory=lambda: Bands("bars"))
    lpips_bands: Bands = field(default_factory=lambda: Bands("bars"))

    @classmethod
    def of(cls, data: _Fig4Data, key: dict[str, Any], x_of, threshold: float) -> _Fig4Row:
        share, lpips, conf = (select(rows, key) for rows in (data.share, data.lpips, data.conf))
        conf_rep = replicate_values(conf, _BY) if not conf.empty else None
        conf_mean = replicate_summary(conf_rep, _BY) if conf_rep is not None else None
        return cls(key, share, lpips, conf_rep, conf_mean, x_of, threshold)

    def summary(self, rows: pd.DataFrame, bounds=None):
        """(per-model values, their summary in depth order, its x positions)."""
        rep = replicate_values(rows, _BY)
        summ = replicate_summary(rep, _BY, bounds=bounds)
        summ = summ.sort_values("depth", key=lambda s: s.map(self.x_of))
        return rep, summ, summ["depth"].map(self.x_of).to_numpy(dtype=float)


def _errorbar(ax, xs, ys, summ: pd.DataFrame, color, label: str, scale: float = 1.0) -> None:
    """The mean over models, bold, with its interval as bars (none where there is none)."""
    err = yerr(summ, scale) if np.isfinite(summ["lo"].to_numpy(float)).any() else None
    ax.errorbar(
        xs, ys, yerr=err, color=color, marker="o", capsize=3, linewidth=2, zorder=3, label=label
    )


def _draw_share(ax, row: _Fig4Row, frac: float, color) -> bool:
    """Left panel, one fraction: the mean % minority over models vs depth (bars: its band);
    hollow where the classifier is not confident or the probe says not learned; each model a
    faint point. Whether any point is hollow."""
    sub = row.share[row.share["minority_fraction"] == frac]
    if sub.empty:
        return False
    rep, summ, xs = row.summary(sub, bounds=(0.0, 1.0))
    row.share_bands.add(summ)
    ys = 100 * summ["mean"].to_numpy(dtype=float)
    _errorbar(ax, xs, ys, summ, color, fraction_legend(frac), scale=100)
    low = ~learned_by(sub, "depth", summ["depth"])  # the probe: not learned
    if row.conf_mean is not None:
        cm = summ[_BY].merge(row.conf_mean, on=_BY, how="left")["mean"].to_numpy(float)
        low |= np.isfinite(cm) & (cm < row.threshold)
    if low.any():
        ax.scatter(
            xs[low], ys[low], s=60, facecolors="white", edgecolors=[color], linewidths=1.5, zorder=4
        )
    _draw_share_models(ax, row, rep, color)
    return bool(low.any())


def _draw_share_models(ax, row: _Fig4Row, rep: pd.DataFrame, color) -> None:
    """Each model's % minority as a faint point, hollow when it is not confident."""
    rlow = np.zeros(len(rep), dtype=bool)
    if row.conf_rep is not None:
        on = [
            c for c in rep.columns if c in row.conf_rep and c not in ("value", "ci_low", "ci_high")
        ]
        rc = rep[on].merge(row.conf_rep, on=on, how="left")["value"].to_numpy(float)
        rlow = np.isfinite(rc) & (rc < row.threshold)
    xs = rep["depth"].map(row.x_of).to_numpy(dtype=float)
    draw_models(ax, xs, 100 * rep["value"].to_numpy(dtype=float), color, hollow=rlow, dodge=_DODGE)


def _draw_training_share(ax, train: pd.DataFrame, key: dict, frac: float, color) -> None:
    """Dashed line at the actual training share (the configured fraction if not measured)."""
    data_key = {c: key[c] for c in key if c in ("dataset", "source", "resolution")}
    tr = select(train, {**data_key, "minority_fraction": frac}, null_matches=True)
    ref = float(tr["value"].mean()) if not tr.empty else float(frac)
    ax.axhline(100 * ref, color=color, linestyle="--", linewidth=1, alpha=0.8)


def _draw_diversity(ax, row: _Fig4Row, frac: float, color) -> None:
    """Right panel, one fraction: the mean LPIPS diversity over models vs depth, each model a
    faint point."""
    sub = row.lpips[row.lpips["minority_fraction"] == frac]
    if sub.empty:
        return
    rep, summ, xs = row.summary(sub, bounds=(0.0, np.inf))
    row.lpips_bands.add(summ)
    _errorbar(ax, xs, summ["mean"].to_numpy(dtype=float), summ, color, fraction_legend(frac))
    rx = rep["depth"].map(row.x_of).to_numpy(dtype=float)
    draw_models(ax, rx, rep["value"].to_numpy(dtype=float), color, dodge=_DODGE)


def _finish_fig4_row(ax_s, ax_d, row: _Fig4Row, data: _Fig4Data, depths, any_hollow) -> None:
    """Axes, titles, "no data" notes and legends of one row of Fig. 4."""
    title = facet_title(row.key)
    for ax in (ax_s, ax_d):
        depth_axis(ax, depths)
        ax.grid(alpha=0.3)
    ax_s.set_ylabel(readout_label(data.share_metric))
    ax_s.set_title(f"minority share — {title}" if title else "minority share", fontsize=10)
    lpips = "diversity (mean pairwise LPIPS" + (f", {data.backbone})" if data.backbone else ")")
    ax_d.set_ylabel(lpips)
    ax_d.set_title(f"diversity — {title}" if title else "diversity", fontsize=10)
    if row.share.empty:
        no_data(ax_s, f"no {data.share_metric} rows")
    if row.lpips.empty:
        no_data(ax_d, "no diversity_lpips rows")
    extra = [(Line2D([], [], color="0.3", linestyle="--"), "actual training share")]
    if any_hollow:
        hollow = Line2D([], [], color="0.3", marker="o", linestyle="none", markerfacecolor="white")
        extra.append(
            (hollow, f"hollow: confident share < {row.threshold:.0%} or probe: not learned")
        )
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "fontsize": 8}
    band_legend(ax_s, row.share_bands, extra, ncol=2, **below)  # below: it hides no line
    if not row.lpips.empty:
        band_legend(ax_d, row.lpips_bands, ncol=2, **below)


def fig_minority_vs_depth(
    metrics: pd.DataFrame,
    *,
    confident_share_min: float = 0.9,
    lpips_backbone: str | None = None,
) -> Figure:
    """Paper Fig. 4: percentage of minority samples generated, and sample diversity, vs depth.

    Left panel: the % minority among the samples the classifier recognises
    (``minority_share_confident``; ``minority_share`` of all samples in tables without it,
    as the axis label says) vs depth, one line per configured minority fraction (legend "10%
    minority in training"), with a dashed horizontal line of the same colour at the *actual*
    training share (``training_minority_share``, mean over matching rows; the configured
    fraction if that metric is absent). Right panel: ``diversity_lpips`` (mean pairwise
    LPIPS) vs depth for the backbone ``lpips_backbone`` (default: the first by name), named in
    the y label.

    One row of the two panels per sampler setting ``(sampler, steps, eta)`` -- and per value of
    any other grid column that varies (dataset, objective, width, sample seed, ...) -- titled
    with it.

    Trained models (``train_seed``): each is a faint point, the line their mean; the bars are
    the 95% t-interval over the models when there are two or more, that one model's sampling
    interval (exact, Clopper-Pearson, for the share; none for LPIPS) when there is one; the
    legend names which (``common.Bands``).

    Points whose mean ``confident_share`` is below ``confident_share_min`` (config
    ``figures.confident_share_min``; the per-sample cut-off of ``confident_share`` itself is
    ``metrics.confidence_threshold``) are drawn hollow (model points likewise, by their own
    share), with a note in the legend: too few of those samples are recognised to read a share.
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

    fig, axes = plt.subplots(len(keys), 2, figsize=(12, 5.2 * len(keys)), squeeze=False)
    for (ax_s, ax_d), key in zip(axes, keys, strict=True):
        row = _Fig4Row.of(data, key, x_of, confident_share_min)
        any_hollow = False
        for frac in fractions:
            any_hollow |= _draw_share(ax_s, row, frac, colors[frac])
            _draw_training_share(ax_s, data.train, key, frac, colors[frac])
            _draw_diversity(ax_d, row, frac, colors[frac])
        _finish_fig4_row(ax_s, ax_d, row, data, depths, any_hollow)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Table 3 as a figure: kNN similarity vs k
# --------------------------------------------------------------------------------------------
def _draw_knn_panel(ax, sub: pd.DataFrame, depths, colors, ks_all, name, backbone, title) -> None:
    """One kNN panel: a line per depth, the mean over models with its band, each model a faint
    point; the legend names the band."""
    bands = Bands()
    for d in depths:
        dd = sub[sub["depth"] == d]
        if dd.empty:
            continue
        rep = replicate_values(dd, ["k"])
        rep = rep.drop(columns=["ci_low", "ci_high"], errors="ignore")
        summ = replicate_summary(rep, ["k"]).sort_values("k")
        bands.add(summ)
        draw_band(ax, summ["k"], summ, colors[d], label=f"depth {d}")
        draw_models(ax, rep["k"].to_numpy(dtype=float), rep["value"], colors[d])
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
        band_legend(ax, bands, fontsize=8)


def fig_knn_vs_k(
    metrics: pd.DataFrame, *, setting: tuple | None = None, backbone: str | None = None
) -> Figure:
    """Paper Table 3 as a figure: kNN similarity to the training set vs k, one line per depth.

    Left: ``knn_cosine`` (feature-space cosine similarity, averaged over the k nearest training
    images; higher = closer to memorization). Right: ``knn_l2`` (pixel Euclidean distance; lower
    = closer). Lines are coloured by depth (viridis, in ``DEPTH_ORDER``); each is the mean over
    the trained models, each model a faint point, with the 95% t-interval over them as a band
    when there are two or more (one model: no interval; the legend says which). Only one
    sampler setting is shown (``setting`` or the first in sorted order, named in the title);
    one row of panels per minority fraction (and per other varying grid facet).
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
