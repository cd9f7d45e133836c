"""What the model knows (``biaslab.probe``): the bias attribute (or, without one, the
minority class) recovered from noised training images vs the noise level, a line per depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from .common import depth_colors, depth_order, groups, replicate_summary

#: The curve each panel draws: the bias attribute where the family has one, else the
#: minority class.
CURVES = ("attribute_accuracy", "minority_accuracy")


def _title(key: dict, sub: pd.DataFrame, metric: str) -> str:
    share = "rho_data" if pd.notna(sub["rho_data"]).all() else "minority_fraction"
    head = f"{key['dataset']}, {share.replace('_', ' ')} {sub[share].iloc[0]:g}"
    start = sub[sub.metric == "start_rho"]
    if len(start):
        lines = ", ".join(
            f"d{r.depth}: {r.value:.2f}" for r in start.itertuples() if pd.notna(r.value)
        )
        head += f"\nrho at the start of sampling ({lines})"
    return head + ("" if metric == "attribute_accuracy" else "\n(minority class recovered)")


def fig_probe(probe: pd.DataFrame) -> Figure:
    """One panel per (dataset, training skew): ``attribute_accuracy`` (coloured MNIST's
    background colour, BFFHQ's gender) or, where the class is the bias (MNIST 6 vs 9, CelebA),
    ``minority_accuracy`` of the x0 predicted from training images noised to ``t``, vs ``t``; a
    line per depth (mean over training seeds, ±1 s.e.m. with several), dashed where the probe's
    verdict is "not learned". Titles give the model's own rho from pure noise (conditional)."""
    probe = probe.copy()
    for col in ("rho_data",):
        if col not in probe:
            probe[col] = float("nan")
    panels = list(groups(probe, ["dataset", "minority_fraction"]))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    colors = depth_colors(depth_order(probe["depth"]))
    for ax, (key, sub) in zip(axes.flat, panels, strict=False):
        metric = next(m for m in CURVES if (sub.metric == m).any())
        rows = sub[sub.metric == metric]
        for depth in depth_order(rows["depth"]):
            d = rows[rows.depth == depth]
            s = replicate_summary(d, ["t"])
            learned = bool(d["learned"].all())
            ax.errorbar(
                s["t"],
                100 * s["mean"],
                yerr=[100 * s["err_lo"].fillna(0), 100 * s["err_hi"].fillna(0)],
                color=colors[depth],
                marker="o",
                linestyle="-" if learned else "--",
                label=f"depth {depth}" + ("" if learned else " (not learned)"),
            )
        ax.set_xlabel("noise level t (DDPM timestep)")
        ax.set_ylabel(f"% {metric.replace('_', ' ')}")
        ax.set_ylim(-2, 102)
        ax.set_title(_title(key, sub, metric), fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
