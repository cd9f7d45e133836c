"""The effect of each knob: a forest plot of the run's paired contrasts
(``biaslab.stats.contrasts``), each model faint and the across-model mean bold with its named
band."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.figures.common import fraction_legend, no_data
from biaslab.sampling.registry import setting_label
from biaslab.stats.intervals import BETWEEN_MODELS

#: The readout the forest plot shows: the minority (bias-conflicting) share among samples the
#: classifier recognises in both cells of a pair.
FOREST_METRIC = "minority_share_confident"


def _row_labels(rows: pd.DataFrame) -> list[str]:
    """``biased_mnist rho_data 0.8, depth 2: guidance 0 -> 3 | ddim, 10 steps``: the family, the
    contrast and the rest of the sampler setting (``sampling.registry.setting_label``, the varied
    knob left out)."""
    labels = []
    for r in rows.to_dict("records"):
        conditional = pd.notna(r.get("rho_data"))
        head = f"{r['dataset']} {fraction_legend(r['minority_fraction'], conditional)}"
        if r["vary"] != "depth":
            head += f", depth {r['depth']}"
        setting = setting_label({k: v for k, v in r.items() if k != r["vary"]})
        labels.append(f"{head}: {r['vary']} {r['from_value']} -> {r['to_value']} | {setting}")
    return labels


def fig_knob_effects(contrasts: pd.DataFrame, metric: str = FOREST_METRIC) -> Figure:
    """One row per contrast (across models) of ``metric``: the paired change of the share in
    percentage points, each model a faint dot, the mean bold with its 95% interval; the
    legend names each band (``stats.intervals.band_label``: over training seeds, or sampling
    only)."""
    across = contrasts[(contrasts["level"] == "across") & (contrasts["metric"] == metric)]
    models = contrasts[(contrasts["level"] == "model") & (contrasts["metric"] == metric)]
    n = len(across)
    fig, ax = plt.subplots(figsize=(10, 2.0 + 0.3 * max(n, 1)), constrained_layout=True)
    if n == 0:
        no_data(ax, f"no paired contrasts of {metric} in this run")
        return fig
    across = across.sort_values(["dataset", "vary", "minority_fraction", "to_value"])
    y = np.arange(n)[::-1]
    bands_drawn: set[str] = set()
    for yi, (_, r) in zip(y, across.iterrows(), strict=True):
        mine = models[models["contrast"] == r["contrast"]]
        ax.scatter(
            100 * mine["effect"],
            np.full(len(mine), yi),
            s=14,
            color="0.5",
            alpha=0.5,
            zorder=2,
            label="each trained model" if yi == y[0] else None,
        )
        band = r["band"]
        color = "C0" if r["method"] == BETWEEN_MODELS else "C1"
        lo, hi = 100 * r["ci_low"], 100 * r["ci_high"]
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot(
                [lo, hi],
                [yi, yi],
                color=color,
                lw=2.5,
                zorder=3,
                label=f"mean, {band}" if band not in bands_drawn else None,
            )
            bands_drawn.add(band)
        ax.scatter([100 * r["effect"]], [yi], color=color, s=36, zorder=4)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(_row_labels(across), fontsize=7)
    ax.set_xlabel(
        "change of the minority (bias-conflicting) share, pp, among recognised samples\n"
        "< amplifies bias | reduces bias >"
    )
    ax.set_title("Effect of each knob (paired over shared sample seeds)")
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1 - 1.0 / max(n, 4)),
        ncol=2,
        frameon=False,
    )
    return fig
