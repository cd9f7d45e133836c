"""Figures of the mechanistic debiasing (DiffLens, ``biaslab.difflens.steps``).

* ``fig_fd_vs_intervention`` - Fairness Discrepancy (to uniform and to the training
  distribution), % minority among recognised samples and the classifier-feature FID
  (``fid_classifier``) vs the SAE intervention ratio, a line per depth;
* ``fig_difflens_probes`` - the per-call linear probes' held-out accuracy vs the noise level
  of the network call (DDPM timestep; sigma for EDM models), a line per depth;
* ``fig_difflens_gallery`` - per model, the captured images that most activate each class's
  top located features.

The bias-quality frontier (``fig_bias_quality_frontier``) is in ``biaslab.figures.frontier``.
Each trained model is a faint point; the line is their mean with its band (the 95% t-interval
over the models with two or more, one model's sampling interval with one; the legend names
which: ``common.Bands``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.base.columns import KNOB_COLUMNS, UNTREATED
from biaslab.figures.common import (
    Bands,
    band_legend,
    depth_colors,
    depth_order,
    draw_band,
    draw_models,
    fraction_legend,
    groups,
    hollow_unlearned,
    is_conditional,
    learned_by,
    legend_below,
    no_data,
    readout,
    readout_label,
    replicate_summary,
)
from biaslab.figures.probe import with_share_interval
from biaslab.figures.tables import cell_table
from biaslab.sampling.registry import setting_label

__all__ = [
    "fig_difflens_gallery",
    "fig_difflens_probes",
    "fig_fd_vs_intervention",
    "intervention_sweeps",
]

#: The knobs a sweep holds fixed (everything but the intervention's own).
_BASE = tuple(k for k in KNOB_COLUMNS if k not in UNTREATED["intervene"])
#: (metric, y label, scale, the range it lives in); the minority share: its robust readout.
_PANELS = (
    ("fd", "Fairness Discrepancy to uniform (0 = balanced)", 1.0, (0.0, np.inf)),
    ("fd_training", "FD to the training distribution", 1.0, (0.0, np.inf)),
    ("minority_share", "", 100.0, (0.0, 1.0)),
    ("fid_classifier", "FID in classifier features (held-out real images)", 1.0, (0.0, np.inf)),
)


def intervention_sweeps(cells: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Per (dataset, base setting, intervention mode) with an intervened cell: those cells
    and the unintervened cells (ratio 1) of the same setting on the same models."""
    base = [c for c in _BASE if c in cells]
    off = cells[cells["intervene"] == 1]
    out = []
    on = cells[cells["intervene"] != 1]
    for key, g in on.groupby(["dataset", *base, "intervene_mode"], sort=True, dropna=False):
        key = dict(zip(["dataset", *base, "intervene_mode"], key, strict=True))
        z = off
        for k in ["dataset", *base]:
            z = z[(z[k] == key[k]) | (z[k].isna() & pd.isna(key[k]))]
        models = g[["minority_fraction", "depth"]].drop_duplicates()
        z = z.merge(models, on=["minority_fraction", "depth"])
        out.append((key, pd.concat([z, g], ignore_index=True)))
    return out


