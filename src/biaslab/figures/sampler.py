"""Figures of the sampler-knob study ("How I Met Your Bias") and the mid-block bypass, from the
tidy ``metrics.parquet`` (through ``biaslab.figures.tables.cell_table``).

* ``fig_rho_vs_rho_data`` - rho_model vs rho_data with the identity line and 95% interval
  bands, for {few, many} steps x {deterministic, stochastic};
* ``fig_rho_vs_steps`` - rho_model vs the number of steps, per sampler and stochasticity;
* ``fig_rho_vs_guidance`` - rho_model (and label adherence) vs guidance w, log axis;
* ``fig_bypass`` - % minority and diversity vs the mid-block bypass fraction p;
* ``fig_bias_diversity_frontier`` - every cell as (diversity, bias amplification) with the
  Pareto frontier across all knobs.

All functions are pure (DataFrame in, ``Figure`` out). Replicates (train_seed x sample_seed)
are averaged (``common.replicate_summary``); the band / error bar is the cell's exact 95%
interval when there is one replicate, else ±1 s.e.m. across replicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.grid import depth_sort_key, is_stochastic, setting_label

from .common import (
    UNLEARNED_NOTE,
    depth_colors,
    depth_order,
    fraction_legend,
    groups,
    hollow_unlearned,
    learned_by,
    no_data,
    replicate_summary,
)
from .tables import cell_table

__all__ = [
    "fig_bias_diversity_frontier",
    "fig_bypass",
    "fig_rho_vs_guidance",
    "fig_rho_vs_rho_data",
    "fig_rho_vs_steps",
    "pareto_front",
]

#: A sampler setting without its guidance / bypass (what a line of a figure holds fixed).
SETTING = ("sampler", "steps", "eta", "s_churn")


def _aggregate(cells: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """``replicate_summary`` of the cells that have ``metric``, per ``by`` group."""
    return replicate_summary(
        cells.dropna(subset=[metric]), by, value=metric, lo=f"{metric}_lo", hi=f"{metric}_hi"
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


def _model_panels(
    cells: pd.DataFrame, extra: Sequence[str] = ()
) -> list[tuple[dict, pd.DataFrame]]:
    """One panel per (dataset, varying width / train_steps, ``extra``, depth), depth-ordered."""
    keys = [c for c in ("dataset", "width", "train_steps", *extra) if c in cells]
    keys = [c for c in keys if cells[c].nunique(dropna=False) > 1 or c in ("dataset", *extra)]
    keys.append("depth")
    return sorted(
        groups(cells, keys, sort=False),
        key=lambda kg: tuple(
            depth_sort_key(v) if k == "depth" else str(v) for k, v in kg[0].items()
        ),
    )


def _title(key: dict[str, Any]) -> str:
    parts = []
    for k, v in key.items():
        if k == "dataset":
            parts.append(str(v))
        elif k == "depth":
            parts.append(f"depth {v}")
        elif k == "rho_data":
            parts.append(f"rho_data {v:g}")
        elif k == "minority_fraction":
            parts.append(f"{100 * float(v):.3g}% minority")
        else:
            parts.append(f"{k} {v}")
    return " | ".join(parts)


def _panel_grid(n: int, ncols: int = 3, size=(4.6, 3.8)) -> tuple[Figure, np.ndarray]:
    """``n`` panels in rows of ``ncols``; the unused ones hidden."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _reference_guidance(cells: pd.DataFrame) -> float:
    """The guidance value with the most distinct (sampler, steps, eta, s_churn) settings (ties:
    the smallest w), i.e. the w at which the step/stochasticity sweep was run."""
    counts = cells.groupby("guidance")[list(SETTING)].apply(lambda g: len(g.drop_duplicates()))
    best = counts.max()
    return float(min(w for w, c in counts.items() if c == best))


def _cells_without_bypass(metrics: pd.DataFrame) -> pd.DataFrame:
    """Conditional cells (with a rho_model) sampled without bypass."""
    cells = _conditional(cell_table(metrics))
    cells = cells[(cells["bypass"] == 0) & (cells["intervene"] == 1)]
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


