"""Figures of the mechanistic debiasing (DiffLens, ``biaslab.difflens``).

* ``fig_fd_vs_intervention`` - Fairness Discrepancy (to uniform and to the training
  distribution), % minority and FID vs the SAE intervention ratio, a line per depth;
* ``fig_difflens_probes`` - the per-timestep linear probes' held-out accuracy vs the DDPM
  timestep, a line per depth;
* ``fig_difflens_gallery`` - per model, the captured images that most activate each class's
  top located features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..grid import setting_label
from .common import (
    depth_colors,
    depth_order,
    fraction_legend,
    groups,
    hollow_unlearned,
    learned_by,
    no_data,
    replicate_summary,
)
from .sampler import draw_frontier_panel
from .tables import cell_table

__all__ = [
    "fig_bias_quality_frontier",
    "fig_difflens_gallery",
    "fig_difflens_probes",
    "fig_fd_vs_intervention",
    "intervention_sweeps",
]

#: The knobs a sweep holds fixed (everything but the intervention's own).
_BASE = (
    "sampler",
    "steps",
    "eta",
    "s_churn",
    "guidance",
    "bypass",
    "bypass_schedule",
    "timestep_spacing",
)
_PANELS = (
    ("fd", "Fairness Discrepancy (95% CI)", 1.0),
    ("fd_training", "FD to the training distribution", 1.0),
    ("minority_share", "% minority / bias-conflicting generated (95% CI)", 100.0),
    ("fid", "FID (held-out real images)", 1.0),
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


def _draw(ax, g: pd.DataFrame, metric: str, scale: float) -> None:
    styles = ["-", "--", ":", "-."]
    depths = depth_order(g["depth"])
    colors = depth_colors(depths)
    fractions = sorted(g["minority_fraction"].unique())
    conditional = "rho_data" in g and bool(g["rho_data"].notna().any())
    drawn = False
    for d in depths:
        for i, frac in enumerate(fractions):
            gd = g[(g["depth"] == d) & (g["minority_fraction"] == frac)]
            if gd.empty or metric not in gd or gd[metric].isna().all():
                continue
            s = replicate_summary(
                gd.dropna(subset=[metric]),
                ["intervene"],
                value=metric,
                lo=f"{metric}_lo",
                hi=f"{metric}_hi",
            )
            x = s["intervene"].to_numpy(dtype=float)
            y = scale * s["mean"].to_numpy(dtype=float)
            ax.plot(
                x,
                y,
                marker="o",
                color=colors[d],
                linestyle=styles[i % len(styles)],
                label=f"depth {d}, {fraction_legend(frac, conditional)}",
            )
            hollow_unlearned(ax, x, y, learned_by(gd, "intervene", x), colors[d])
            if s["lo"].notna().any():
                ax.fill_between(
                    x, scale * s["lo"], scale * s["hi"], color=colors[d], alpha=0.12, lw=0
                )
            drawn = True
    if not drawn:
        no_data(ax, f"no {metric} rows")
    if metric == "minority_share" and "training_minority_share" in g:
        for share in g.groupby("minority_fraction")["training_minority_share"].mean():
            ax.axhline(100 * share, color="0.5", linestyle=":", linewidth=0.9)
    if metric in ("fd", "fd_training"):
        ax.axhline(0, color="0.6", linewidth=0.8)


def fig_fd_vs_intervention(metrics: pd.DataFrame) -> Figure:
    """FD (to uniform), FD to the training distribution, % minority and FID vs the SAE
    intervention ratio (1 = off). One row of panels per (dataset, sampler setting,
    intervention mode); lines coloured by depth, styled by training minority fraction; hollow
    markers where the probe says the model did not learn its skew."""
    cells = cell_table(metrics)
    rows = intervention_sweeps(cells) if "intervene" in cells else []
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no SAE intervention in this grid (grid rows with intervene != 1)")
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(
        len(rows), len(_PANELS), figsize=(4.4 * len(_PANELS), 3.7 * len(rows)), squeeze=False
    )
    for r, (key, g) in enumerate(rows):
        for c, (metric, ylabel, scale) in enumerate(_PANELS):
            ax = axes[r, c]
            _draw(ax, g, metric, scale)
            ax.set_xlabel("intervention ratio (1 = off)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.set_title(
                f"{key['dataset']} | {setting_label(key)} | {key['intervene_mode']}", fontsize=9
            )
        axes[r, 0].legend(fontsize=7)
    fig.suptitle("Mechanistic debiasing: SAE features of the mid-block scaled toward the target")
    fig.tight_layout()
    return fig


def fig_difflens_probes(
    probes: pd.DataFrame, panels: Sequence[str] = ("dataset", "minority_fraction")
) -> Figure:
    """Held-out accuracy of the per-timestep linear probes on h (the attribute of the final
    image) vs the DDPM timestep of the network call, one panel per (dataset, skew), a line per
    depth (mean over training seeds)."""
    keys = [k for k in panels if k in probes]
    parts = list(groups(probes, keys))
    ncols = min(3, max(len(parts), 1))
    nrows = max(-(-len(parts) // ncols), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.6 * nrows), squeeze=False)
    if not parts:
        no_data(axes[0, 0], "no DiffLens probes")
    for ax in axes.flat[len(parts) :]:
        ax.set_visible(False)
    colors = depth_colors(depth_order(probes["depth"]))
    for ax, (key, sub) in zip(axes.flat, parts, strict=False):
        for depth in depth_order(sub["depth"]):
            d = sub[sub["depth"].astype(str) == depth]
            s = d.groupby("t", sort=True)["probe_accuracy"].mean()
            ax.plot(
                s.index, 100 * s.to_numpy(), marker="o", color=colors[depth], label=f"depth {depth}"
            )
        chance = 100 * np.max(
            [sub[c].mean() for c in sub if c.startswith("capture_share_")] or [np.nan]
        )
        if np.isfinite(chance):
            ax.axhline(
                chance, color="0.5", linestyle=":", linewidth=0.9, label="majority-class rate"
            )
        ax.invert_xaxis()
        ax.set_xlabel("DDPM timestep of the network call (sampling runs right to left)")
        ax.set_ylabel("% probe accuracy (held out)")
        ax.set_ylim(0, 102)
        ax.set_title(", ".join(f"{k} {v}" for k, v in key.items()), fontsize=9)
        ax.legend(fontsize=8)
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
    per (class, feature), its images left to right by peak activation (``difflens.gallery``)."""
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