def _draw(ax, g: pd.DataFrame, metric: str, scale: float, bounds, bands: Bands) -> None:
    """``metric`` vs the intervention ratio, a line per (depth, training skew): each model a
    faint point, the mean over models bold with its band (added to ``bands``)."""
    styles = ["-", "--", ":", "-."]
    depths = depth_order(g["depth"])
    colors = depth_colors(depths)
    fractions = sorted(g["minority_fraction"].unique())
    drawn = False
    for d in depths:
        for i, frac in enumerate(fractions):
            gd = g[(g["depth"] == d) & (g["minority_fraction"] == frac)]
            if gd.empty or metric not in gd or gd[metric].isna().all():
                continue
            drawn = True
            gd = gd.dropna(subset=[metric])
            lo, hi = f"{metric}_lo", f"{metric}_hi"
            s = replicate_summary(gd, ["intervene"], value=metric, lo=lo, hi=hi, bounds=bounds)
            bands.add(s)
            x = s["intervene"].to_numpy(dtype=float)
            label = f"depth {d}, {fraction_legend(frac, is_conditional(gd))}"
            style = {"linestyle": styles[i % len(styles)], "label": label}
            draw_band(ax, x, s, colors[d], scale=scale, **style)
            draw_models(ax, gd["intervene"], scale * gd[metric], colors[d])
            y = scale * s["mean"].to_numpy(dtype=float)
            hollow_unlearned(ax, x, y, learned_by(gd, "intervene", x), colors[d])
    if not drawn:
        no_data(ax, f"no {metric} rows")
    if metric.startswith("minority_share") and "training_minority_share" in g:
        for share in g.groupby("minority_fraction")["training_minority_share"].mean():
            ax.axhline(100 * share, color="0.5", linestyle=":", linewidth=0.9)
    if metric in ("fd", "fd_training"):
        ax.axhline(0, color="0.6", linewidth=0.8)


def fig_fd_vs_intervention(metrics: pd.DataFrame) -> Figure:
    """FD (to uniform), FD to the training distribution, % minority among recognised samples
    (``minority_share_confident``; all samples in tables without it) and ``fid_classifier`` vs
    the SAE intervention ratio (1 = off). One row of panels per (dataset, sampler setting,
    intervention mode); lines coloured by depth, styled by training skew; each trained model
    a faint point, the mean over models bold with its band (named in the legend below);
    hollow markers where the probe says the model did not learn its skew."""
    cells = cell_table(metrics)
    rows = intervention_sweeps(cells) if "intervene" in cells else []
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no SAE intervention in this grid (grid rows with intervene != 1)")
        ax.set_axis_off()
        return fig
    share = readout(cells, "minority_share")
    fig, axes = plt.subplots(
        len(rows), len(_PANELS), figsize=(4.4 * len(_PANELS), 4.2 * len(rows)), squeeze=False
    )
    bands = Bands()
    for r, (key, g) in enumerate(rows):
        for c, (metric, ylabel, scale, bounds) in enumerate(_PANELS):
            ax = axes[r, c]
            if metric == "minority_share":
                metric, ylabel = share, readout_label(share, is_conditional(g))
            _draw(ax, g, metric, scale, bounds, bands)
            ax.set_xlabel("intervention ratio (1 = off)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.set_title(
                f"{key['dataset']} | {setting_label(key)} | {key['intervene_mode']}", fontsize=9
            )
    fig.suptitle("Mechanistic debiasing: SAE features of the mid-block scaled toward the target")
    legend_below(fig, bands)
    return fig


def _call_axis(objective: str | None):
    """How a probe's recorded ``t`` (the network's timestep input) is drawn: ``(x of t, x
    label, x scale)``. DDPM-scale objectives get their timestep; an EDM model's input is
    ``EDM_TIMESTEP_SCALE * ln(sigma) / 4`` (``biaslab.models.objectives``), drawn as sigma."""
    if objective == "edm":
        from biaslab.models.objectives import EDM_TIMESTEP_SCALE

        def sigma(t):
            return np.exp(4.0 * np.asarray(t, dtype=float) / EDM_TIMESTEP_SCALE)

        label = "noise level σ of the network call (EDM model, log axis)"
        return sigma, label + "\nsampling runs left to right", "log"
    label = "DDPM timestep of the network call\nsampling runs left to right"
    return (lambda t: np.asarray(t, dtype=float)), label, "linear"


