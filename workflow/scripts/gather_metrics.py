"""Concatenate the per-cell tidy tables (no path parsing: every row carries its grid)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from biaslab.io import read_parquet, write_parquet

for key in ("metrics", "predictions"):
    table = pd.concat([read_parquet(p) for p in snakemake.input[key]], ignore_index=True)
    write_parquet(table, snakemake.output[key])
log = pd.concat([read_parquet(p) for p in snakemake.input.logs], ignore_index=True)
write_parquet(log, snakemake.output.train_log)