def fig_bias_quality_frontier(metrics: pd.DataFrame) -> Figure:
    """The bias-quality frontier with FID as the quality axis (``fig_bias_diversity_frontier``
    keeps the diversity version): every cell (every knob, intervention ratio, depth and seed)
    as a point, x = FID against held-out real images (lower = better), y = bias amplification
    in percentage points; the line joins the cells no other cell beats on both. One panel per
    (dataset, training minority fraction); colour: sampler, marker: depth; hollow where the
    probe says the model did not learn its skew."""
    cells = cell_table(metrics)
    if "fid" not in cells:
        cells = cells.iloc[0:0]
    cells = cells.dropna(subset=[c for c in ("amplification", "fid") if c in cells])
    if cells.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no cells with both amplification and fid")
        ax.set_axis_off()
        return fig
    cells = cells.assign(bias_pp=100 * cells["amplification"])
    panels = list(groups(cells, ["dataset", "minority_fraction"]))
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 4.6 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    cmap = plt.get_cmap("tab10")
    color = {s: cmap(i % 10) for i, s in enumerate(sorted(cells["sampler"].unique()))}
    markers = dict(zip(depth_order(cells["depth"]), "osD^vP*X", strict=False))
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        draw_frontier_panel(ax, g.reset_index(drop=True), color, markers, x="fid")
        ax.axhline(0, color="0.5", linestyle=":", linewidth=0.9)
        ax.set_xlabel("FID vs held-out real images (classifier features, lower = better)")
        ax.set_ylabel("bias amplification (pp, lower = less biased)")
        ax.set_title(
            f"{key['dataset']}, minority fraction {key['minority_fraction']:g}", fontsize=9
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("Bias vs image quality (FID) across every knob, depth and skew")
    fig.tight_layout()
    return fig
