"""Helpers shared by the figure modules: grid facets, the aggregate over trained models and the
legend that names its band, the robust readouts, depth colours and order, panels without data,
saving.

Conventions
-----------
* Depth is a categorical axis in ``biaslab.base.columns.DEPTH_ORDER`` order (``depth_order``).
* The unit of evidence is the trained model (``MODEL_COLUMN``, ``train_seed``): the
  replicates of a point are its models. A figure draws each model faint (``draw_models``) and
  their aggregate bold (``replicate_summary``: ``stats.intervals.across_models``), whose band or bar
  is the 95% t-interval over the models when there are two or more, and that one model's
  sampling interval when there is one; the legend names which (``Bands``,
  ``stats.intervals.band_label``: "95% CI over 5 training seeds (t)", "sampling 95% CI, 1 training
  seed: ...").
* A sample seed that varies is a different cell, not a replicate; it and the other grid
  columns that vary inside a table (dataset, objective, width, sampler setting, ...) are never
  averaged together: they become separate panels (``varying``, ``groups``, ``facet_title``).
* The headline readouts are the robust ones (``readout``): the minority share and rho_model
  among the samples the classifier recognises (``ROBUST``), the plain metric only where a
  table predates them, and the axis label says which (``readout_label``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from biaslab.base.columns import DEPTH_ORDER, KNOB_COLUMNS, depth_sort_key, fmt_value
from biaslab.base.io import save_figure
from biaslab.sampling.registry import setting_label
from biaslab.stats.intervals import NO_INTERVAL, across_models, band_label

# Headless: switching is allowed after importing pyplot as long as no figure exists yet.
matplotlib.use("Agg")

SAMPLER_SETTING = KNOB_COLUMNS
#: The column that names a trained model, the unit of evidence: a figure's replicates.
MODEL_COLUMN = "train_seed"
REPLICATE_COLUMNS = (MODEL_COLUMN,)
#: Grid columns that are neither the x-axis (depth), the line (minority_fraction) nor
#: replicates: when one of them varies, its values get their own row of panels (a sample seed
#: that varies is another cell, not a replicate).
FACET_COLUMNS = (
    "dataset",
    "source",
    "resolution",
    "objective",
    "beta_schedule",
    "width",
    "train_steps",
    "n_samples",
    "sample_seed",
    *SAMPLER_SETTING,
)
#: ``FACET_COLUMNS`` without the sampler knobs (the model / data facets).
MODEL_FACETS = tuple(c for c in FACET_COLUMNS if c not in SAMPLER_SETTING)
FACET_NAMES = {
    "dataset": "",
    "objective": "",
    "beta_schedule": "β schedule ",
    "sample_seed": "sample seed ",
    "source": "source ",
    "resolution": "res ",
    "width": "width ",
    "train_steps": "train steps ",
    "n_samples": "n=",
}


# --------------------------------------------------------------------------------------------
# labels and facets
# --------------------------------------------------------------------------------------------
def depth_order(labels) -> list[str]:
    """Distinct depth labels (as str) in ``DEPTH_ORDER`` order, unknown labels last by name."""
    return sorted({str(d) for d in labels}, key=lambda d: (depth_sort_key(d), d))


def fraction_legend(fraction: float, conditional: bool = False) -> str:
    """``10% minority in training``; for a class-conditional family (``fraction`` = the
    bias-conflicting share ``1 - rho``) ``rho_data 0.8``."""
    if conditional:
        return f"rho_data {1 - float(fraction):.3g}"
    return f"{100 * float(fraction):.3g}% minority in training"


def facet_title(key: Mapping[str, Any], always_setting: bool = True) -> str:
    """Title of a row of panels: varying non-sampler facets, then the sampler setting."""
    parts = [
        f"{FACET_NAMES.get(c, c + ' ')}{fmt_value(v)}"
        for c, v in key.items()
        if c not in SAMPLER_SETTING and c != "minority_fraction"
    ]
    setting = setting_label(key) if always_setting else ""
    if setting:
        parts.append(setting)
    return " | ".join(parts)


def present(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns among ``columns`` that ``df`` has, in that order."""
    return [c for c in columns if c in df.columns]


def varying(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns among ``columns`` with more than one distinct value (NaN counts as a value)."""
    return [c for c in present(df, columns) if df[c].nunique(dropna=False) > 1]


def groups(
    df: pd.DataFrame, columns: Sequence[str], *, sort: bool = True
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``[(key_dict, sub_df), ...]`` (sorted by key unless ``sort=False``: first appearance);
    one ``({}, df)`` group when no columns."""
    columns = list(columns)
    if not columns:
        return [({}, df)]
    out = []
    for key, sub in df.groupby(columns, sort=sort, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(columns, key, strict=True)), sub))
    return out


