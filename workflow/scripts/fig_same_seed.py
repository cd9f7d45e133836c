"""Fig. 5 analogue: the first samples of every depth, same seeds, with predicted classes."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from biaslab.figures import fig_same_seed_grid
from biaslab.io import load_npz, save_figure

depths = snakemake.params.depths
samples = {d: load_npz(p)["images"] for d, p in zip(depths, snakemake.input.samples, strict=True)}
preds = {
    d: pd.read_parquet(p).sort_values("sample_index")["pred_class"].to_numpy()
    for d, p in zip(depths, snakemake.input.predictions, strict=True)
}
names = {c: str(c) for c in snakemake.params.classes}
title = (
    f"minority {snakemake.wildcards.fraction}, training seed {snakemake.wildcards.seed}, "
    f"{snakemake.params.cell}"
)
fig = fig_same_seed_grid(samples, preds, names, n=snakemake.params.n, title=title)
save_figure(fig, [snakemake.output.png, snakemake.output.pdf])
