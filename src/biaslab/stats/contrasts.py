"""A run's evidence across trained models: per-cell aggregates, paired contrasts between cells
that differ in one knob (``biaslab.stats.intervals`` for every interval).

* ``aggregate``: per cell (every grid column but ``train_seed``) and metric, the mean over the
  trained models with its interval (``stats.intervals.across_models``: a t-interval over models, or
  the one model's sampling interval), ``n_models`` and the probe's ``n_learned``.
* ``contrasts``: every cell against its reference cell (the same grid but one column:
  ``CONTRASTS``; or a set of columns varied together, each at its reference, such as
  "6 steps, S_churn 0" against "160 steps, S_churn 60"). Both cells share their sample
  seeds, so per-sample outcomes are compared pairwise (``stats.intervals.paired_binary``: paired
  difference, McNemar's exact test, the samples that flipped each way); per-cell metrics
  (diversity, kNN, FD, ``fid_classifier``, and the standard ``fid`` when computed) by their
  difference. One row per model (``level`` "model") and one across models (``level``
  "across").
(The config's claims, verdicts over these contrasts and aggregates: ``biaslab.stats.claims``.)

The robust readout: ``*_confident`` outcomes count only samples the class classifier
recognises (confidence >= ``metrics.confidence_threshold``) in both cells of a pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from biaslab.base.columns import DEPTH_ORDER, GRID_COLUMNS, UNTREATED, fmt_value
from biaslab.stats import intervals as stats

MODEL = "train_seed"
#: What identifies a metric row of a cell beside its grid columns.
METRIC_KEYS = ("metric", "k", "group", "backbone")

#: The columns a contrast varies, each with its reference: a value (the knob off), "fewest"
#: (the fewest steps) or "shallowest" (``base.columns.DEPTH_ORDER``); ``with``: columns that change
#: with it (a row without intervention has mode "none").
CONTRASTS: dict[str, dict[str, Any]] = {
    "guidance": {"reference": 0.0},
    "steps": {"reference": "fewest"},
    "eta": {"reference": 0.0},
    "s_churn": {"reference": 0.0},
    # the treatments: reference = the untreated twin (base.columns.UNTREATED)
    **{
        knob: {"reference": off[knob], "with": tuple(k for k in off if k != knob)}
        for knob, off in UNTREATED.items()
    },
    "objective": {"reference": "epsilon"},
    "depth": {"reference": "shallowest"},
}

#: Per-sample outcomes (predictions columns) compared pairwise: metric -> (outcome column,
#: whether only pairs the classifier recognises in both cells count). ``confident_share``'s
#: outcome is the recognition itself.
SAMPLE_METRICS: dict[str, tuple[str, bool]] = {
    "minority_share": ("is_minority", False),
    "minority_share_confident": ("is_minority", True),
    "rho_model": ("aligned", False),
    "rho_model_confident": ("aligned", True),
    "confident_share": ("confident", False),
}
#: Per-cell metrics contrasted by their difference (no per-sample pairing).
CELL_METRICS = (
    "diversity_lpips",
    "knn_cosine",
    "knn_l2",
    "fd",
    "fd_hard",
    "fd_training",
    "fid_classifier",
    "kid_classifier",
    "fid",
    "label_adherence",
    "mean_confidence",
    "group_share",
)


def cell_columns(table: pd.DataFrame) -> list[str]:
    """The grid columns of ``table`` that identify a cell across its trained models."""
    return [c for c in GRID_COLUMNS if c in table.columns and c != MODEL]


def _key(values: Iterable[Any]) -> tuple:
    """A hashable key with NaN / None as one value."""
    return tuple(None if pd.isna(v) else v for v in values)


def _rows(table: pd.DataFrame, columns: Sequence[str]) -> dict[tuple, pd.DataFrame]:
    return {
        _key(k if isinstance(k, tuple) else (k,)): g
        for k, g in table.groupby(list(columns), sort=False, dropna=False)
    }


# --------------------------------------------------------------------------------------------
# aggregate
# --------------------------------------------------------------------------------------------
def aggregate(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per cell and metric row: ``value`` (mean over models), ``ci_low`` / ``ci_high``,
    ``method`` and ``band`` (``stats.intervals.band_label``), ``n_models``, ``n_learned`` (models
    the probe says learned), ``model_min`` / ``model_max`` (the per-model values' range)."""
    cells = cell_columns(metrics)
    keys = cells + [c for c in METRIC_KEYS if c in metrics.columns]
    out = []
    for key, g in metrics.groupby(keys, sort=False, dropna=False):
        vals = g["value"].to_numpy(dtype=float)
        a = stats.across_models(vals, g.get("ci_low"), g.get("ci_high"))
        finite = vals[np.isfinite(vals)]
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                **a,
                "band": stats.band_label(a["n_models"], a["method"]),
                "n_learned": int(g["probe_learned"].sum()) if "probe_learned" in g else np.nan,
                "model_min": float(finite.min()) if len(finite) else np.nan,
                "model_max": float(finite.max()) if len(finite) else np.nan,
            }
        )
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# contrasts
# --------------------------------------------------------------------------------------------
def _reference(column: str, values: Sequence[Any]) -> Any:
    ref = CONTRASTS[column]["reference"]
    if ref == "fewest":
        return min(values)
    if ref == "shallowest":
        return min(values, key=lambda d: (DEPTH_ORDER.index(d) if d in DEPTH_ORDER else 99, d))
    return ref if ref in list(values) else None


