"""Sample one pretrained model (biaslab.pretrained.models) on one sampler cell. A text-to-image
model samples each prompt class from the same seeds (its j-th image of every class shares the
initial noise), so images of different prompts and of different knob values pair up."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import torch

from biaslab.base.io import write_npz
from biaslab.models.unets import default_device
from biaslab.plan.pretrained import PretrainedModel
from biaslab.pretrained.models import (
    generate_text_to_image,
    generate_unet,
    load_text_to_image,
    load_unet,
)
from biaslab.sampling.generate import SamplerConfig

torch.set_num_threads(snakemake.threads)
model = snakemake.params.model
entry = PretrainedModel(**model)
row = snakemake.params.row
cfg = SamplerConfig(
    **row,
    n_samples=model["n_samples"],
    sample_seed=snakemake.params.sample_seed,
    batch_size=snakemake.params.batch_size,
)
device = default_device()
if model["kind"] == "unet":
    unet, scheduler_config = load_unet(snakemake.input.model, device)
    images, seeds = generate_unet(unet, scheduler_config, cfg)
    labels = np.zeros(len(images), dtype=np.int64)
else:
    dtype = getattr(torch, model["dtype"])
    pipe = load_text_to_image(snakemake.input.model, device, dtype)
    parts = []
    for c, name in enumerate(model["classes"]):
        prompts = entry.class_prompts(c)
        print(f"class {name}: {prompts[0]!r} ...", file=sys.stderr)
        parts.append(
            generate_text_to_image(
                pipe,
                prompts,
                cfg,
                negative_prompt=model["negative_prompt"],
                resolution=model["resolution"],
            )
        )
    images = np.concatenate([p[0] for p in parts])
    seeds = np.concatenate([p[1] for p in parts])
    labels = np.repeat(np.arange(len(parts), dtype=np.int64), cfg.n_samples)
write_npz(
    snakemake.output.samples,
    images=images,
    seeds=seeds,
    labels=labels,
    classes=np.asarray(model["classes"] or ["all"]),
)
