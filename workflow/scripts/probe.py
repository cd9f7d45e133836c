"""What one model knows: its x0 predictions from noised training images, and (conditional
models) from pure noise, scored by the evaluation classifier and the bias labeller."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.io import load_npz, write_parquet
from biaslab.models import default_device
from biaslab.probe import ProbeConfig, probe_model, subject
from biaslab.train import load_model

torch.set_num_threads(snakemake.threads)
unet, scheduler = load_model(snakemake.input.model)
unet.to(default_device())
grid = snakemake.params.grid
s, rho = subject(
    unet,
    scheduler.config,
    load_npz(snakemake.input.train),
    snakemake.input.classifier,
    grid["dataset"],
    (list(snakemake.input.attribute_classifier) or [None])[0],
)
table = probe_model(s, ProbeConfig.from_dict(snakemake.params.probe), grid, rho)
print(table.to_string(), file=sys.stderr)
write_parquet(table, snakemake.output.probe)
