"""Both classes of the dataset, resized and split into held-in / held-out, plus a manifest."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.data import DataConfig, make_base, manifest
from biaslab.io import write_npz, write_parquet

cfg = DataConfig(**snakemake.params.data)
base = make_base(cfg)
write_npz(snakemake.output.data, **base)
grid = {"dataset": cfg.dataset, "source": cfg.source, "resolution": cfg.resolution}
table = manifest({"heldin": base["y_in"], "heldout": base["y_out"]}, base["classes"], **grid)
write_parquet(table, snakemake.output.manifest)
print(table.to_string(), file=sys.stderr)