def fig_rho_vs_rho_data(metrics: pd.DataFrame, *, guidance: float | None = None) -> Figure:
    """rho_model vs rho_data (the training set's measured alignment), with the identity line
    (no amplification) and 95% interval bands, one panel per (dataset, depth).

    Lines: per sampler, its fewest and most steps, each deterministic and stochastic (the
    largest eta or S_churn in the grid): {few, many} steps x {deterministic, stochastic}. Blue
    solid = deterministic, orange dashed = stochastic, darker = more steps. Cells at guidance
    ``guidance`` (default: the w of the step sweep), no bypass.
    """
    cells, w = _cells_at_guidance(metrics, guidance)
    cells = _extreme_settings(cells)
    steps_range = {s: (g["steps"].min(), g["steps"].max()) for s, g in cells.groupby("sampler")}
    panels = _model_panels(cells)
    fig, axes = _panel_grid(len(panels))
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        for setting, gs in g.groupby(list(SETTING), sort=True):
            row = {
                **dict(zip(SETTING, setting, strict=True)),
                "stochastic": gs["stochastic"].iloc[0],
            }
            agg_y = _aggregate(gs, ["minority_fraction"], "rho_model")
            agg_x = _aggregate(gs, ["minority_fraction"], "training_rho")
            x = agg_x["mean"].to_numpy(dtype=float)
            order = np.argsort(x)
            x = x[order]
            y, lo, hi = (agg_y[c].to_numpy(dtype=float)[order] for c in ("mean", "lo", "hi"))
            style = _setting_style(row, steps_range)
            label = setting_label(row) + (" (stochastic)" if row["stochastic"] else "")
            ax.plot(x, y, marker="o", label=label, **style)
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
            fracs = agg_y["minority_fraction"].to_numpy()[order]
            hollow_unlearned(ax, x, y, learned_by(gs, "minority_fraction", fracs), style["color"])
        lims = [min(cells["training_rho"].min(), cells["rho_model_lo"].min()) - 0.03, 1.0]
        ax.plot(lims, lims, color="0.5", linewidth=0.8, linestyle=":", label="rho_model = rho_data")
        ax.set_xlim(*lims)
        ax.set_ylim(lims[0], 1.01)
        ax.set_xlabel("rho_data (training set)")
        ax.set_ylabel("rho_model (95% CI)")
        ax.set_title(_title(key) + f" | w={w:g}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Bias of generated images vs bias of the training set" + _probe_note(cells))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# rho_model vs steps
# --------------------------------------------------------------------------------------------
def fig_rho_vs_steps(metrics: pd.DataFrame, *, guidance: float | None = None) -> Figure:
    """rho_model (95% CI) vs the number of sampling steps (log axis), one line per sampler and
    stochasticity level, one panel per (dataset, depth, rho_data); the dotted line is the
    training set's rho_data. Cells at guidance ``guidance`` (default: the w of the step
    sweep), no bypass."""
    cells, w = _cells_at_guidance(metrics, guidance)
    panels = _model_panels(cells, extra=("minority_fraction",))
    fig, axes = _panel_grid(len(panels))
    cmap = plt.get_cmap("tab10")
    lines = sorted(cells[["sampler", "eta", "s_churn"]].drop_duplicates().itertuples(index=False))
    color = {tuple(line): cmap(i % 10) for i, line in enumerate(lines)}
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        for (sampler, eta, churn), gs in g.groupby(["sampler", "eta", "s_churn"], sort=True):
            agg = _aggregate(gs, ["steps"], "rho_model")
            row = {"sampler": sampler, "eta": eta, "s_churn": churn}
            row_key = (sampler, eta, churn)
            stoch = is_stochastic(row)
            x = agg["steps"].to_numpy(dtype=float)
            y = agg["mean"].to_numpy(dtype=float)
            yerr = np.vstack([y - agg["lo"].to_numpy(float), agg["hi"].to_numpy(float) - y])
            ax.errorbar(
                x,
                y,
                yerr=np.clip(yerr, 0, None),
                marker="o",
                capsize=3,
                color=color[(sampler, eta, churn)],
                linestyle="--" if stoch else "-",
                label=setting_label(row) + (" (stochastic)" if stoch else " (deterministic)"),
            )
            hollow_unlearned(ax, x, y, learned_by(gs, "steps", agg["steps"]), color[row_key])
        rho = float(g["training_rho"].mean())
        ax.axhline(rho, color="0.4", linestyle=":", linewidth=1, label=f"rho_data {rho:.3f}")
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("rho_model (95% CI)")
        title = _title({k: v for k, v in key.items() if k != "minority_fraction"})
        ax.set_title(f"{title} | rho_data {rho:.2f} | w={w:g}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Bias vs number of sampling steps" + _probe_note(cells))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# rho_model vs guidance
