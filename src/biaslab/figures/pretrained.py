"""Figures of the pretrained models (``biaslab.pretrained.models``): Fairness Discrepancy per cell,
and Fig. 6 of "Deeper Diffusion Models Amplify Bias" quantified (the images of different prompts
from one seed, and their CLIP similarity, against the mid-block bypass fraction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.base.columns import KNOB_COLUMNS
from biaslab.figures.common import no_data
from biaslab.figures.same_seed import _as_image
from biaslab.sampling.registry import setting_label

__all__ = ["fig_bypass_grid", "fig_bypass_prompts", "fig_pretrained_fd"]


def _overall(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    return metrics[(metrics["metric"] == metric) & (metrics["prompt_class"] == "all")]


def fig_pretrained_fd(metrics: pd.DataFrame) -> Figure:
    """Fairness Discrepancy (to uniform; per prompt class, then averaged) of every pretrained
    cell, with its bootstrap 95% interval: one panel per (labeller, attribute), a bar per cell,
    grouped by model."""
    fd = _overall(metrics, "fd")
    keys = list(fd.groupby(["labeller", "attribute"], sort=True).groups) if len(fd) else []
    fig, axes = plt.subplots(
        1, max(len(keys), 1), figsize=(max(5.0, 0.5 * len(fd)) * 1.0 + 2, 3.8), squeeze=False
    )
    if not keys:
        no_data(axes[0, 0], "no labelled pretrained cell")
        return fig
    for ax, (lab, attr) in zip(axes.flat, keys, strict=True):
        g = fd[(fd["labeller"] == lab) & (fd["attribute"] == attr)].reset_index(drop=True)
        labels = [f"{r['dataset']}\n{setting_label(r)}" for _, r in g.iterrows()]
        x = np.arange(len(g))
        err = np.vstack([g["value"] - g["ci_low"], g["ci_high"] - g["value"]])
        ax.bar(x, g["value"], yerr=np.clip(err, 0, None), capsize=3, color="tab:purple")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel("FD (0 = uniform)")
        ax.set_title(f"{lab}: {attr}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        "Pretrained models: Fairness Discrepancy per sampler cell\n"
        "(bars: sampling 95% CI, bootstrap over the samples of one pretrained model)"
    )
    fig.tight_layout()
    return fig


def fig_bypass_prompts(metrics: pd.DataFrame, rows: Sequence[Mapping[str, Any]] = ()) -> Figure:
    """Mean CLIP similarity between the images of different prompts from the same seed vs the
    bypassed fraction of the mid-block (``rows``: the bypass study's knob rows), a line per
    text-to-image model with its bootstrap 95% interval over seeds."""
    sim = _overall(metrics, "cross_prompt_similarity")
    if rows:
        knobs = [k for k in KNOB_COLUMNS if k != "bypass"]
        base = {k: rows[0][k] for k in knobs}
        mask = np.logical_and.reduce([sim[k] == v for k, v in base.items()])
        sim = sim[mask & sim["bypass"].isin([r["bypass"] for r in rows])]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    if sim.empty:
        no_data(ax, "no bypass study (pretrained.bypass_study) with a CLIP labeller")
        return fig
    for name, g in sim.groupby("dataset", sort=True):
        g = g.sort_values("bypass")
        ax.plot(g["bypass"], g["value"], marker="o", label=str(name))
        ax.fill_between(g["bypass"], g["ci_low"], g["ci_high"], alpha=0.2)
    ax.fill_between([], [], [], color="0.5", alpha=0.3, label="band: bootstrap 95% CI over seeds")
    ax.set_xlabel("mid-block bypass fraction p")
    ax.set_ylabel("CLIP similarity across prompts, same seed")
    ax.set_title("Fig. 6 quantified: do the prompts still matter?", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fig_bypass_grid(
    samples: Mapping[float, Mapping[str, np.ndarray]],
    classes: Sequence[str],
    n_seeds: int = 2,
) -> Figure:
    """Fig. 6 of the depth paper: one row per (seed, prompt class), one column per bypass
    fraction; the images of a row pair start from the same noise."""
    fractions = sorted(samples)
    first = samples[fractions[0]]
    labels = np.asarray(first["labels"])
    n_classes = max(len(classes), 1)
    per_class = len(labels) // n_classes
    seeds = min(int(n_seeds), per_class)
    tiles = [(j, c) for j in range(seeds) for c in range(n_classes)]
    fig, axes = plt.subplots(
        len(tiles),
        len(fractions),
        figsize=(1.4 * len(fractions) + 1.2, 1.4 * len(tiles)),
        squeeze=False,
    )
    for r, (j, c) in enumerate(tiles):
        for col, p in enumerate(fractions):
            ax = axes[r, col]
            idx = c * per_class + j
            img, cmap = _as_image(samples[p]["images"][idx])
            ax.imshow(img, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"p = {p:g}", fontsize=8)
            if col == 0:
                name = classes[c] if classes else ""
                ax.set_ylabel(f"seed {j}\n{name}", fontsize=7)
    fig.suptitle("Mid-block bypass: same seed, different prompts")
    fig.tight_layout()
    return fig
