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
``biaslab.figures.toy.abstraction_curve``'s table and the same-seed grids their samples and
predictions.
"""

from __future__ import annotations

from biaslab.figures.common import save
from biaslab.figures.contrasts import fig_knob_effects
from biaslab.figures.depth import fig_knn_vs_k, fig_minority_vs_depth
from biaslab.figures.diagnostics import fig_loss_curves, fig_toy
from biaslab.figures.difflens import (
    fig_difflens_gallery,
    fig_difflens_probes,
    fig_fd_vs_intervention,
)
from biaslab.figures.frontier import (
    fig_bias_diversity_frontier,
    fig_bias_quality_frontier,
    pareto_front,
)
from biaslab.figures.pretrained import fig_bypass_grid, fig_bypass_prompts, fig_pretrained_fd
from biaslab.figures.probe import fig_probe
from biaslab.figures.same_seed import differing_columns, fig_same_seed_grid, minority_first_columns
from biaslab.figures.sampler import (
    fig_bypass,
    fig_rho_vs_guidance,
    fig_rho_vs_rho_data,
    fig_rho_vs_steps,
)
from biaslab.figures.tables import cell_table, depth_family, knn_table, markdown_table

__all__ = [
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
