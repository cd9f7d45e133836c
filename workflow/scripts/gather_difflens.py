"""Concatenate the per-model DiffLens tables (probes, ranked features, SAE training logs)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import read_parquet, write_parquet
from biaslab.stats.gather import gather

for key, kind in (
    ("probes", "difflens_probes"),
    ("features", "difflens_features"),
    ("sae", "difflens_sae"),
):
    paths = [str(p) for p in snakemake.input[key]]
    write_parquet(gather([read_parquet(p) for p in paths], kind, paths), snakemake.output[key])