def contrast_pairs(
    cells: pd.DataFrame,
    joint: Sequence[Sequence[str]] = (),
    between: Sequence[tuple[str, Any, Any]] = (),
) -> list[tuple[str, tuple, tuple]]:
    """``[(vary, reference cell key, cell key), ...]``: every cell against the cell that
    differs from it only in one column (and the columns that change with it), which holds
    that column's reference value. ``joint``: column sets varied together (each a claim's
    ``vary`` list, e.g. steps and S_churn), each cell that differs from the set's reference
    cell (every column at its reference) in all of its columns, ``vary`` ``"steps+s_churn"``.
    ``between``: ``(column, from, to)`` pairs of two values neither of which need be the
    reference (a claim's ``guidance 1 -> 3``), each cell at ``to`` against the cell at
    ``from`` that differs from it only there. ``cells``: one row per cell, its
    ``cell_columns``."""
    columns = list(cells.columns)
    out = []
    sets = [(c,) for c in CONTRASTS] + [tuple(j) for j in joint if len(j) > 1]
    for varied in sets:
        if any(c not in columns or cells[c].nunique(dropna=True) < 2 for c in varied):
            continue
        for g in _groups(cells, varied):
            g = g.dropna(subset=list(varied))
            refs = {c: _reference(c, g[c].tolist()) for c in varied}
            if any(r is None for r in refs.values()):
                continue
            at_ref = np.logical_and.reduce([(g[c] == refs[c]).to_numpy() for c in varied])
            if at_ref.sum() != 1:
                continue
            ref_key = _key(g[at_ref].iloc[0])
            differs = np.logical_and.reduce([(g[c] != refs[c]).to_numpy() for c in varied])
            for _, row in g[differs].iterrows():
                out.append(("+".join(varied), ref_key, _key(row)))
    return out + [p for p in _between_pairs(cells, between) if p not in out]


def _groups(cells: pd.DataFrame, varied: Sequence[str]) -> Iterator[pd.DataFrame]:
    """The cells in groups that agree on every column but ``varied`` and the columns that
    change with them (``CONTRASTS[c]["with"]``): the cells a contrast may pair."""
    moving = set(varied).union(*(CONTRASTS[c].get("with", ()) for c in varied))
    rest = [c for c in cells.columns if c not in moving]
    if not rest:
        yield cells
        return
    for _k, g in cells.groupby(rest, sort=False, dropna=False):
        yield g


def _between_pairs(
    cells: pd.DataFrame, between: Sequence[tuple[str, Any, Any]]
) -> list[tuple[str, tuple, tuple]]:
    """``contrast_pairs``' pairs of two given values of one column, the values matched as
    ``vary_value`` names them (a claim's 3 is the cell's 3.0), as claims find contrasts."""
    out = []
    for column, a, b in between:
        if column not in cells.columns:
            continue
        for g in _groups(cells, (column,)):
            names = g[column].map(fmt_value)
            at_a, at_b = g[names == vary_value(column, a)], g[names == vary_value(column, b)]
            if len(at_a) == 1 and len(at_b) == 1:
                out.append((column, _key(at_a.iloc[0]), _key(at_b.iloc[0])))
    return out


