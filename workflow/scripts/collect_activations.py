"""Capture the mid-block activations of one model's reference sampling loop (DiffLens), with
the evaluation classifier's attribute class of each final image."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import torch

from biaslab.difflens import attribute_labels, collect_activations, fingerprint
from biaslab.io import write_npz
from biaslab.models import default_device
from biaslab.sampling import SamplerConfig
from biaslab.train import load_model

torch.set_num_threads(snakemake.threads)
unet, scheduler = load_model(snakemake.input.model)
unet.to(default_device())
cfg = SamplerConfig(**snakemake.params.sampling)
got = collect_activations(unet, scheduler.config, cfg, snakemake.params.keep_calls)
labels, probs, classes = attribute_labels(
    got["images"], snakemake.input.classifier, snakemake.params.n_classes
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
