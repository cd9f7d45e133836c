"""A training set at one minority fraction, drawn from the held-in pool, plus a manifest."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.data import DataConfig, make_skewed, manifest
from biaslab.io import load_npz, write_npz, write_parquet

cfg = DataConfig(**snakemake.params.data)
fraction = snakemake.params.fraction
train = make_skewed(
    load_npz(snakemake.input.base), fraction, n_train=cfg.n_train, seed=cfg.split_seed
)
write_npz(snakemake.output.data, **train)
grid = {
    "dataset": cfg.dataset,
    "source": cfg.source,
    "resolution": cfg.resolution,
    "minority_fraction": fraction,
}
table = manifest({"train": train["y"]}, train["classes"], **grid)
write_parquet(table, snakemake.output.manifest)
print(table.to_string(), file=sys.stderr)
