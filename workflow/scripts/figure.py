"""Draw one figure from a gathered table (PNG and PDF)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from biaslab import figures, figures_sampler
from biaslab.io import save_figure

kind = snakemake.params.kind
if kind == "loss_curves":
    fig = figures.fig_loss_curves(pd.read_parquet(snakemake.input.train_log))
else:
    metrics = pd.read_parquet(snakemake.input.metrics)
    depth_figures = {
        "minority_vs_depth": figures.fig_minority_vs_depth,
        "knn_vs_k": figures.fig_knn_vs_k,
    }
    if kind in depth_figures:  # the paper's depth figures: unconditional models, no bypass
        fig = depth_figures[kind](figures.depth_family(metrics))
    else:
        fig = getattr(figures_sampler, f"fig_{kind}")(metrics)
save_figure(fig, [snakemake.output.png, snakemake.output.pdf])