def _draw_probe_panel(ax, sub: pd.DataFrame, colors) -> Bands:
    """A line per depth: each model's held-out accuracy faint, their mean bold with its band
    (one model: the sampling interval over its ``n_test`` held-out samples)."""
    objective = str(sub["objective"].iloc[0]) if "objective" in sub else None
    x_of, xlabel, xscale = _call_axis(objective)
    rows = with_share_interval(sub, "probe_accuracy", "n_test")
    bands = Bands()
    for depth in depth_order(rows["depth"]):
        d = rows[rows["depth"].astype(str) == depth]
        s = replicate_summary(d, ["t"], value="probe_accuracy", bounds=(0.0, 1.0))
        bands.add(s)
        draw_band(ax, x_of(s["t"]), s, colors[depth], scale=100, label=f"depth {depth}")
        draw_models(ax, x_of(d["t"]), 100 * d["probe_accuracy"], colors[depth])
    shares = [sub[c].mean() for c in sub if c.startswith("capture_share_")]
    if shares and np.isfinite(np.max(shares)):
        ax.axhline(
            100 * np.max(shares),
            color="0.5",
            linestyle=":",
            linewidth=0.9,
            label="majority-class rate",
        )
    ax.set_xscale(xscale)
    ax.invert_xaxis()
    ax.set_xlabel(xlabel)
    return bands


def fig_difflens_probes(
    probes: pd.DataFrame, panels: Sequence[str] = ("dataset", "minority_fraction")
) -> Figure:
    """Held-out accuracy of the per-call linear probes on h (the attribute of the final image)
    vs the noise level of the network call: its DDPM timestep, or sigma for an EDM model (whose
    timestep input is ``250 ln sigma``); one panel per (dataset, skew, and objective when
    several), a line per depth: each trained model faint, the mean over models bold with its
    band (named in the legend)."""
    keys = [k for k in panels if k in probes]
    if "objective" in probes and probes["objective"].nunique() > 1:
        keys.append("objective")
    parts = list(groups(probes, keys))
    ncols = min(3, max(len(parts), 1))
    nrows = max(-(-len(parts) // ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.9 * nrows), squeeze=False)
    if not parts:
        no_data(axes[0, 0], "no DiffLens probes")
    for ax in axes.flat[len(parts) :]:
        ax.set_visible(False)
    colors = depth_colors(depth_order(probes["depth"]))
    for ax, (key, sub) in zip(axes.flat, parts, strict=False):
        bands = _draw_probe_panel(ax, sub, colors)
        ax.set_ylabel("% probe accuracy (held out)")
        ax.set_ylim(0, 102)
        title = [
            fraction_legend(v, is_conditional(sub)) if k == "minority_fraction" else str(v)
            for k, v in key.items()
        ]
        ax.set_title(" | ".join(title), fontsize=9)
        band_legend(ax, bands, fontsize=7)
    fig.suptitle("What h-space knows: linear probes of the final image's attribute")
    fig.tight_layout()
    return fig


def fig_difflens_gallery(
    images: np.ndarray,
    gallery: np.ndarray,
    features: np.ndarray,
    classes: Sequence[Any],
    title: str = "",
) -> Figure:
    """The captured images that most activate each class's first located SAE features: a row
    per (class, feature), its images left to right by peak activation
    (``difflens.steps.gallery``)."""
    n_classes, n_feat, n_img = gallery.shape
    fig, axes = plt.subplots(
        n_classes * n_feat,
        n_img,
        figsize=(0.9 * n_img + 1.6, 0.9 * n_classes * n_feat + 0.6),
        squeeze=False,
    )
    for c in range(n_classes):
        for r in range(n_feat):
            row = c * n_feat + r
            for j in range(n_img):
                ax = axes[row, j]
                ax.set_xticks([])
                ax.set_yticks([])
                i = gallery[c, r, j]
                if i >= 0:
                    img = images[i]
                    img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
                    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
                else:
                    ax.set_axis_off()
            latent = features[c, r]
            axes[row, 0].set_ylabel(
                f"class {classes[c]}\nfeature {latent}" if latent >= 0 else f"class {classes[c]}",
                fontsize=7,
                rotation=0,
                ha="right",
                va="center",
            )
    fig.suptitle(title or "Images that most activate each class's top SAE features", fontsize=9)
    fig.tight_layout()
    return fig
