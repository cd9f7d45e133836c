"""Figures and tables from the tidy tables of the pipeline.

* ``depth`` - "Deeper Diffusion Models Amplify Bias": Fig. 4, kNN vs k;
* ``diagnostics`` - the training loss curves and the Fig. 3 toy;
* ``same_seed`` - its same-seed grids (Figs. 5 and A);
* ``sampler`` - "How I Met Your Bias": the sampler-knob study and the mid-block bypass;
* ``frontier`` - bias vs diversity / FID across every cell, with the Pareto frontier;
* ``difflens`` - mechanistic debiasing: FD vs the SAE intervention, h-space probes;
* ``probe`` - what each model knows: the attribute recovered vs the noise level;
* ``pretrained`` - models from local folders: FD per cell, the bypass study (Fig. 6);
* ``tables`` - depth family, Table 3 (kNN), per-cell table, Markdown;
* ``common`` - the helpers they share (facets, the aggregate over trained models and the
  legend naming its band, robust readouts, depth colours, saving).

``FIGURES`` maps the name of every figure the workflow draws (the stem of its file under
``results/figures/``) to the function that draws it. The figures made from one gathered table
(``metrics.parquet`` or, for the loss curves, ``train_log.parquet``) take that table as their
only argument (the depth figures select ``depth_family`` themselves); ``fig3_toy`` takes
``biaslab.toy.abstraction_curve``'s table and the same-seed grids their samples and predictions.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from matplotlib.figure import Figure

from .common import save
from .contrasts import fig_knob_effects
from .depth import fig_knn_vs_k, fig_minority_vs_depth
from .diagnostics import fig_loss_curves, fig_toy
from .difflens import fig_difflens_gallery, fig_difflens_probes, fig_fd_vs_intervention
from .frontier import fig_bias_diversity_frontier, fig_bias_quality_frontier, pareto_front
from .pretrained import fig_bypass_grid, fig_bypass_prompts, fig_pretrained_fd
from .probe import fig_probe
from .same_seed import differing_columns, fig_same_seed_grid, minority_first_columns
from .sampler import fig_bypass, fig_rho_vs_guidance, fig_rho_vs_rho_data, fig_rho_vs_steps
from .tables import cell_table, depth_family, knn_table, markdown_table

__all__ = [
    "FIGURES",
    "cell_table",
    "depth_family",
    "differing_columns",
    "fig_bias_diversity_frontier",
    "fig_bias_quality_frontier",
    "fig_bypass",
    "fig_bypass_grid",
    "fig_bypass_prompts",
    "fig_difflens_gallery",
    "fig_difflens_probes",
    "fig_fd_vs_intervention",
    "fig_knn_vs_k",
    "fig_knob_effects",
    "fig_loss_curves",
    "fig_minority_vs_depth",
    "fig_pretrained_fd",
    "fig_probe",
    "fig_rho_vs_guidance",
    "fig_rho_vs_rho_data",
    "fig_rho_vs_steps",
    "fig_same_seed_grid",
    "fig_toy",
    "knn_table",
    "markdown_table",
    "minority_first_columns",
    "pareto_front",
    "save",
]


def _on_depth_family(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """``draw`` applied to the paper's depth family of a metrics table (unconditional models,
    no bypass: ``depth_family``)."""

    def figure(metrics: pd.DataFrame, **kwargs) -> Figure:
        return draw(depth_family(metrics), **kwargs)

    figure.__name__ = figure.__qualname__ = draw.__name__
    figure.__doc__ = f"``{draw.__name__}`` of ``depth_family(metrics)``."
    return figure


#: Figure name (as in the workflow's targets) -> the function that draws it.
FIGURES: dict[str, Callable[..., Figure]] = {
    # "Deeper Diffusion Models Amplify Bias"
    "fig4_minority_vs_depth": _on_depth_family(fig_minority_vs_depth),
    "fig_knn_vs_k": _on_depth_family(fig_knn_vs_k),
    "fig_loss_curves": fig_loss_curves,
    "fig_probe": fig_probe,
    "fig3_toy": fig_toy,
    "fig5_same_seed": fig_same_seed_grid,
    "figA_minority_seeds": fig_same_seed_grid,  # columns=minority_first_columns(...)
    # "How I Met Your Bias"
    "fig_rho_vs_rho_data": fig_rho_vs_rho_data,
    "fig_rho_vs_steps": fig_rho_vs_steps,
    "fig_rho_vs_guidance": fig_rho_vs_guidance,
    "fig_bypass": fig_bypass,
    "fig_bias_diversity_frontier": fig_bias_diversity_frontier,
    "fig_bias_quality_frontier": fig_bias_quality_frontier,
    # DiffLens
    "fig_fd_vs_intervention": fig_fd_vs_intervention,
    "fig_difflens_probes": fig_difflens_probes,
    "fig_difflens_gallery": fig_difflens_gallery,  # per model, from activations + features
    # claims (results/contrasts.parquet)
    "fig_knob_effects": fig_knob_effects,
    # pretrained models (results/pretrained/metrics.parquet)
    "fig_pretrained_fd": fig_pretrained_fd,
    "fig_bypass_prompts": fig_bypass_prompts,
    "fig_bypass_grid": fig_bypass_grid,  # per model, from the bypass study's samples
}
