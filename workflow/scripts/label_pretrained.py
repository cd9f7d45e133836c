"""Label one pretrained cell's images with the configured labellers (CLIP zero-shot, FairFace)
and measure shares, confidence, Fairness Discrepancy and the cross-prompt similarity."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.base.io import load_npz, write_parquet
from biaslab.models.unets import default_device
from biaslab.pretrained.evaluate import label_cell
from biaslab.pretrained.labellers import ClipLabeller, FairFaceLabeller

torch.set_num_threads(snakemake.threads)
device = default_device()
cfg = snakemake.params.labellers
labellers = {}
if "clip" in snakemake.input.keys():
    labellers["clip"] = ClipLabeller(snakemake.input.clip, cfg["clip"]["attributes"], device)
if "fairface" in snakemake.input.keys():
    labellers["fairface"] = FairFaceLabeller(
        snakemake.input.fairface, cfg["fairface"]["attributes"], device
    )
samples = load_npz(snakemake.input.samples)
classes = [str(c) for c in samples["classes"]] if len(samples["classes"]) > 1 else []
reference = load_npz(snakemake.input.reference) if "reference" in snakemake.input.keys() else None
predictions, metrics = label_cell(
    samples, labellers, snakemake.params.grid, classes=classes, reference=reference
)
print(metrics.to_string(), file=sys.stderr)
write_parquet(predictions, snakemake.output.predictions)
write_parquet(metrics, snakemake.output.metrics)