def vary_value(vary: str | Sequence[str], values: Mapping[str, Any] | Sequence[Any]) -> str:
    """How a contrast names a cell's value of ``vary`` (``"6"``; joint: ``"6/0"``)."""
    names = vary.split("+") if isinstance(vary, str) else list(vary)
    if isinstance(values, Mapping):
        values = [values[c] for c in names]
    elif isinstance(values, str) or not isinstance(values, Sequence):
        values = [values]
    return "/".join(fmt_value(v) for v in values)


def _outcome(pred: pd.DataFrame, column: str, threshold: float) -> np.ndarray:
    if column == "confident":
        return pred["confidence"].to_numpy(dtype=float) >= threshold
    return pred[column].to_numpy(dtype=bool)


def _sample_contrasts(
    ref: pd.DataFrame, cell: pd.DataFrame, threshold: float
) -> list[dict[str, Any]]:
    """Per-sample paired contrasts of one model's two cells (predictions rows)."""
    a = ref.sort_values("sample_index")
    b = cell.sort_values("sample_index")
    if len(a) != len(b) or not np.array_equal(a["seed"].to_numpy(), b["seed"].to_numpy()):
        raise ValueError("contrast: the two cells do not share their sample seeds")
    conf = (a["confidence"].to_numpy(dtype=float) >= threshold) & (
        b["confidence"].to_numpy(dtype=float) >= threshold
    )
    rows = []
    for metric, (column, confident_only) in SAMPLE_METRICS.items():
        if column not in a.columns and column != "confident":
            continue
        x, y = _outcome(a, column, threshold), _outcome(b, column, threshold)
        if confident_only:
            x, y = x[conf], y[conf]
        r = stats.paired_binary(x, y)
        rows.append(
            {
                "metric": metric,
                **r,
                "value_from": float(x.mean()) if len(x) else np.nan,
                "value_to": float(y.mean()) if len(y) else np.nan,
                "method": stats.SAMPLING if np.isfinite(r["ci_low"]) else stats.NO_INTERVAL,
            }
        )
    return rows


def _cell_contrasts(ref: pd.DataFrame, cell: pd.DataFrame) -> list[dict[str, Any]]:
    """Per-cell metric differences of one model's two cells (metrics rows)."""
    keys = [c for c in METRIC_KEYS if c in ref.columns]
    a = ref[ref["metric"].isin(CELL_METRICS)]
    b = cell[cell["metric"].isin(CELL_METRICS)]
    av = {_key(k): v for *k, v in a[[*keys, "value"]].itertuples(index=False)}
    rows = []
    for *k, v in b[[*keys, "value"]].itertuples(index=False):
        k = _key(k)
        if k in av:
            meta = dict(zip(keys, k, strict=True))
            rows.append(
                {
                    **meta,
                    "effect": float(v) - float(av[k]),
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "p": np.nan,
                    "value_from": float(av[k]),
                    "value_to": float(v),
                    "method": stats.NO_INTERVAL,
                }
            )
    return rows


def across_row(model_rows: pd.DataFrame) -> dict[str, Any]:
    """The across-model row of one contrast from its per-model rows."""
    eff = model_rows["effect"].to_numpy(dtype=float)
    a = stats.across_models(eff, model_rows["ci_low"], model_rows["ci_high"])
    n = a["n_models"]
    mean = a["value"]
    if n >= 2:
        p = stats.interval_p(mean, a["ci_low"], a["ci_high"], n)
    elif n == 1:
        p = float(model_rows["p"].to_numpy(dtype=float)[np.isfinite(eff)][0])
    else:
        p = np.nan
    sign = np.sign(mean) if np.isfinite(mean) else 0.0
    out = {
        "effect": mean,
        "ci_low": a["ci_low"],
        "ci_high": a["ci_high"],
        "p": p,
        "method": a["method"],
        "band": stats.band_label(n, a["method"]),
        "n_models": n,
        "k_same_sign": int(np.sum(np.sign(eff[np.isfinite(eff)]) == sign)) if sign else 0,
        "value_from": (
            float(np.nanmean(model_rows["value_from"]))
            if n and model_rows["value_from"].notna().any()
            else np.nan
        ),
        "value_to": float(np.nanmean(model_rows["value_to"])) if n else np.nan,
    }
    if "learned" in model_rows:
        out["n_learned"] = int(model_rows["learned"].sum())
    for c in ("n_pairs", "n_lost", "n_gained"):
        if c in model_rows:
            out[c] = model_rows[c].sum(min_count=1)
    return out