# --------------------------------------------------------------------------------------------
def _draw_guidance_panel(ax, g: pd.DataFrame, metric: str, fractions, colors) -> None:
    """One line of ``metric`` vs w per rho_data (dotted rho_data lines under rho_model)."""
    for frac in fractions:
        gf = g[g["minority_fraction"] == frac]
        if gf.empty:
            continue
        agg = _aggregate(gf, ["guidance"], metric)
        x = agg["guidance"].to_numpy(dtype=float)
        rho = float(gf["training_rho"].mean())
        ax.plot(x, agg["mean"], marker="o", color=colors[frac], label=f"rho_data {rho:.2f}")
        ax.fill_between(x, agg["lo"], agg["hi"], color=colors[frac], alpha=0.18, lw=0)
        hollow_unlearned(ax, x, agg["mean"], learned_by(gf, "guidance", x), colors[frac])
        if metric == "rho_model":
            ax.axhline(rho, color=colors[frac], linestyle=":", linewidth=0.9)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(left=-0.02)
    ax.set_xlabel("guidance w (symmetric log; w = 0: conditional model)")


def fig_rho_vs_guidance(metrics: pd.DataFrame) -> Figure:
    """rho_model (top) and label adherence (bottom) vs guidance w on a symmetric-log axis
    (linear below 0.1, so w = 0 is drawn), one line per rho_data, 95% interval bands, one
    column per (dataset, depth). Uses the sampler setting with the most distinct w values
    (named in the titles), no bypass. Low label adherence marks cells where the model does not
    follow its class and rho_model is not about the conditioned class."""
    cells = _cells_without_bypass(metrics)
    counts = cells.groupby(list(SETTING))["guidance"].nunique()
    setting = dict(zip(SETTING, counts.idxmax(), strict=True))
    for k, v in setting.items():
        cells = cells[cells[k] == v]
    panels = _model_panels(cells)
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 7.2), squeeze=False)
    fractions = sorted(cells["minority_fraction"].unique())
    cmap = plt.get_cmap("viridis")
    colors = {f: cmap(0.85 * i / max(len(fractions) - 1, 1)) for i, f in enumerate(fractions)}
    for j, (key, g) in enumerate(panels):
        for r, metric, ylabel in (
            (0, "rho_model", "rho_model (95% CI)"),
            (1, "label_adherence", "label adherence (95% CI)"),
        ):
            ax = axes[r, j]
            _draw_guidance_panel(ax, g, metric, fractions, colors)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            if r == 0:
                ax.set_title(f"{_title(key)} | {setting_label(setting)}", fontsize=9)
                ax.legend(fontsize=7)
    fig.suptitle("Bias and label adherence vs classifier-free guidance" + _probe_note(cells))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# % minority and diversity vs mid-block bypass
# --------------------------------------------------------------------------------------------
_BYPASS_BASE = [*SETTING, "guidance", "bypass_schedule"]
_BYPASS_PANELS = (
    ("minority_share", "% minority generated (95% CI)", 100.0),
    ("diversity_lpips", "diversity (mean pairwise LPIPS)", 1.0),
)


