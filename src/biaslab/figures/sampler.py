"""Figures of the sampler-knob study ("How I Met Your Bias") and the mid-block bypass, from the
tidy ``metrics.parquet`` (through ``biaslab.figures.tables.cell_table``).

* ``fig_rho_vs_rho_data`` - rho_model vs rho_data with the identity line, for {few, many}
  steps x {deterministic, stochastic};
* ``fig_rho_vs_steps`` - rho_model vs the number of steps, per sampler and stochasticity;
* ``fig_rho_vs_guidance`` - rho_model (and label adherence) vs guidance w, symlog axis;
* ``fig_bypass`` - % minority and diversity vs the mid-block bypass fraction p.

The bias-diversity frontier is in ``biaslab.figures.frontier``. All functions are pure
(DataFrame in, ``Figure`` out). rho_model and the minority share are their robust readouts
(among the samples the classifier recognises, ``common.readout``; the plain metric in tables
that predate them, as the axis label says). Each trained model is a faint point; the line is
their mean with its band, the 95% t-interval over the models when there are two or more and
that one model's sampling interval (exact) when there is one, named in the legend
(``common.replicate_summary``, ``common.Bands``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.base.columns import UNTREATED, depth_sort_key, untreated_mask
from biaslab.figures.common import (
    UNLEARNED_NOTE,
    Bands,
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
    panel_grid,
    readout,
    readout_label,
    replicate_summary,
    value_ticks,
)
from biaslab.figures.tables import cell_table
from biaslab.sampling.registry import is_stochastic, setting_label

__all__ = [
    "fig_bypass",
    "fig_rho_vs_guidance",
    "fig_rho_vs_rho_data",
    "fig_rho_vs_steps",
]

#: A sampler setting without its guidance / bypass (what a line of a figure holds fixed).
SETTING = ("sampler", "steps", "eta", "s_churn")


#: Shares (their band is cut to [0, 1]).
_SHARES = ("rho_model", "rho_model_confident", "label_adherence", "training_rho")


def _aggregate(cells: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """``replicate_summary`` over the trained models of the cells that have ``metric``, per
    ``by`` group (a share's band cut to [0, 1])."""
    bounds = (0.0, 1.0) if metric in _SHARES or metric.startswith("minority_share") else None
    return replicate_summary(
        cells.dropna(subset=[metric]),
        by,
        value=metric,
        lo=f"{metric}_lo",
        hi=f"{metric}_hi",
        bounds=bounds,
    )


def _probe_note(cells: pd.DataFrame) -> str:
    """A second title line when the probe found a model that did not learn its attribute."""
    if "probe_learned" in cells and not cells["probe_learned"].all():
        return f"\n({UNLEARNED_NOTE})"
    return ""


def _conditional(cells: pd.DataFrame) -> pd.DataFrame:
    if "rho_model" not in cells:
        return cells.iloc[0:0]
    return cells[cells["rho_model"].notna()]


#: Model / cell columns that get their own panels when they vary (never averaged together).
_PANEL_COLUMNS = ("objective", "beta_schedule", "width", "train_steps", "n_samples", "sample_seed")


def _model_panels(
    cells: pd.DataFrame, extra: Sequence[str] = ()
) -> list[tuple[dict, pd.DataFrame]]:
    """One panel per (dataset, varying objective / width / ... / sample seed, ``extra``,
    depth), depth-ordered."""
    keys = [c for c in ("dataset", *_PANEL_COLUMNS, *extra) if c in cells]
    keys = [c for c in keys if cells[c].nunique(dropna=False) > 1 or c in ("dataset", *extra)]
    keys.append("depth")
    return sorted(
        groups(cells, keys, sort=False),
        key=lambda kg: tuple(
            depth_sort_key(v) if k == "depth" else str(v) for k, v in kg[0].items()
        ),
    )


def _title(key: dict[str, Any], conditional: bool = True) -> str:
    parts = []
    for k, v in key.items():
        if k == "dataset":
            parts.append(str(v))
        elif k == "depth":
            parts.append(f"depth {v}")
        elif k == "rho_data":
            parts.append(f"rho_data {v:g}")
        elif k == "minority_fraction":
            parts.append(fraction_legend(v, conditional))
        else:
            parts.append(f"{k} {v}")
    return " | ".join(parts)


def _reference_guidance(cells: pd.DataFrame) -> float:
    """The guidance value with the most distinct (sampler, steps, eta, s_churn) settings (ties:
    the smallest w), i.e. the w at which the step/stochasticity sweep was run."""
    counts = cells.groupby("guidance")[list(SETTING)].apply(lambda g: len(g.drop_duplicates()))
    best = counts.max()
    return float(min(w for w, c in counts.items() if c == best))


def _cells_without_bypass(metrics: pd.DataFrame) -> pd.DataFrame:
    """Conditional cells (with a rho_model) sampled without bypass."""
    cells = _conditional(cell_table(metrics))
    cells = cells[untreated_mask(cells)]
    if cells.empty:
        raise ValueError("no class-conditional (rho_model) cells without bypass in metrics")
    return cells


def _cells_at_guidance(metrics: pd.DataFrame, guidance: float | None) -> tuple[pd.DataFrame, float]:
    """Conditional cells without bypass at guidance ``guidance`` (default: the w of the step
    sweep, ``_reference_guidance``), and that w."""
    cells = _cells_without_bypass(metrics)
    w = _reference_guidance(cells) if guidance is None else float(guidance)
    return cells[cells["guidance"] == w], w


def _setting_style(row: dict[str, Any], steps_range: dict[str, tuple[int, int]]):
    """Colour by number of steps (few: light, many: dark), dashes by stochasticity."""
    lo, hi = steps_range[row["sampler"]]
    frac = 0.0 if hi == lo else (np.log(row["steps"]) - np.log(lo)) / (np.log(hi) - np.log(lo))
    cmap = plt.get_cmap("Oranges" if row["stochastic"] else "Blues")
    return {"color": cmap(0.45 + 0.5 * frac), "linestyle": "--" if row["stochastic"] else "-"}


# --------------------------------------------------------------------------------------------
# rho_model vs rho_data
# --------------------------------------------------------------------------------------------
def _extreme_settings(cells: pd.DataFrame) -> pd.DataFrame:
    """Per sampler, the cells of its fewest and most steps, each deterministic and at its
    strongest noise (largest eta + S_churn)."""
    chosen = []
    for _, g in cells.groupby("sampler"):
        few, many = g["steps"].min(), g["steps"].max()
        for steps in sorted({few, many}):
            gs = g[g["steps"] == steps]
            for stoch in (False, True):
                gg = gs[gs["stochastic"] == stoch]
                if gg.empty:
                    continue
                level = gg[["eta", "s_churn"]].sum(axis=1).max()  # the strongest noise
                chosen.append(gg[gg[["eta", "s_churn"]].sum(axis=1) == level])
    return pd.concat(chosen) if chosen else cells.iloc[0:0]


def _rho_line(ax, gs: pd.DataFrame, metric: str, style: dict, label: str, bands: Bands):
    """One setting's line of ``fig_rho_vs_rho_data``: the mean over models of ``metric`` vs
    their mean training rho, its band, each model a faint point; the lowest value drawn."""
    agg_y = _aggregate(gs, ["minority_fraction"], metric)
    agg_x = _aggregate(gs, ["minority_fraction"], "training_rho")
    agg = agg_y.merge(
        agg_x[["minority_fraction", "mean"]], on="minority_fraction", suffixes=("", "_x")
    )
    agg = agg.sort_values("mean_x")
    bands.add(agg)
    x = agg["mean_x"].to_numpy(dtype=float)
    draw_band(ax, x, agg, style["color"], linestyle=style["linestyle"], label=label)
    draw_models(ax, gs["training_rho"], gs[metric], style["color"])
    learned = learned_by(gs, "minority_fraction", agg["minority_fraction"])
    hollow_unlearned(ax, x, agg["mean"], learned, style["color"])
    return np.nanmin([*agg["lo"], *gs[metric], *x])


def fig_rho_vs_rho_data(metrics: pd.DataFrame, *, guidance: float | None = None) -> Figure:
    """rho_model (among recognised samples: ``rho_model_confident``) vs rho_data (the training
    set's measured alignment), with the identity line (no amplification), one panel per
    (dataset, depth); each model a faint point, the mean over models with its band (named
    in the legend, below the panels).

    Lines: per sampler, its fewest and most steps, each deterministic and stochastic (the
    largest eta or S_churn in the grid): {few, many} steps x {deterministic, stochastic}. Blue
    solid = deterministic, orange dashed = stochastic, darker = more steps. Cells at guidance
    ``guidance`` (default: the w of the step sweep), no bypass.
    """
    cells, w = _cells_at_guidance(metrics, guidance)
    metric = readout(cells, "rho_model")
    cells = _extreme_settings(cells)
    steps_range = {s: (g["steps"].min(), g["steps"].max()) for s, g in cells.groupby("sampler")}
    panels = _model_panels(cells)
    fig, axes = panel_grid(len(panels))
    bands = Bands()
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        lowest = 1.0
        for setting, gs in g.groupby(list(SETTING), sort=True):
            row = {
                **dict(zip(SETTING, setting, strict=True)),
                "stochastic": gs["stochastic"].iloc[0],
            }
            label = setting_label(row) + (" (stochastic)" if row["stochastic"] else "")
            style = _setting_style(row, steps_range)
            lowest = min(lowest, _rho_line(ax, gs, metric, style, label, bands))
        lims = [max(lowest - 0.03, 0.0), 1.0]
        ax.plot(lims, lims, color="0.5", linewidth=0.8, linestyle=":", label="rho_model = rho_data")
        ax.set_xlim(*lims)
        ax.set_ylim(lims[0], 1.01)
        ax.set_xlabel("rho_data (training set)")
        ax.set_ylabel(readout_label(metric))
        ax.set_title(_title(key) + f" | w={w:g}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Bias of generated images vs bias of the training set" + _probe_note(cells))
    legend_below(fig, bands)
    return fig


# --------------------------------------------------------------------------------------------
# rho_model vs steps
# --------------------------------------------------------------------------------------------
def fig_rho_vs_steps(metrics: pd.DataFrame, *, guidance: float | None = None) -> Figure:
    """rho_model (among recognised samples) vs the number of sampling steps (log axis, ticks
    at the steps run), one line per sampler and stochasticity level, one panel per (dataset,
    depth, rho_data); each model a faint point, the mean over models with its band (legend
    below the panels); the dotted line is the training set's rho_data. Cells at guidance
    ``guidance`` (default: the w of the step sweep), no bypass."""
    cells, w = _cells_at_guidance(metrics, guidance)
    metric = readout(cells, "rho_model")
    panels = _model_panels(cells, extra=("minority_fraction",))
    fig, axes = panel_grid(len(panels))
    cmap = plt.get_cmap("tab10")
    lines = sorted(cells[["sampler", "eta", "s_churn"]].drop_duplicates().itertuples(index=False))
    color = {tuple(line): cmap(i % 10) for i, line in enumerate(lines)}
    bands = Bands()
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        for (sampler, eta, churn), gs in g.groupby(["sampler", "eta", "s_churn"], sort=True):
            agg = _aggregate(gs, ["steps"], metric)
            bands.add(agg)
            row = {"sampler": sampler, "eta": eta, "s_churn": churn}
            c, stoch = color[(sampler, eta, churn)], is_stochastic(row)
            x = agg["steps"].to_numpy(dtype=float)
            label = setting_label(row) + (" (stochastic)" if stoch else " (deterministic)")
            draw_band(ax, x, agg, c, linestyle="--" if stoch else "-", label=label)
            draw_models(ax, gs["steps"], gs[metric], c)
            hollow_unlearned(ax, x, agg["mean"], learned_by(gs, "steps", agg["steps"]), c)
        rho = float(g["training_rho"].mean())
        ax.axhline(rho, color="0.4", linestyle=":", linewidth=1, label="rho_data (training set)")
        ax.set_xscale("log")
        value_ticks(ax, g["steps"])
        ax.set_xlabel("sampling steps")
        ax.set_ylabel(readout_label(metric))
        title = _title({k: v for k, v in key.items() if k != "minority_fraction"})
        ax.set_title(f"{title} | rho_data {rho:.2f} | w={w:g}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Bias vs number of sampling steps" + _probe_note(cells))
    legend_below(fig, bands)
    return fig


# --------------------------------------------------------------------------------------------
# rho_model vs guidance
# --------------------------------------------------------------------------------------------
def _draw_guidance_panel(ax, g: pd.DataFrame, metric: str, fractions, colors, bands) -> None:
    """One line of ``metric`` vs w per rho_data (dotted rho_data lines under rho_model), each
    model a faint point."""
    for frac in fractions:
        gf = g[g["minority_fraction"] == frac]
        if gf.empty:
            continue
        agg = _aggregate(gf, ["guidance"], metric)
        bands.add(agg)
        x = agg["guidance"].to_numpy(dtype=float)
        rho = float(gf["training_rho"].mean())
        draw_band(ax, x, agg, colors[frac], label=f"rho_data {rho:.2f}")
        draw_models(ax, gf["guidance"], gf[metric], colors[frac])
        hollow_unlearned(ax, x, agg["mean"], learned_by(gf, "guidance", x), colors[frac])
        if metric.startswith("rho_model"):
            ax.axhline(rho, color=colors[frac], linestyle=":", linewidth=0.9)
    ax.set_xscale("symlog", linthresh=0.1)
    value_ticks(ax, g["guidance"])
    ax.set_xlim(left=-0.02)
    ax.set_xlabel("guidance w (symmetric log; w = 0: conditional model)")


def fig_rho_vs_guidance(metrics: pd.DataFrame) -> Figure:
    """rho_model among recognised samples (top) and label adherence (bottom) vs guidance w on
    a symmetric-log axis (linear below 0.1, so w = 0 is drawn; ticks at the w run), one line
    per rho_data (dotted: the training set's), each model a faint point and the mean over
    models with its band (legend below), one column per (dataset, depth). Uses the sampler
    setting with the most distinct w values (named in the titles), no bypass. Low label
    adherence marks cells where the model does not follow its class and rho_model is not
    about the conditioned class."""
    cells = _cells_without_bypass(metrics)
    counts = cells.groupby(list(SETTING))["guidance"].nunique()
    setting = dict(zip(SETTING, counts.idxmax(), strict=True))
    for k, v in setting.items():
        cells = cells[cells[k] == v]
    metric = readout(cells, "rho_model")
    panels = _model_panels(cells)
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 7.6), squeeze=False)
    fractions = sorted(cells["minority_fraction"].unique())
    cmap = plt.get_cmap("viridis")
    colors = {f: cmap(0.85 * i / max(len(fractions) - 1, 1)) for i, f in enumerate(fractions)}
    bands = Bands()
    for j, (key, g) in enumerate(panels):
        for r, name, ylabel in (
            (0, metric, readout_label(metric)),
            (1, "label_adherence", "label adherence (all samples)"),
        ):
            ax = axes[r, j]
            _draw_guidance_panel(ax, g, name, fractions, colors, bands)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(f"{_title(key)} | {setting_label(setting)}", fontsize=9)
    fig.suptitle("Bias and label adherence vs classifier-free guidance" + _probe_note(cells))
    legend_below(fig, bands, note="dotted: rho_data of the training set")
    return fig


