"""What the model knows (``biaslab.evaluation.probe``): the bias attribute (or, without one, the
minority class) recovered from noised training images vs the noise level, a line per depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.figures.common import (
    Bands,
    band_legend,
    depth_colors,
    depth_order,
    draw_band,
    draw_models,
    fraction_legend,
    groups,
    is_conditional,
    replicate_summary,
)
from biaslab.stats.intervals import proportion_interval

#: The curve each panel draws: the bias attribute where the family has one, else the
#: minority class.
CURVES = ("attribute_accuracy", "minority_accuracy")
#: The x-axis: ``biaslab.evaluation.probe`` noises every model, whatever its objective, to timestep
#: t of its DDPM training schedule (``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``).
T_LABEL = "noise level: timestep t of the model's DDPM schedule (x_t of every objective)"


def with_share_interval(rows: pd.DataFrame, value: str = "value", n: str = "n") -> pd.DataFrame:
    """``rows`` with ``ci_low`` / ``ci_high``: each share's exact sampling interval
    (``stats.intervals.proportion_interval`` of ``round(value * n)`` out of ``n``; NaN without
    ``n``)."""
    vals = rows[value].to_numpy(dtype=float)
    counts = rows[n].to_numpy(dtype=float) if n in rows else np.full(len(rows), np.nan)
    ci = [
        proportion_interval(round(v * c), int(c)) if np.isfinite(v) and c > 0 else (np.nan,) * 2
        for v, c in zip(vals, counts, strict=True)
    ]
    lo, hi = zip(*ci, strict=True) if ci else ((), ())
    return rows.assign(ci_low=np.asarray(lo, dtype=float), ci_high=np.asarray(hi, dtype=float))


def _title(key: dict, sub: pd.DataFrame, metric: str) -> str:
    head = f"{key['dataset']}, {fraction_legend(key['minority_fraction'], is_conditional(sub))}"
    if "objective" in key:
        head += f", {key['objective']}"
    start = sub[sub.metric == "start_rho"]
    if len(start):
        lines = ", ".join(
            f"d{r.depth}: {r.value:.2f}" for r in start.itertuples() if pd.notna(r.value)
        )
        head += f"\nrho at the start of sampling ({lines})"
    return head + ("" if metric == "attribute_accuracy" else "\n(minority class recovered)")


def _draw_panel(ax, rows: pd.DataFrame, colors) -> Bands:
    """A line per depth: each model faint, the mean over models bold with its band; dashed
    where the probe's verdict is "not learned"."""
    bands = Bands()
    for depth in depth_order(rows["depth"]):
        d = with_share_interval(rows[rows.depth.astype(str) == depth])
        s = replicate_summary(d, ["t"], bounds=(0.0, 1.0))
        bands.add(s)
        learned = bool(d["learned"].all())
        label = f"depth {depth}" + ("" if learned else " (not learned)")
        draw_band(
            ax, s["t"], s, colors[depth], scale=100, linestyle="-" if learned else "--", label=label
        )
        draw_models(ax, d["t"], 100 * d["value"], colors[depth])
    return bands


def fig_probe(probe: pd.DataFrame) -> Figure:
    """One panel per (dataset, training skew, and objective when several):
    ``attribute_accuracy`` (coloured MNIST's background colour, BFFHQ's gender) or, where the
    class is the bias (MNIST 6 vs 9, CelebA), ``minority_accuracy`` of the x0 predicted from
    training images noised to timestep ``t`` of the model's DDPM schedule, vs ``t``; a line
    per depth: each trained model a faint point, the mean over models bold with its band (the
    95% t-interval over models with two or more; one model's exact sampling interval over its
    probed images with one; the legend says which), dashed where the probe's verdict is "not
    learned". Titles give the model's own rho from pure noise (conditional)."""
    probe = probe.copy()
    for col in ("rho_data",):
        if col not in probe:
            probe[col] = float("nan")
    keys = ["dataset", "minority_fraction"]
    if "objective" in probe and probe["objective"].nunique() > 1:
        keys.append("objective")
    panels = list(groups(probe, keys))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.1 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    colors = depth_colors(depth_order(probe["depth"]))
    for ax, (key, sub) in zip(axes.flat, panels, strict=False):
        metric = next(m for m in CURVES if (sub.metric == m).any())
        bands = _draw_panel(ax, sub[sub.metric == metric], colors)
        ax.set_xlabel(T_LABEL, fontsize=8)
        ax.set_ylabel(f"% {metric.replace('_', ' ')}")
        ax.set_ylim(-2, 102)
        ax.set_title(_title(key, sub, metric), fontsize=9)
        band_legend(ax, bands, fontsize=7)
    fig.tight_layout()
    return fig
