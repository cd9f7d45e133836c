"""Diagnostics of the trained models and the training-free toy: the training loss curves and
the Fig. 3 toy of "Deeper Diffusion Models Amplify Bias" (majority share vs abstraction).

Pure functions (tables in, ``Figure`` out); conventions: ``biaslab.figures.common``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from biaslab.base.columns import depth_sort_key, fmt_value
from biaslab.figures.common import (
    depth_colors,
    depth_order,
    fraction_legend,
    groups,
    is_conditional,
    present,
    varying,
)

__all__ = ["fig_loss_curves", "fig_toy"]


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

    One panel per training skew (and per dataset / objective when several), one colour per
    depth (and width, when several): every run (train seed) is drawn raw and faint, and the
    mean over runs at each step is smoothed by a centred moving average of ``window`` logged
    points (default: about 1/20 of the points) and drawn solid. Log-scale y; non-positive
    losses are dropped.
    """
    if log.empty:
        raise ValueError("empty training log")
    log = log.copy()
    log["depth"] = log["depth"].astype(str)
    log = log[np.isfinite(log["loss"].to_numpy(dtype=float)) & (log["loss"] > 0)]
    line_cols = ["depth", *varying(log, ["width"])]
    panels = groups(log, [*varying(log, ["dataset", "objective"]), "minority_fraction"])
    colors = depth_colors(depth_order(log["depth"]))
    widths = sorted(log["width"].unique()) if "width" in line_cols else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (pkey, sub) in zip(axes[0], panels, strict=True):
        _draw_loss_lines(ax, sub, line_cols, colors, widths, window)
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss")
        head = [str(pkey[c]) for c in ("dataset", "objective") if c in pkey]
        skew = fraction_legend(pkey["minority_fraction"], is_conditional(sub))
        ax.set_title(" | ".join([*head, skew]), fontsize=10)
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
    majority share, from ``biaslab.figures.toy.abstraction_curve``. Bottom: a row of small example
    maps, ``examples`` (a pyramid, level 0 first, e.g. ``biaslab.figures.toy.example_pyramid``);
    when None, one is generated deterministically with ``example_share`` / ``example_seed`` at the
    size of level 0 in ``result``.
    """
    from biaslab.figures import toy

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
