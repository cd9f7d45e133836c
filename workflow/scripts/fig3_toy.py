"""Fig. 3 toy: majority share under repeated 2x2 majority pooling (no training)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import matplotlib

matplotlib.use("Agg")

from biaslab.base.io import save_figure, write_parquet
from biaslab.figures import fig_toy
from biaslab.figures.toy import abstraction_curve

result = abstraction_curve(seed=0)
write_parquet(result, snakemake.output.table)
save_figure(fig_toy(result), [snakemake.output.png, snakemake.output.pdf])
