"""The training set at one minority (bias-conflicting) fraction, plus a manifest."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import load_npz, write_npz, write_parquet
from biaslab.datasets import build_train

train, table = build_train(
    load_npz(snakemake.input.base), snakemake.params.data, snakemake.params.fraction
)
write_npz(snakemake.output.data, **train)
write_parquet(table, snakemake.output.manifest)
print(table.to_string(), file=sys.stderr)