# --------------------------------------------------------------------------------------------
# % minority and diversity vs mid-block bypass
# --------------------------------------------------------------------------------------------
_BYPASS_BASE = [*SETTING, "guidance", "bypass_schedule"]


def _bypass_sweeps(cells: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Per (dataset, setting, bypass schedule) with p > 0: its cells and those of p = 0 of the
    same setting (whose bypass_schedule is "constant")."""
    cells = cells[untreated_mask(cells, tuple(k for k in UNTREATED if k != "bypass"))]
    zero = cells[cells["bypass"] == 0]
    rows = []
    for key, g in cells[cells["bypass"] > 0].groupby(["dataset", *_BYPASS_BASE], sort=True):
        key = dict(zip(["dataset", *_BYPASS_BASE], key, strict=True))
        z = zero
        for k in ["dataset", *SETTING, "guidance"]:
            z = z[z[k] == key[k]]
        rows.append((key, pd.concat([z, g])))
    return rows


def _draw_bypass_panel(ax, g: pd.DataFrame, metric: str, scale: float, bands: Bands) -> None:
    """``metric`` vs p, coloured by depth, dashed by training skew; each model a faint point,
    the mean over models with its band (added to ``bands``)."""
    styles = ["-", "--", ":", "-."]
    depths = depth_order(g["depth"])
    colors = depth_colors(depths)
    fractions = sorted(g["minority_fraction"].unique())
    for d in depths:
        for i, frac in enumerate(fractions):
            gd = g[(g["depth"] == d) & (g["minority_fraction"] == frac)]
            if gd.empty or metric not in gd or gd[metric].isna().all():
                continue
            agg = _aggregate(gd, ["bypass"], metric)
            bands.add(agg)
            x = agg["bypass"].to_numpy(dtype=float)
            label = f"depth {d}, {fraction_legend(frac, is_conditional(gd))}"
            style = {"linestyle": styles[i % len(styles)], "label": label}
            draw_band(ax, x, agg, colors[d], scale=scale, **style)
            draw_models(ax, gd["bypass"], scale * gd[metric], colors[d])
            y = scale * agg["mean"].to_numpy(dtype=float)
            hollow_unlearned(ax, x, y, learned_by(gd, "bypass", x), colors[d])
    if metric.startswith("minority_share") and "training_minority_share" in g:
        for share in g.groupby("minority_fraction")["training_minority_share"].mean():
            ax.axhline(100 * share, color="0.5", linestyle=":", linewidth=0.9)


def fig_bypass(metrics: pd.DataFrame) -> Figure:
    """% minority (bias-conflicting share for coloured MNIST) among recognised samples and
    diversity (mean pairwise LPIPS) vs the mid-block bypass fraction p. One row of two panels
    per dataset and sampler setting whose grid sweeps p (other knobs fixed, bypass schedule
    named); lines coloured by depth, solid/dashed/dotted by training skew, each model a faint
    point and the mean over models with its band (named in the legend below); dotted grey
    horizontal lines at the training minority shares."""
    cells = cell_table(metrics)
    rows = _bypass_sweeps(cells)
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no mid-block bypass sweep in this grid (sampling.grid rows with bypass > 0)")
        ax.set_axis_off()
        return fig
    share = readout(cells, "minority_share")
    panels = ((share, 100.0), ("diversity_lpips", 1.0))
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.9 * len(rows)), squeeze=False)
    bands = Bands()
    for r, (key, g) in enumerate(rows):
        for c, (metric, scale) in enumerate(panels):
            ax = axes[r, c]
            _draw_bypass_panel(ax, g, metric, scale, bands)
            ax.set_xlabel("mid-block bypass p")
            ax.set_ylabel(
                readout_label(metric, is_conditional(g))
                if c == 0
                else "diversity (mean pairwise LPIPS)"
            )
            ax.grid(alpha=0.3)
            ramp = " (ramped)" if key["bypass_schedule"] == "linear" else ""
            ax.set_title(f"{key['dataset']} | {setting_label(key)}{ramp}", fontsize=9)
    fig.suptitle("Training-free mid-block bypass" + _probe_note(cells))
    legend_below(fig, bands, note="dotted grey: training minority shares")
    return fig
