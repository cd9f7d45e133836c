"""The same-seed similarity of one SAE-intervened cell to its unintervened twin (DiffLens'
CLIP-I analogue), as a metrics table gathered with the cells' metrics."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.evaluate import MetricsConfig, same_seed_table
from biaslab.io import load_npz, write_parquet

torch.set_num_threads(snakemake.threads)
table = same_seed_table(
    load_npz(snakemake.input.samples),
    load_npz(snakemake.input.reference_samples),
    snakemake.input.classifier,
    snakemake.params.grid,
    MetricsConfig.from_dict(snakemake.params.metrics),
)
print(table.to_string(), file=sys.stderr)
write_parquet(table, snakemake.output.metrics)
