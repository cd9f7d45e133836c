"""Draw one figure from a gathered table (PNG and PDF).

The figure is the row of ``biaslab.plan.figures.FIGURE_TABLE`` named by the rule (the stem of
its PNG, ``results/figures/fig4_minority_vs_depth.png`` -> ``fig4_minority_vs_depth``), drawn
by the row's function from the rule's one input table, with ``params.options`` as keyword
arguments.
"""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from biaslab.base.io import read_parquet
from biaslab.figures.common import save
from biaslab.plan.figures import draw_function

name = Path(snakemake.output.png).stem
draw = draw_function(name)
fig = draw(read_parquet(snakemake.input[0]), **snakemake.params.get("options", {}))
save(fig, [snakemake.output.png, snakemake.output.pdf])
