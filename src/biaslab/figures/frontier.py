"""The bias-quality frontiers: every cell (every knob, depth, intervention ratio and trained
model) as a point, x = a quality axis (diversity, or the classifier-feature FID
``fid_classifier``), y = bias amplification in
percentage points on the robust readout (the minority share among the samples the classifier
recognises; ``common.readout``), with the Pareto frontier of the cells no other cell beats on
both."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.figures.common import (
    UNLEARNED_NOTE,
    depth_order,
    fraction_legend,
    groups,
    is_conditional,
    no_data,
    panel_grid,
    readout,
)
from biaslab.figures.tables import cell_table
from biaslab.sampling.registry import setting_label

__all__ = [
    "bias_pp",
    "draw_frontier_panel",
    "fig_bias_diversity_frontier",
    "fig_bias_quality_frontier",
    "pareto_front",
]


def bias_pp(cells: pd.DataFrame) -> tuple[pd.Series, str]:
    """Bias amplification of each cell in percentage points, training minority share minus
    the generated one (``evaluation.metrics.amplification``'s sign: > 0 = amplified), on the robust
    readout (``minority_share_confident``) where the table has it, else ``amplification``
    (all samples); and its axis label."""
    share = readout(cells, "minority_share")
    if share != "minority_share" and "training_minority_share" in cells:
        value = 100 * (cells["training_minority_share"] - cells[share])
        among = "among recognised samples"
    else:
        value = 100 * cells["amplification"]
        among = "all samples"
    label = (
        f"bias amplification, pp (> 0: amplified)\ntraining − generated minority share,\n{among}"
    )
    return value, label


def pareto_front(bias: np.ndarray, diversity: np.ndarray) -> np.ndarray:
    """Indices of the cells no other cell beats on both axes (lower bias amplification and
    higher diversity, at least one strictly), sorted by diversity."""
    bias, diversity = np.asarray(bias, float), np.asarray(diversity, float)
    ok = np.isfinite(bias) & np.isfinite(diversity)
    idx = np.flatnonzero(ok)
    front = []
    for i in idx:
        dominated = (
            (bias[idx] <= bias[i])
            & (diversity[idx] >= diversity[i])
            & ((bias[idx] < bias[i]) | (diversity[idx] > diversity[i]))
        )
        if not dominated.any():
            front.append(i)
    return np.array(sorted(front, key=lambda i: diversity[i]), dtype=np.int64)


def draw_frontier_panel(ax, g: pd.DataFrame, color, markers, x: str = "diversity_lpips") -> None:
    """Every cell as a point (colour: sampler, marker: depth), the Pareto frontier annotated;
    ``x`` the quality axis (higher better, except the FIDs, where lower is)."""
    for (sampler, depth), gs in g.groupby(["sampler", "depth"]):
        learned = (
            gs["probe_learned"].to_numpy(bool)
            if "probe_learned" in gs
            else np.ones(len(gs), dtype=bool)
        )
        for mask, face in ((learned, color[sampler]), (~learned, "white")):
            if mask.any():
                ax.scatter(
                    gs[x][mask],
                    gs["bias_pp"][mask],
                    facecolors=face,
                    edgecolors=[color[sampler]],
                    marker=markers.get(depth, "o"),
                    s=28,
                    alpha=0.8,
                    label=f"{sampler}, depth {depth}"
                    + ("" if face != "white" else " (not learned)"),
                )
    sign = -1.0 if x in ("fid", "fid_classifier") else 1.0
    front = pareto_front(g["bias_pp"].to_numpy(), sign * g[x].to_numpy())
    f = g.iloc[front]
    ax.plot(f[x], f["bias_pp"], color="k", linewidth=1, label="frontier")
    for _, row in f.iterrows():
        ax.annotate(
            setting_label(row.to_dict()) + f" (d{row['depth']})",
            (row[x], row["bias_pp"]),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )


def _frontier_figure(cells: pd.DataFrame, x: str, xlabel: str, title: str) -> Figure:
    """One panel per (dataset, training skew) of ``draw_frontier_panel`` on quality axis
    ``x`` (cells with a bias and an ``x``)."""
    bias, ylabel = bias_pp(cells)
    cells = cells.assign(bias_pp=bias).dropna(subset=["bias_pp", x])
    if cells.empty:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, f"no cells with both a bias readout and {x}")
        ax.set_axis_off()
        return fig
    panels = groups(cells, ["dataset", "minority_fraction"])
    fig, axes = panel_grid(len(panels), ncols=2, size=(6.2, 4.6))
    cmap = plt.get_cmap("tab10")
    color = {s: cmap(i % 10) for i, s in enumerate(sorted(cells["sampler"].unique()))}
    markers = dict(zip(depth_order(cells["depth"]), "osD^vP*X", strict=False))
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        draw_frontier_panel(ax, g.reset_index(drop=True), color, markers, x=x)
        ax.axhline(0, color="0.5", linestyle=":", linewidth=0.9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        skew = fraction_legend(key["minority_fraction"], is_conditional(g))
        ax.set_title(f"{key['dataset']} | {skew}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    if "probe_learned" in cells and not cells["probe_learned"].all():
        title += f"\n({UNLEARNED_NOTE})"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig_bias_diversity_frontier(metrics: pd.DataFrame) -> Figure:
    """Every cell (every knob, depth and trained model) as a point: x = diversity (mean
    pairwise LPIPS), y = bias amplification in percentage points = training minority share -
    generated minority share among recognised samples (``bias_pp``; for coloured MNIST the
    bias-conflicting share, i.e. rho_model - rho_data; 0 = the training bias reproduced, > 0
    = amplified). One panel per (dataset, training skew); the line joins the Pareto frontier
    (no other cell less biased and more diverse), its points annotated with their setting.
    Colour: sampler; marker: depth; hollow where the probe says the model did not learn."""
    cells = cell_table(metrics)
    if "diversity_lpips" not in cells:
        raise ValueError("no cells with diversity_lpips")
    return _frontier_figure(
        cells,
        "diversity_lpips",
        "diversity (mean pairwise LPIPS, higher = more diverse)",
        "Bias vs diversity across every sampler knob, depth and skew",
    )


def fig_bias_quality_frontier(metrics: pd.DataFrame) -> Figure:
    """The bias-quality frontier with the classifier-feature FID (``fid_classifier``, every
    cell has it; not the standard ``fid``) as the quality axis (``fig_bias_diversity_frontier``
    keeps the diversity version): every cell (every knob, intervention ratio, depth and
    trained model) as a point, x = that FID against held-out real images (lower = better), y =
    bias amplification in percentage points among recognised samples (``bias_pp``); the line
    joins the cells no other cell beats on both. One panel per (dataset, training skew);
    colour: sampler, marker: depth; hollow where the probe says the model did not learn its
    skew."""
    cells = cell_table(metrics)
    if "fid_classifier" not in cells:
        cells = cells.assign(fid_classifier=np.nan)
    return _frontier_figure(
        cells,
        "fid_classifier",
        "FID in classifier features vs held-out real images (fid_classifier, lower = better)",
        "Bias vs image quality (FID) across every knob, depth and skew",
    )
