"""Concatenate the pretrained cells' metrics and predictions (duplicate-key checked)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import read_parquet, write_parquet
from biaslab.stats.gather import gather

for key in ("metrics", "predictions"):
    paths = [str(p) for p in snakemake.input[key]]
    table = gather([read_parquet(p) for p in paths], f"pretrained_{key}", paths)
    write_parquet(table, snakemake.output[key])
