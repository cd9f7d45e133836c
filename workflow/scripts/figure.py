"""Draw one figure from a gathered table (PNG and PDF).

The figure is ``biaslab.figures.FIGURES[name]``, ``name`` the stem of the PNG output
(``results/figures/fig4_minority_vs_depth.png`` -> ``fig4_minority_vs_depth``), drawn from the
rule's one input table (``metrics.parquet``, or ``train_log.parquet`` for the loss curves),
with the rule's ``params.options`` as keyword arguments.
"""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from biaslab.figures import FIGURES, save
from biaslab.io import read_parquet

name = Path(snakemake.output.png).stem
fig = FIGURES[name](read_parquet(snakemake.input[0]), **snakemake.params.get("options", {}))
save(fig, [snakemake.output.png, snakemake.output.pdf])
