"""Draw one figure from a gathered table (PNG and PDF)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from biaslab import figures
from biaslab.io import save_figure

kind = snakemake.params.kind
if kind == "loss_curves":
    fig = figures.fig_loss_curves(pd.read_parquet(snakemake.input.train_log))
else:
    metrics = pd.read_parquet(snakemake.input.metrics)
    fig = {"minority_vs_depth": figures.fig_minority_vs_depth, "knn_vs_k": figures.fig_knn_vs_k}[
        kind
    ](metrics)
save_figure(fig, [snakemake.output.png, snakemake.output.pdf])
