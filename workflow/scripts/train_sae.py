"""Train the top-k SAE of one model's captured mid-block activations (DiffLens)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd
import torch

from biaslab.base.io import load_npz, write_parquet
from biaslab.difflens.steps import SAEConfig, fingerprint, sae_vectors, save_sae, train_sae
from biaslab.training.train import load_model

torch.set_num_threads(snakemake.threads)
acts = load_npz(snakemake.input.activations)
unet, _ = load_model(snakemake.input.model)
model_fp = fingerprint(unet)
if str(acts["model_fingerprint"]) != model_fp:
    raise ValueError(f"{snakemake.input.activations}: captured on another model; rerun it")
sae, stats = train_sae(sae_vectors(acts["h"]), SAEConfig.from_dict(snakemake.params.sae))
print({k: v for k, v in stats.items() if k != "curve"}, file=sys.stderr)
save_sae(sae, snakemake.output.sae, model_fingerprint=model_fp, stats=stats)
log = pd.DataFrame(stats["curve"]).assign(
    final_fvu=stats["fvu"],
    dead_share=stats["dead_share"],
    n_vectors=stats["n_vectors"],
    n_latents=sae.n_latents,
    k=sae.k,
    **snakemake.params.grid,
)
write_parquet(log, snakemake.output.log)