def _bypass_sweeps(cells: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Per (dataset, setting, bypass schedule) with p > 0: its cells and those of p = 0 of the
    same setting (whose bypass_schedule is "constant")."""
    cells = cells[cells["intervene"] == 1]
    zero = cells[cells["bypass"] == 0]
    rows = []
    for key, g in cells[cells["bypass"] > 0].groupby(["dataset", *_BYPASS_BASE], sort=True):
        key = dict(zip(["dataset", *_BYPASS_BASE], key, strict=True))
        z = zero
        for k in ["dataset", *SETTING, "guidance"]:
            z = z[z[k] == key[k]]
        rows.append((key, pd.concat([z, g])))
    return rows


def _draw_bypass_panel(ax, g: pd.DataFrame, metric: str, scale: float) -> None:
    """``metric`` vs p, coloured by depth, dashed by training minority fraction."""
    styles = ["-", "--", ":", "-."]
    depths = depth_order(g["depth"])
    colors = depth_colors(depths)
    fractions = sorted(g["minority_fraction"].unique())
    for d in depths:
        for i, frac in enumerate(fractions):
            gd = g[(g["depth"] == d) & (g["minority_fraction"] == frac)]
            if gd.empty or metric not in gd:
                continue
            agg = _aggregate(gd, ["bypass"], metric)
            x = agg["bypass"].to_numpy(dtype=float)
            y = scale * agg["mean"].to_numpy(dtype=float)
            label = f"depth {d}, {fraction_legend(frac)}"
            ax.plot(
                x, y, marker="o", color=colors[d], linestyle=styles[i % len(styles)], label=label
            )
            hollow_unlearned(ax, x, y, learned_by(gd, "bypass", x), colors[d])
            if agg["lo"].notna().any():
                ax.fill_between(
                    x, scale * agg["lo"], scale * agg["hi"], color=colors[d], alpha=0.12, lw=0
                )
    if metric == "minority_share" and "training_minority_share" in g:
        for share in g.groupby("minority_fraction")["training_minority_share"].mean():
            ax.axhline(100 * share, color="0.5", linestyle=":", linewidth=0.9)


def fig_bypass(metrics: pd.DataFrame) -> Figure:
    """% minority (bias-conflicting share for coloured MNIST; 95% CI) and diversity (mean
    pairwise LPIPS) vs the mid-block bypass fraction p. One row of two panels per dataset and
    sampler setting whose grid sweeps p (other knobs fixed, bypass schedule named); lines
    coloured by depth, solid/dashed/dotted by training minority fraction, dotted grey
    horizontal lines at the training minority shares."""
    cells = cell_table(metrics)
    rows = _bypass_sweeps(cells)
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 3))
        no_data(ax, "no mid-block bypass sweep in this grid (sampling.grid rows with bypass > 0)")
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.9 * len(rows)), squeeze=False)
    for r, (key, g) in enumerate(rows):
        for c, (metric, ylabel, scale) in enumerate(_BYPASS_PANELS):
            ax = axes[r, c]
            _draw_bypass_panel(ax, g, metric, scale)
            ax.set_xlabel("mid-block bypass p")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ramp = " (ramped)" if key["bypass_schedule"] == "linear" else ""
            ax.set_title(f"{key['dataset']} | {setting_label(key)}{ramp}", fontsize=9)
        axes[r, 0].legend(fontsize=7)
    fig.suptitle("Training-free mid-block bypass" + _probe_note(cells))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# bias vs diversity frontier
# --------------------------------------------------------------------------------------------
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
    ``x`` the quality axis (higher better, except ``fid``, where lower is)."""
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
    sign = -1.0 if x == "fid" else 1.0
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


def fig_bias_diversity_frontier(metrics: pd.DataFrame) -> Figure:
    """Every cell (every knob, depth and seed) as a point: x = diversity (mean pairwise LPIPS),
    y = bias amplification in percentage points = training minority share - generated minority
    share (for coloured MNIST: rho_model - rho_data; 0 = the training bias reproduced, > 0 =
    amplified). One panel per (dataset, training minority fraction); the line joins the
    Pareto frontier (no other cell less biased and more diverse), its points annotated with
    their setting. Colour: sampler; marker: depth."""
    cells = cell_table(metrics).dropna(subset=["amplification", "diversity_lpips"])
    if cells.empty:
        raise ValueError("no cells with both amplification and diversity_lpips")
    cells = cells.assign(bias_pp=100 * cells["amplification"])
    panels = []
    for key, g in cells.groupby(["dataset", "minority_fraction"], sort=True):
        panels.append((dict(zip(["dataset", "minority_fraction"], key, strict=True)), g))
    fig, axes = _panel_grid(len(panels), ncols=2, size=(6.2, 4.6))
    cmap = plt.get_cmap("tab10")
    color = {s: cmap(i % 10) for i, s in enumerate(sorted(cells["sampler"].unique()))}
    markers = dict(zip(depth_order(cells["depth"]), "osD^vP*X", strict=False))
    for ax, (key, g) in zip(axes.flat, panels, strict=False):
        g = g.reset_index(drop=True)
        draw_frontier_panel(ax, g, color, markers)
        ax.axhline(0, color="0.5", linestyle=":", linewidth=0.9)
        ax.set_xlabel("diversity (mean pairwise LPIPS, higher = more diverse)")
        ax.set_ylabel("bias amplification (pp, lower = less biased)")
        rho = g["rho_data"].dropna() if "rho_data" in g else pd.Series(dtype=float)
        title = (
            _title({"dataset": key["dataset"], "rho_data": float(rho.iloc[0])})
            if len(rho)
            else _title(key)
        )
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    title = "Bias vs diversity across every sampler knob, depth and skew"
    fig.suptitle(title + _probe_note(cells))
    fig.tight_layout()
    return fig