def select(df: pd.DataFrame, key: Mapping[str, Any], null_matches: bool = False) -> pd.DataFrame:
    """Rows of ``df`` equal to ``key`` on its columns (NaN == NaN; optionally NaN matches all)."""
    mask = np.ones(len(df), dtype=bool)
    for c, v in key.items():
        if c not in df.columns:
            continue
        col = df[c]
        if pd.isna(v):
            m = col.isna().to_numpy()
        else:
            m = (col == v).fillna(False).to_numpy(dtype=bool)
        if null_matches:
            m = m | col.isna().to_numpy()
        mask = mask & m
    return df[mask]


def metric_rows(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of metric ``name`` of a tidy metrics table, depth as str."""
    out = df[df["metric"] == name].copy()
    out["depth"] = out["depth"].astype(str)
    return out


def pick_backbone(rows: pd.DataFrame, backbone: str | None) -> tuple[pd.DataFrame, str | None]:
    """Keep one backbone (``backbone`` or the first by name); rows without one are kept."""
    if "backbone" not in rows.columns or rows["backbone"].isna().all():
        return rows, None
    names = sorted(rows["backbone"].dropna().astype(str).unique())
    chosen = backbone if backbone is not None else names[0]
    if chosen not in names:
        raise ValueError(f"backbone {chosen!r} not among {names}")
    return rows[rows["backbone"].isna() | (rows["backbone"].astype(str) == chosen)], chosen


# --------------------------------------------------------------------------------------------
# replicates: trained models
# --------------------------------------------------------------------------------------------
def replicate_values(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per (``by`` + model) with mean value / ci_low / ci_high (the mean only joins
    rows of one model that ``by`` does not tell apart)."""
    keys = list(by) + present(rows, REPLICATE_COLUMNS)
    cols = [c for c in ("value", "ci_low", "ci_high") if c in rows.columns]
    return rows.groupby(keys, sort=False, dropna=False)[cols].mean().reset_index()


def _per_model(sub: pd.DataFrame, value: str, lo: str, hi: str) -> pd.DataFrame:
    """``sub`` with one row per model (rows of one model averaged), ``lo`` / ``hi`` NaN if
    absent."""
    sub = sub.assign(**{c: np.nan for c in (lo, hi) if c not in sub})
    models = present(sub, REPLICATE_COLUMNS)
    if not models or not sub.duplicated(models).any():
        return sub
    return sub.groupby(models, dropna=False)[[value, lo, hi]].mean().reset_index()


def replicate_summary(
    rep: pd.DataFrame,
    by: Sequence[str],
    *,
    value: str = "value",
    lo: str = "ci_low",
    hi: str = "ci_high",
    bounds: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """The one aggregator over trained models: per ``by`` group of ``rep`` (a row per model,
    ``MODEL_COLUMN``; rows of one model are averaged first), ``stats.intervals.across_models`` of
    the finite ``value``\\ s: their mean with the 95% t-interval over the models when there are
    two or more, that model's own sampling interval (``lo``, ``hi`` columns; NaN when absent)
    when there is one. ``bounds``: the range the quantity lives in (a share: (0, 1)); the
    interval is cut to it.

    Columns: ``by``, ``mean``, ``lo``, ``hi`` (the band's ends), ``err_lo``, ``err_hi`` (its
    lengths below / above the mean), ``n_models``, ``method`` (``stats``: "t over models",
    "sampling" or "none") and ``band`` (``stats.intervals.band_label``, the legend text); groups in
    sorted order."""
    rows = []
    for key, sub in groups(rep, by):
        models = _per_model(sub, value, lo, hi)
        agg = across_models(models[value], models[lo], models[hi])
        mean, low, high = agg["value"], agg["ci_low"], agg["ci_high"]
        if bounds is not None:
            low, high = (float(np.clip(v, *bounds)) for v in (low, high))
        rows.append(
            {
                **key,
                "mean": mean,
                "lo": low,
                "hi": high,
                "err_lo": mean - low,
                "err_hi": high - mean,
                "n_models": agg["n_models"],
                "method": agg["method"],
                "band": band_label(agg["n_models"], agg["method"]),
            }
        )
    columns = [*by, "mean", "lo", "hi", "err_lo", "err_hi", "n_models", "method", "band"]
    return pd.DataFrame(rows, columns=columns)


def yerr(summary: pd.DataFrame, scale: float = 1.0) -> np.ndarray:
    """``errorbar``'s ``yerr`` from a ``replicate_summary`` (negative lengths clipped, none
    where there is no interval)."""
    lo = np.nan_to_num(np.clip(summary["err_lo"].to_numpy(dtype=float), 0.0, None)) * scale
    hi = np.nan_to_num(np.clip(summary["err_hi"].to_numpy(dtype=float), 0.0, None)) * scale
    return np.vstack([lo, hi])


#: Legend text of the faint per-model points.
MODELS_NOTE = "each trained model (training seed)"


@dataclass
class Bands:
    """What the bands (or bars) drawn on an axes or figure are, collected while drawing
    (``add`` each ``replicate_summary``), for the legend: ``stats.intervals.band_label`` of every
    (n_models, method) drawn, and whether any point has several models (then faint points
    are each model)."""

    style: str = "band"  # "band" (fill_between) or "bars" (errorbar)
    labels: dict[str, str] = field(default_factory=dict)  # band label -> method
    several_models: bool = False

    def add(self, summary: pd.DataFrame) -> None:
        drawn = summary[summary["n_models"] > 0]
        for band, method in zip(drawn["band"], drawn["method"], strict=True):
            self.labels.setdefault(band, method)
        self.several_models |= bool((drawn["n_models"] > 1).any())

    def entries(self) -> tuple[list[Any], list[str]]:
        """(handles, labels) naming the faint points and every band drawn."""
        handles: list[Any] = []
        labels: list[str] = []
        if self.several_models:
            handles.append(
                Line2D([], [], color="0.35", marker="o", ls="none", alpha=0.45, markersize=4)
            )
            labels.append(MODELS_NOTE)
        for band, method in self.labels.items():
            if method == NO_INTERVAL:
                handles.append(Line2D([], [], color="none"))
                labels.append(band)
            elif self.style == "bars":
                handles.append(Line2D([], [], color="0.3", marker="|", ls="none", markersize=10))
                labels.append(f"bars: {band}")
            else:
                handles.append(Patch(facecolor="0.5", alpha=0.3, linewidth=0))
                labels.append(f"band: {band}")
        return handles, labels

    def text(self) -> str:
        """The band labels in one line (for a title or caption)."""
        return "; ".join(self.labels)


def band_legend(target, bands: Bands, extra: Sequence[tuple[Any, str]] = (), **kwargs):
    """The legend of ``target`` (an axes, or a figure: then the entries of all its axes,
    each label once): its labelled artists, ``extra`` (handle, label) pairs, then the faint
    model points and every band drawn (``Bands.entries``). Returns the legend."""
    axes = target.get_axes() if isinstance(target, Figure) else [target]
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    h2, l2 = bands.entries()
    return target.legend(handles + h2, labels + l2, **kwargs)


def legend_below(fig: Figure, bands: Bands, note: str = "") -> None:
    """One legend for all panels of ``fig`` below them (a legend inside a panel hides its
    lines; ``band_legend``; ``note``: one more line of text): the figure grows by its height."""
    extra = [(Line2D([], [], color="none"), note)] if note else []
    ncol = max(1, min(4, int(fig.get_figwidth() // 3.4)))
    legend = band_legend(
        fig, bands, extra, loc="lower center", ncol=ncol, fontsize=7, frameon=False
    )
    height = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.dpi + 0.1
    fig.set_figheight(fig.get_figheight() + height)
    fig.tight_layout(rect=(0, height / fig.get_figheight(), 1, 1))


def draw_models(ax, x, y, color, *, hollow=None, size: float = 18, dodge: float = 0.0):
    """Each trained model's value as a faint point (``gid`` "models"), shifted right by
    ``dodge`` (a categorical axis: beside the bar of the mean); ``hollow`` (a bool per point)
    draws those points as open circles."""
    x, y = np.asarray(x, dtype=float) + dodge, np.asarray(y, dtype=float)
    hollow = np.zeros(len(x), dtype=bool) if hollow is None else np.asarray(hollow, dtype=bool)
    style = {"s": size, "zorder": 4, "gid": "models"}
    points = ax.scatter(x[~hollow], y[~hollow], color=color, alpha=0.5, linewidths=0, **style)
    if hollow.any():
        ax.scatter(x[hollow], y[hollow], facecolors="none", edgecolors=[color], alpha=0.6, **style)
    return points


def draw_band(ax, x, summary: pd.DataFrame, color, *, scale: float = 1.0, **line_kwargs):
    """The aggregate over models bold (a line with markers) and its band (``fill_between``
    where there is an interval; a broad faint bar for a line of one point); returns the
    line."""
    x = np.asarray(x, dtype=float)
    y = scale * summary["mean"].to_numpy(dtype=float)
    line_kwargs = {"marker": "o", "linewidth": 2.0, "markersize": 5, **line_kwargs}
    (line,) = ax.plot(x, y, color=color, zorder=3, **line_kwargs)
    lo, hi = (scale * summary[c].to_numpy(dtype=float) for c in ("lo", "hi"))
    if len(x) == 1 and np.isfinite(lo).all():  # a band of one point: a bar
        ax.vlines(x, lo, hi, color=color, alpha=0.3, linewidth=6, zorder=1)
    elif np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0, zorder=1)
    return line


# --------------------------------------------------------------------------------------------
# readouts
# --------------------------------------------------------------------------------------------
#: The robust readout of each headline metric: counted among the samples the classifier
#: recognises (``evaluate``: ``*_confident``).
ROBUST = {"minority_share": "minority_share_confident", "rho_model": "rho_model_confident"}
_READOUT_LABELS = {
    "minority_share_confident": "% minority among recognised samples",
    "minority_share": "% minority, all samples\n(no minority_share_confident in table)",
    "rho_model_confident": "rho_model among recognised samples",
    "rho_model": "rho_model, all samples\n(no rho_model_confident in table)",
}


def readout(table: pd.DataFrame, metric: str) -> str:
    """The readout a figure draws for ``metric``: its robust version (``ROBUST``) when
    ``table`` (tidy, with a ``metric`` column; or one row per cell, a column per metric) has
    it, else ``metric`` itself (tables that predate it; the axis label says so)."""
    robust = ROBUST.get(metric)
    if robust is None:
        return metric
    if "metric" in table:
        return robust if (table["metric"] == robust).any() else metric
    return robust if robust in table and table[robust].notna().any() else metric


def readout_label(metric: str, conditional: bool = False) -> str:
    """The axis label of a readout (which samples it counts)."""
    label = _READOUT_LABELS.get(metric, metric)
    if conditional and metric.startswith("minority_share"):
        label = label.replace("% minority", "% bias-conflicting")
    return label


def is_conditional(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` are of a class-conditional family (they have a rho_data)."""
    return "rho_data" in rows and bool(rows["rho_data"].notna().any())


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------
def learned_by(rows: pd.DataFrame, by: str, order) -> np.ndarray:
    """Per value of ``by`` (in ``order``): whether the probe found every model of those rows
    learned (``probe_learned``; True where the column is absent: no probe ran)."""
    if "probe_learned" not in rows:
        return np.ones(len(order), dtype=bool)
    flags = rows.groupby(by)["probe_learned"].all()
    return np.array([bool(flags.get(v, True)) for v in order], dtype=bool)


def hollow_unlearned(ax, x, y, learned: np.ndarray, color, size: float = 60) -> bool:
    """White-filled markers over the points of models the probe says did not learn what the
    bias readout needs; whether there were any."""
    x, y, bad = np.asarray(x, float), np.asarray(y, float), ~np.asarray(learned, bool)
    if bad.any():
        ax.scatter(
            x[bad],
            y[bad],
            s=size,
            facecolors="white",
            edgecolors=[color],
            linewidths=1.5,
            zorder=4,
        )
    return bool(bad.any())


#: Legend text of the hollow markers.
UNLEARNED_NOTE = "hollow: probe says the model did not learn the attribute"


def no_data(ax, text: str) -> None:
    """Write ``text`` in the middle of a panel that has nothing to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def depth_axis(ax, depths: Sequence[str]) -> None:
    """A categorical depth x-axis."""
    ax.set_xticks(range(len(depths)))
    ax.set_xticklabels(list(depths))
    ax.set_xlim(-0.5, len(depths) - 0.5)
    ax.set_xlabel("depth (Table A variant)")


def depth_colors(depths: Sequence[str]) -> dict[str, Any]:
    """Colours from viridis by position in ``DEPTH_ORDER`` (stable across figures)."""
    cmap = plt.get_cmap("viridis")
    unknown = [d for d in depths if d not in DEPTH_ORDER]
    pos = {d: i for i, d in enumerate(DEPTH_ORDER)}
    pos.update({d: len(DEPTH_ORDER) + i for i, d in enumerate(unknown)})
    top = max(len(pos) - 1, 1)
    return {d: cmap(0.9 * pos[d] / top) for d in depths}


def fraction_colors(fractions: Sequence[float]) -> dict[float, Any]:
    """tab10 colours by sorted minority fraction."""
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(sorted(fractions))}


def value_ticks(ax, values, axis: str = "x") -> None:
    """Ticks at the data ``values`` of a log / symlog axis, written plainly (``12``, ``0.3``),
    no minor tick labels: log axes label their decades and minor ticks otherwise, which
    collide."""
    vals = sorted({float(v) for v in values if np.isfinite(float(v))})
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(vals))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_locator(NullLocator())
    target.set_minor_formatter(NullFormatter())
    if len(vals) > 7:
        ax.tick_params(axis=axis, which="major", labelrotation=45)


def panel_grid(n: int, ncols: int = 3, size=(4.6, 3.8)) -> tuple[Figure, np.ndarray]:
    """``n`` panels in rows of ``ncols``; the unused ones hidden."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def save(fig: Figure, paths: Sequence[str | os.PathLike]) -> None:
    """Save ``fig`` to each path (format from the suffix, atomically) and close it."""
    save_figure(fig, list(paths))
    plt.close(fig)
