"""Per-timestep probes and integrated-gradient attribution of one model's SAE latents:
the features of each attribute class (DiffLens)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import pandas as pd
import torch

from biaslab.base.io import load_npz, write_npz, write_parquet
from biaslab.difflens.steps import LocateConfig, fingerprint, load_sae, locate
from biaslab.training.train import load_model

torch.set_num_threads(snakemake.threads)
acts = load_npz(snakemake.input.activations)
unet, _ = load_model(snakemake.input.model)
model_fp = fingerprint(unet)
sae = load_sae(snakemake.input.sae, model_fingerprint=model_fp)
n_classes = int(snakemake.params.n_classes)
out = locate(acts, sae, n_classes, LocateConfig.from_dict(snakemake.params.attribution))
grid = snakemake.params.grid
write_parquet(pd.DataFrame(out["feature_rows"]).assign(**grid), snakemake.output.table)
probes = pd.DataFrame(out["probe_rows"]).assign(
    **{f"capture_share_{c}": s for c, s in enumerate(out["class_share"])}, **grid
)
print(probes.to_string(), file=sys.stderr)
write_parquet(probes, snakemake.output.probes)
write_npz(
    snakemake.output.features,
    features=out["features"],
    scores=out["scores"],
    gallery=out["gallery"],
    model_fingerprint=np.array(model_fp),
)
