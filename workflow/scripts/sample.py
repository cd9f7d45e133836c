"""Sample one model with one sampler setting; per-sample seeds (and conditioning labels for a
class-conditional model), uint8 output. An intervened cell samples through the model's SAE
and located features (DiffLens)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import torch

from biaslab.io import load_npz, write_npz
from biaslab.models import default_device
from biaslab.sampling import SamplerConfig, generate, num_classes, sample_labels, sample_seeds
from biaslab.train import load_model

torch.set_num_threads(snakemake.threads)
unet, scheduler = load_model(snakemake.input.model)
unet.to(default_device())  # the U-Net runs there; noise and sampler state stay on the CPU
cfg = SamplerConfig(**snakemake.params.sampling)
labels = sample_labels(cfg, num_classes(unet))  # a conditional model's class of each sample
hooks = []
if "sae" in snakemake.input.keys():
    from biaslab.difflens import (
        SAEIntervention,
        check_features_file,
        fingerprint,
        load_sae,
        target_classes,
    )

    model_fp = fingerprint(unet)
    sae = load_sae(snakemake.input.sae, model_fingerprint=model_fp)
    feats = load_npz(snakemake.input.features)
    feats["model_fingerprint"] = str(feats["model_fingerprint"])
    target = snakemake.params.difflens["target"]
    check_features_file(
        feats, model_fingerprint=model_fp, n_classes=len(target), path=snakemake.input.features
    )
    targets = target_classes(sample_seeds(cfg), cfg.intervene_mode, target, labels=labels)
    print(f"intervention targets {np.bincount(targets, minlength=len(target))}", file=sys.stderr)
    hooks.append(SAEIntervention(unet, sae, feats["features"], cfg.intervene, targets))
images, seeds = generate(unet, scheduler.config, cfg, hooks=hooks)
extra = {} if labels is None else {"labels": labels}
write_npz(snakemake.output.samples, images=images, seeds=seeds, **extra)
