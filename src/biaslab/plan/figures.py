"""The table of figures: every figure the workflow draws, one row each.

A row names the figure (its rule and the stem of its files under ``results/figures/``), the
function that draws it (``module:function`` under ``biaslab.figures``), the gathered table it
reads, its report caption (``workflow/report/<caption>``) and category, and when a run draws
it (``when``: which families or studies the plan holds). ``workflow/rules/figures.smk`` makes
one rule per row that has a ``table``; rows without one have a rule of their own (several
inputs, or one figure per model: ``per``). ``Targets.figure_targets`` reads ``when`` and
``per``. Adding a figure = its function + a row here + its caption.

No plotting library is imported here: the workflow reads this table at parse time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The gathered tables figures read.
METRICS = "results/metrics.parquet"
PRETRAINED_METRICS = "results/pretrained/metrics.parquet"

#: What ``when`` may say: the run draws the figure when the plan has ...
WHEN = {
    "trained": "any trained family",
    "conditional": "a class-conditional family",
    "bypass": "a family whose grid varies the mid-block bypass",
    "difflens": "a family with a DiffLens section",
    "depth": "the depth family (model.depths not empty)",
    "pretrained": "any pretrained model",
    "bypass_study": "a text-to-image model in the bypass study",
}
#: What ``per`` may say: one figure per ... (the stem's wildcards).
PER = {
    "difflens_model": "model with an SAE: {dataset}, {fraction}, {depth}, {seed}",
    "depth_skew_seed": "skew and training seed of the depth family: {fraction}, {seed}",
    "bypass_model": "text-to-image model of the bypass study: {pretrained}",
}


@dataclass(frozen=True)
class FigureSpec:
    """One figure: see the module docstring. ``options``: keys of the config's ``figures``
    section passed to the function as keyword arguments; ``select``: a function of
    ``biaslab.figures.tables`` applied to the table first (``depth_family``)."""

    name: str
    draw: str
    caption: str
    category: str
    when: str = "trained"
    table: str | None = METRICS
    stem: str | None = None
    per: str | None = None
    options: tuple[str, ...] = ()
    select: str | None = None

    @property
    def file_stem(self) -> str:
        return self.stem or self.name


def _row(name: str, draw: str, caption: str, category: str, **kw: Any) -> FigureSpec:
    return FigureSpec(name=name, draw=draw, caption=caption, category=category, **kw)


_SAMPLER = "Sampler settings"
_LENS = "Mechanistic debiasing"
_PRE = "Pretrained models"
#: Every figure, in report order.
FIGURE_TABLE: tuple[FigureSpec, ...] = (
    # "Deeper Diffusion Models Amplify Bias"
    _row(
        "fig4_minority_vs_depth",
        "depth:fig_minority_vs_depth",
        "fig4.rst",
        "Bias vs depth",
        when="depth",
        options=("confident_share_min",),
        select="depth_family",
    ),
    _row(
        "fig_knn_vs_k",
        "depth:fig_knn_vs_k",
        "knn.rst",
        "Memorization",
        when="depth",
        select="depth_family",
    ),
    _row(
        "fig5_same_seed",
        "same_seed:fig_same_seed_grid",
        "fig5.rst",
        "Same-seed samples",
        when="depth",
        table=None,
        stem="fig5_same_seed/minority~{fraction}_seed~{seed}",
        per="depth_skew_seed",
    ),
    _row(
        "figA_minority_seeds",
        "same_seed:fig_same_seed_grid",
        "figA.rst",
        "Same-seed samples",
        when="depth",
        table=None,
        stem="figA_minority_seeds/minority~{fraction}_seed~{seed}",
        per="depth_skew_seed",
    ),
    _row("fig3_toy", "diagnostics:fig_toy", "fig3.rst", "Toy (Fig. 3)", table=None),
    _row(
        "fig_loss_curves",
        "diagnostics:fig_loss_curves",
        "loss.rst",
        "Training",
        table="results/train_log.parquet",
    ),
    _row(
        "fig_probe",
        "probe:fig_probe",
        "probe.rst",
        "What the model knows",
        table="results/probe.parquet",
    ),
    # "How I Met Your Bias"
    _row(
        "fig_rho_vs_rho_data",
        "sampler:fig_rho_vs_rho_data",
        "sampler.rst",
        _SAMPLER,
        when="conditional",
    ),
    _row(
        "fig_rho_vs_steps", "sampler:fig_rho_vs_steps", "sampler.rst", _SAMPLER, when="conditional"
    ),
    _row(
        "fig_rho_vs_guidance",
        "sampler:fig_rho_vs_guidance",
        "sampler.rst",
        _SAMPLER,
        when="conditional",
    ),
    _row("fig_bypass", "sampler:fig_bypass", "sampler.rst", _SAMPLER, when="bypass"),
    _row(
        "fig_bias_diversity_frontier",
        "frontier:fig_bias_diversity_frontier",
        "sampler.rst",
        _SAMPLER,
    ),
    _row(
        "fig_bias_quality_frontier", "frontier:fig_bias_quality_frontier", "sampler.rst", _SAMPLER
    ),
    # DiffLens
    _row(
        "fig_fd_vs_intervention",
        "difflens:fig_fd_vs_intervention",
        "fd.rst",
        _LENS,
        when="difflens",
    ),
    _row(
        "fig_difflens_probes",
        "difflens:fig_difflens_probes",
        "difflens_probes.rst",
        _LENS,
        when="difflens",
        table="results/difflens/probes.parquet",
    ),
    _row(
        "fig_difflens_gallery",
        "difflens:fig_difflens_gallery",
        "difflens_gallery.rst",
        _LENS,
        when="difflens",
        table=None,
        stem="fig_difflens_gallery/{dataset}/minority~{fraction}_depth~{depth}_seed~{seed}",
        per="difflens_model",
    ),
    # the claims' forest plot
    _row(
        "fig_knob_effects",
        "contrasts:fig_knob_effects",
        "knob_effects.rst",
        "Claims",
        table="results/contrasts.parquet",
    ),
    # pretrained models
    _row(
        "fig_pretrained_fd",
        "pretrained:fig_pretrained_fd",
        "pretrained_fd.rst",
        _PRE,
        when="pretrained",
        table=PRETRAINED_METRICS,
    ),
    _row(
        "fig_bypass_prompts",
        "pretrained:fig_bypass_prompts",
        "bypass_prompts.rst",
        _PRE,
        when="bypass_study",
        table=None,
    ),
    _row(
        "fig_bypass_grid",
        "pretrained:fig_bypass_grid",
        "bypass_grid.rst",
        _PRE,
        when="bypass_study",
        table=None,
        stem="fig_bypass_grid/{pretrained}",
        per="bypass_model",
    ),
)
#: The rows by name.
FIGURES: Mapping[str, FigureSpec] = {spec.name: spec for spec in FIGURE_TABLE}


def table_figures() -> list[FigureSpec]:
    """The rows drawn by the one generic rule per figure (``workflow/scripts/figure.py``)."""
    return [spec for spec in FIGURE_TABLE if spec.table is not None]


def draw_function(name: str) -> Callable[..., Any]:
    """The function that draws figure ``name`` (imports ``biaslab.figures``, matplotlib)."""
    spec = FIGURES[name]
    module, function = spec.draw.split(":")
    draw = getattr(importlib.import_module(f"biaslab.figures.{module}"), function)
    if spec.select is None:
        return draw
    select = getattr(importlib.import_module("biaslab.figures.tables"), spec.select)

    def on_selection(table: Any, **kwargs: Any) -> Any:
        return draw(select(table), **kwargs)

    on_selection.__name__ = on_selection.__qualname__ = function
    on_selection.__doc__ = f"``{function}`` of ``{spec.select}(table)``."
    return on_selection


def figure_options(name: str, figures_config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of figure ``name`` from the config's ``figures`` section."""
    return {key: figures_config[key] for key in FIGURES[name].options}
