"""All classes of the dataset, resized and split into held-in / held-out, plus a manifest."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import write_npz, write_parquet
from biaslab.datasets import build_base

base, table = build_base(snakemake.params.data)
write_npz(snakemake.output.data, **base)
write_parquet(table, snakemake.output.manifest)
print(table.to_string(), file=sys.stderr)
