"""Sample one model with one sampler setting; per-sample seeds, uint8 output."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.io import write_npz
from biaslab.sampling import SamplerConfig, generate
from biaslab.train import load_model

torch.set_num_threads(snakemake.threads)
unet, scheduler = load_model(snakemake.input.model)
images, seeds = generate(unet, scheduler.config, SamplerConfig(**snakemake.params.sampling))
write_npz(snakemake.output.samples, images=images, seeds=seeds)
