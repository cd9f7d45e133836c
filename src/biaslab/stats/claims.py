"""The config's claims: named predicates over a run's evidence, each given a verdict across
trained models (``stats.intervals.verdict``: held / reversed / inconclusive).

Two kinds, one table (``evaluate_claims``; ``claims_markdown`` prints it):

* **contrast claims** (``vary``, ``from``, ``to``, ``expect``): the change of a metric between
  two cells that differ in one knob, paired within each model over shared sample seeds
  (``stats.contrasts.contrasts``), e.g. "minority_share_confident decreases from depth 2 to 4"; a
  list ``vary`` varies its columns together (``from`` / ``to`` lists of the same length:
  ``vary: [steps, s_churn], from: [6, 0], to: [160, 60]``);
* **level claims** (``at_least`` or ``at_most``): a metric's value in every matching cell
  against a threshold, across the models (the t-interval over models of
  ``stats.intervals.across_models`` against it), e.g. "label_adherence >= 0.9" wherever the
  conditional readout is read.

Every claim may restrict its cells (``where``: grid columns), ask for ``min_models`` trained
models (fewer: inconclusive) and count only the models the probe says learned
(``learned_only``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from biaslab.base.columns import GRID_COLUMNS, KNOB_COLUMNS, fmt_value
from biaslab.stats import intervals as stats
from biaslab.stats.contrasts import METRIC_KEYS, MODEL, across_row, cell_columns, vary_value

#: The keys of a contrast claim (a level claim has none of them).
CONTRAST_KEYS = ("vary", "from", "to", "expect")
#: The threshold keys of a level claim -> the verdict's direction and the statement's sign.
LEVELS = {"at_least": ("increase", ">="), "at_most": ("decrease", "<=")}


def claim_key(claims: pd.DataFrame) -> list[str]:
    """What identifies a row of a claims table (``evaluate_claims``) across two runs of one
    config: the claim, its cell's grid columns and the metric row."""
    return ["claim", *cell_columns(claims), *[c for c in METRIC_KEYS if c in claims.columns]]


def level_of(claim: Mapping[str, Any]) -> tuple[str, float] | None:
    """``(key, threshold)`` of a level claim; None for a contrast claim."""
    keys = [k for k in LEVELS if claim.get(k) is not None]
    return (keys[0], float(claim[keys[0]])) if keys else None


def vary_of(claim: Mapping[str, Any]) -> str:
    """A contrast claim's ``vary`` as contrasts name it (a list: ``"steps+s_churn"``)."""
    vary = claim["vary"]
    return vary if isinstance(vary, str) else "+".join(vary)


