"""The evaluation classifier; fails if its held-out accuracy is below the configured floor."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.base.io import load_npz, write_parquet
from biaslab.datasets import classifier_view
from biaslab.evaluation.classifier import ClassifierConfig, save_classifier, train_classifier

torch.set_num_threads(snakemake.threads)
base = classifier_view(load_npz(snakemake.input.base), snakemake.params.target)
model, accuracy = train_classifier(base, ClassifierConfig(**snakemake.params.classifier))
print(accuracy.to_string(), file=sys.stderr)
save_classifier(model, base["classes"], snakemake.output.model)
write_parquet(accuracy.assign(**snakemake.params.grid), snakemake.output.accuracy)
