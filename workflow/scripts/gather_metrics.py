"""Concatenate the per-cell tidy tables (no path parsing: every row carries its grid); a grid
key gathered twice is an error."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import read_parquet, write_parquet
from biaslab.stats.gather import attach_probe, gather


def read(paths):
    return [read_parquet(p) for p in paths], [str(p) for p in paths]


tables, paths = read(snakemake.input.probes)
probe = gather(tables, "probe", paths)
write_parquet(probe, snakemake.output.probe)
for key in ("metrics", "predictions"):
    tables, paths = read(snakemake.input[key])
    write_parquet(attach_probe(gather(tables, key, paths), probe), snakemake.output[key])
tables, paths = read(snakemake.input.logs)
write_parquet(gather(tables, "train_log", paths), snakemake.output.train_log)
