"""Sample one model with one sampler setting; per-sample seeds (and conditioning labels for a
class-conditional model), uint8 output."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.io import write_npz
from biaslab.models import default_device
from biaslab.sampling import SamplerConfig, generate, num_classes, sample_labels
from biaslab.train import load_model

torch.set_num_threads(snakemake.threads)
unet, scheduler = load_model(snakemake.input.model)
unet.to(default_device())  # the U-Net runs there; noise and sampler state stay on the CPU
cfg = SamplerConfig(**snakemake.params.sampling)
images, seeds = generate(unet, scheduler.config, cfg)
labels = sample_labels(cfg, num_classes(unet))
extra = {} if labels is None else {"labels": labels}
write_npz(snakemake.output.samples, images=images, seeds=seeds, **extra)
