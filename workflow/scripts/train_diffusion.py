"""Train one diffusion model; resumes from its last checkpoint after a crash."""

import sys

sys.stderr = open(snakemake.log[0], "a")

import torch

from biaslab.base.io import load_npz, write_parquet
from biaslab.datasets import class_indices
from biaslab.models.unets import default_device
from biaslab.training.train import TrainConfig, checkpoint_dir_for, save_model, train_diffusion

torch.set_num_threads(snakemake.threads)
cfg = TrainConfig.from_dict(snakemake.params.training)
data = load_npz(snakemake.input.data)
images = data["x"]
labels = class_indices(data["y"], data["classes"]) if cfg.num_classes else None
ckpt = checkpoint_dir_for(snakemake.params.checkpoint_dir, cfg, images, labels)
unet, log = train_diffusion(
    images,
    cfg,
    checkpoint_dir=ckpt,
    device=default_device(),
    labels=labels,
)
grid = snakemake.params.grid
save_model(unet, cfg, snakemake.output.model, extra={"grid": grid})
write_parquet(log.assign(**grid), snakemake.output.log)
