"""Table 3 analogue (kNN similarity by depth and k) and a Markdown summary of the metrics."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.evaluate import summary_table
from biaslab.figures import depth_family, knn_table, markdown_table
from biaslab.io import atomic_path, read_parquet

metrics = read_parquet(snakemake.input.metrics)
with atomic_path(snakemake.output.knn) as tmp:
    knn_table(depth_family(metrics)).to_csv(tmp, index=False)
with atomic_path(snakemake.output.summary) as tmp:
    tmp.write_text(markdown_table(summary_table(metrics)) + "\n")
