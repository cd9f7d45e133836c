"""Capture the mid-block activations of one model's reference sampling loop (DiffLens), with
the attribute class of each final image (the evaluation classifier's class; a conditional
family's bias attribute)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import torch

from biaslab.base.io import write_npz
from biaslab.difflens.steps import capture_labels, collect_activations, fingerprint
from biaslab.models.unets import default_device
from biaslab.sampling.generate import SamplerConfig
from biaslab.training.train import load_model

torch.set_num_threads(snakemake.threads)
unet, scheduler = load_model(snakemake.input.model)
unet.to(default_device())
cfg = SamplerConfig(**snakemake.params.sampling)
got = collect_activations(unet, scheduler.config, cfg, snakemake.params.keep_calls)
labels, probs, classes = capture_labels(
    got["images"],
    n_classes=snakemake.params.n_classes,
    classifier_path=snakemake.input.classifier,
    conditional=snakemake.params.conditional,
    attribute_classifier_path=(list(snakemake.input.attribute_classifier) or [None])[0],
)
print(f"h {got['h'].shape}, attribute classes {np.bincount(labels)}", file=sys.stderr)
write_npz(
    snakemake.output.activations,
    **got,
    labels=labels,
    probs=probs,
    classes=classes,
    model_fingerprint=np.array(fingerprint(unet)),
)