def joint_sets(claims: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The column sets the claims vary together (``stats.contrasts.contrasts``' ``joint``)."""
    out = []
    for c in claims:
        v = c.get("vary")
        if v is not None and not isinstance(v, str) and tuple(v) not in out:
            out.append(tuple(v))
    return out


def between_pairs(claims: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any, Any]]:
    """The one-column value pairs the claims compare (``stats.contrasts.contrasts``' ``between``):
    every one-column contrast claim's ``(vary, from, to)``; the pairs with the column's
    reference are computed anyway and come out once."""
    out = []
    for c in claims:
        v = c.get("vary")
        if isinstance(v, str) and (v, c["from"], c["to"]) not in out:
            out.append((v, c["from"], c["to"]))
    return out


def claim_statement(claim: Mapping[str, Any]) -> str:
    """``minority_share_confident decreases from depth 2 to 4`` / ``label_adherence >= 0.9``
    / ``rho_model increases from steps+s_churn 6/0 to 160/60``."""
    level = level_of(claim)
    if level is not None:
        return f"{claim['metric']} {LEVELS[level[0]][1]} {fmt_value(level[1])}"
    verb = {"increase": "increases", "decrease": "decreases"}[claim["expect"]]
    vary = vary_of(claim)
    return (
        f"{claim['metric']} {verb} from {vary} {vary_value(vary, claim['from'])} "
        f"to {vary_value(vary, claim['to'])}"
    )


def _where(sel: pd.DataFrame, claim: Mapping[str, Any]) -> pd.DataFrame:
    for col, value in (claim.get("where") or {}).items():
        if col not in sel.columns:
            raise ValueError(f"claims[{claim['id']}].where: no grid column {col!r}")
        sel = sel[sel[col].map(fmt_value) == fmt_value(value)]
    return sel


def _contrast_rows(table: pd.DataFrame, claim: Mapping[str, Any]) -> pd.DataFrame:
    """The per-model contrast rows of a contrast claim (an error naming what the run can
    compare when none match)."""
    rows = table[table["level"] == "model"]
    vary = vary_of(claim)
    a, b = vary_value(vary, claim["from"]), vary_value(vary, claim["to"])
    sel = _where(
        rows[
            (rows["vary"] == vary)
            & (rows["from_value"] == a)
            & (rows["to_value"] == b)
            & (rows["metric"] == claim["metric"])
        ],
        claim,
    )
    if sel.empty:
        have = table[["vary", "from_value", "to_value"]].drop_duplicates()
        options = sorted(f"{v} {x} -> {y}" for v, x, y in have.itertuples(index=False))
        raise ValueError(
            f"claims[{claim['id']}]: no contrast {vary} {a} -> {b} of metric {claim['metric']!r}"
            f"{' where ' + str(dict(claim['where'])) if claim.get('where') else ''}; "
            f"the run has: {options}"
        )
    return sel


def _level_rows(metrics: pd.DataFrame | None, claim: Mapping[str, Any]) -> pd.DataFrame:
    """The per-model metric rows of a level claim, as contrast rows (``effect`` = the value,
    ``learned`` = the probe's verdict)."""
    if metrics is None:
        raise ValueError(f"claims[{claim['id']}]: a level claim needs the run's metrics")
    sel = _where(metrics[metrics["metric"] == claim["metric"]], claim)
    if sel.empty:
        have = sorted(metrics["metric"].unique())
        raise ValueError(
            f"claims[{claim['id']}]: no cell has metric {claim['metric']!r}"
            f"{' where ' + str(dict(claim['where'])) if claim.get('where') else ''}; "
            f"the run has: {have}"
        )
    sel = sel.rename(columns={"value": "effect"}).copy()
    sel["learned"] = sel["probe_learned"].astype(bool) if "probe_learned" in sel else True
    sel["p"] = np.nan
    sel["value_from"] = np.nan
    sel["value_to"] = sel["effect"]
    for c in ("ci_low", "ci_high"):
        if c not in sel:
            sel[c] = np.nan
    return sel


def _per_model(g: pd.DataFrame, sign: str) -> str:
    return "; ".join(
        f"seed {int(r[MODEL])}: {r['effect']:{sign}.3f}"
        + (f" (McNemar p {r['p']:.2g})" if np.isfinite(r["p"]) else "")
        for r in g.sort_values(MODEL).to_dict("records")
    )


_COPIED = (
    "effect",
    "ci_low",
    "ci_high",
    "p",
    "n_models",
    "k_same_sign",
    "n_learned",
    "band",
    "n_pairs",
    "n_lost",
    "n_gained",
)


def _verdict_row(claim: Mapping[str, Any], g: pd.DataFrame, cell: dict) -> dict[str, Any]:
    """One claims-table row: a claim's verdict on one cell from its per-model rows ``g``."""
    level = level_of(claim)
    a = across_row(g)
    min_models = int(claim.get("min_models", 1))
    if level is None:
        expect, shift = claim["expect"], 0.0
    else:
        expect, shift = LEVELS[level[0]][0], level[1]
        side = np.sign(g["effect"].to_numpy(dtype=float) - shift)
        a["k_same_sign"] = int(np.sum(side == (1 if expect == "increase" else -1)))
        a["p"] = np.nan  # the t-test of across_row is against 0, not the threshold
    v = stats.verdict(expect, a["ci_low"] - shift, a["ci_high"] - shift, a["n_models"], min_models)
    return {
        "claim": claim["id"],
        "statement": claim_statement(claim),
        "kind": "contrast" if level is None else "level",
        "vary": vary_of(claim) if level is None else None,
        "from_value": vary_value(vary_of(claim), claim["from"]) if level is None else None,
        "to_value": vary_value(vary_of(claim), claim["to"]) if level is None else None,
        "expect": claim.get("expect") if level is None else level[0],
        "threshold": np.nan if level is None else level[1],
        "min_models": min_models,
        "verdict": v,
        **{k: a.get(k) for k in _COPIED},
        "per_model": _per_model(g, "+" if level is None else ""),
        **{c: cell[c] for c in cell if not c.startswith("ref_")},
        "metric": claim["metric"],
    }


def evaluate_claims(
    table: pd.DataFrame,
    claims: Sequence[Mapping[str, Any]],
    metrics: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per claim and matching cell: the across-model contrast (a level claim: the
    across-model value of ``metrics``), its ``verdict`` (``stats.intervals.verdict``; ``min_models``
    trained models at least, default 1; with ``learned_only`` the models the probe says did
    not learn are left out first), the statement, and ``per_model``: each model's effect (or
    value) and paired test. A claim that matches nothing is an error naming it and what the
    run has."""
    out = []
    for claim in claims:
        is_level = level_of(claim) is not None
        model_rows = _level_rows(metrics, claim) if is_level else _contrast_rows(table, claim)
        if claim.get("learned_only", False):
            model_rows = model_rows[model_rows["learned"]]
            if model_rows.empty:
                raise ValueError(
                    f"claims[{claim['id']}]: learned_only, and the probe says no model of "
                    "its cells learned"
                )
        id_cols = [c for c in model_rows.columns if c.startswith("ref_") or c in GRID_COLUMNS]
        id_cols = [c for c in id_cols if c != MODEL] + [
            c for c in METRIC_KEYS if c != "metric" and c in model_rows.columns
        ]
        for key, g in model_rows.groupby(id_cols, sort=False, dropna=False):
            out.append(_verdict_row(claim, g, dict(zip(id_cols, key, strict=True))))
    return pd.DataFrame(out)


#: Grid columns a claims table always shows when they vary (beside the claim).
_SHOWN = (
    "dataset",
    "minority_fraction",
    "depth",
    *(k for k in KNOB_COLUMNS if k not in ("bypass_schedule", "timestep_spacing")),
    "objective",
)


def _interval(r: Mapping[str, Any]) -> str:
    if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
        sign = "+" if r.get("kind", "contrast") == "contrast" else ""
        return f"[{r['ci_low']:{sign}.3f}, {r['ci_high']:{sign}.3f}]"
    return "[no interval]"


def claims_markdown(claims: pd.DataFrame) -> str:
    """The claims table as Markdown: each claim's cell, effect (a level claim: value) with its
    interval and band, the models on the claimed side, each model's paired test and the
    verdict."""
    if claims.empty:
        return "No claims were configured (config key `claims`).\n"
    shown = [
        c
        for c in (*_SHOWN, *METRIC_KEYS[1:])
        if c in claims.columns and c not in ("vary",) and claims[c].nunique(dropna=False) > 1
    ]
    head = [
        "claim",
        "statement",
        *shown,
        "effect or value [95% CI]",
        "interval",
        "models on the claimed side",
        "probe: learned",
        "per model",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in claims.to_dict("records"):
        sign = "+" if r.get("kind", "contrast") == "contrast" else ""
        cells = [
            r["claim"],
            r["statement"],
            *(fmt_value(r[c]) for c in shown),
            f"{r['effect']:{sign}.3f} {_interval(r)}",
            r["band"],
            f"{r['k_same_sign']} of {r['n_models']}",
            f"{r['n_learned']} of {r['n_models']}" if pd.notna(r.get("n_learned")) else "-",
            r["per_model"],
            f"**{r['verdict']}**",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    note = (
        "\nEffect: the change of the metric from the reference cell to the cell (paired over "
        "shared sample seeds within each model); held / reversed: the 95% interval lies "
        "entirely on the expected / opposite side of 0; inconclusive otherwise. Value (level "
        "claims, `>=` / `<=`): the metric's mean over the models, held / reversed when its 95% "
        "interval lies entirely on the claimed / other side of the threshold. "
        "`*_confident` metrics count only samples the classifier recognises in both cells.\n"
    )
    return "\n".join(lines) + "\n" + note