def _model_contrasts(
    metrics: tuple[pd.DataFrame, pd.DataFrame],
    predictions: tuple[pd.DataFrame | None, pd.DataFrame | None],
    confidence_threshold: float,
) -> list[dict[str, Any]]:
    """One model's contrast rows between its reference cell and its cell (metrics rows, and
    predictions rows where both cells have them), each with the probe's verdict on both."""
    m_ref, m_cell = metrics
    learned = (
        bool(m_ref["probe_learned"].all() and m_cell["probe_learned"].all())
        if ("probe_learned" in m_ref)
        else True
    )
    rows = _cell_contrasts(m_ref, m_cell)
    if predictions[0] is not None and predictions[1] is not None:
        rows = _sample_contrasts(*predictions, confidence_threshold) + rows
    return [{"learned": learned, **r} for r in rows]


def contrasts(
    metrics: pd.DataFrame,
    predictions: pd.DataFrame,
    confidence_threshold: float,
    joint: Sequence[Sequence[str]] = (),
    between: Sequence[tuple[str, Any, Any]] = (),
) -> pd.DataFrame:
    """Every contrast of the run (``contrast_pairs``, with the ``joint`` column sets and the
    ``between`` value pairs) for every model and across models.

    Columns: ``level`` ("model" / "across"), ``contrast`` (the id its model and across rows
    share), ``vary``, ``from_value`` / ``to_value`` (as
    figures print them), the cell's grid columns and the reference cell's (``ref_``-prefixed),
    ``train_seed`` (model rows), ``metric`` (with ``k``, ``group``, ``backbone``), ``effect``
    (to - from), ``ci_low`` / ``ci_high``, ``p`` (model: McNemar's exact test for per-sample
    outcomes; across: the t-test over models, or the one model's), ``method``, ``band``,
    ``n_models``, ``k_same_sign`` (models whose effect has the mean's sign), ``learned`` /
    ``n_learned`` (the probe found both models learned), ``n_pairs``, ``n_lost`` / ``n_gained``
    (samples whose outcome went 1 -> 0 / 0 -> 1: for ``minority_share``, minority -> majority
    and back, the same-seed flips), ``value_from`` / ``value_to``."""
    cells = cell_columns(metrics)
    cell_table = metrics[cells].drop_duplicates().reset_index(drop=True)
    pairs = contrast_pairs(cell_table, joint, between)
    if not pairs:
        return pd.DataFrame(columns=["level", "contrast", "vary", "metric", "effect"])
    by_metrics = _rows(metrics, [*cells, MODEL])
    by_preds = _rows(predictions, [*cells, MODEL])
    seeds = sorted({k[-1] for k in by_metrics})
    out = []
    for i, (column, ref_key, key) in enumerate(pairs):
        cell = dict(zip(cells, key, strict=True))
        ref = {f"ref_{c}": v for c, v in zip(cells, ref_key, strict=True)}
        ref_cell = dict(zip(cells, ref_key, strict=True))
        head = {
            "contrast": i,
            "vary": column,
            "from_value": vary_value(column, ref_cell),
            "to_value": vary_value(column, cell),
        }
        model_rows = []
        for seed in seeds:
            m_ref, m_cell = by_metrics.get((*ref_key, seed)), by_metrics.get((*key, seed))
            if m_ref is not None and m_cell is not None:
                p_pair = by_preds.get((*ref_key, seed)), by_preds.get((*key, seed))
                rows = _model_contrasts((m_ref, m_cell), p_pair, confidence_threshold)
                model_rows += [{MODEL: seed, **r} for r in rows]
        if not model_rows:
            continue
        per_model = pd.DataFrame(model_rows)
        for c in METRIC_KEYS:
            if c not in per_model:
                per_model[c] = None
        for mkey, g in per_model.groupby(list(METRIC_KEYS), sort=False, dropna=False):
            meta = dict(zip(METRIC_KEYS, mkey, strict=True))
            for r in g.to_dict("records"):
                out.append(
                    {
                        "level": "model",
                        **head,
                        **cell,
                        **ref,
                        **r,
                        "band": stats.band_label(1, r["method"]),
                        "n_models": 1,
                        "k_same_sign": int(np.sign(r["effect"]) != 0),
                    }
                )
            out.append(
                {"level": "across", **head, **cell, **ref, MODEL: np.nan, **meta, **across_row(g)}
            )
    table = pd.DataFrame(out)
    table["k"] = table["k"].astype("Int64")
    return table
