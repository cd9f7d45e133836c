"""Classify one cell's samples and measure bias, diversity and memorization."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import torch

from biaslab.evaluate import MetricsConfig, evaluate_cell, training_set_features
from biaslab.io import load_npz, write_parquet

torch.set_num_threads(snakemake.threads)
train = load_npz(snakemake.input.train)
predictions, metrics = evaluate_cell(
    samples=load_npz(snakemake.input.samples),
    train=train,
    classifier_path=snakemake.input.classifier,
    attribute_classifier_path=(list(snakemake.input.attribute_classifier) or [None])[0],
    train_features=training_set_features(train, load_npz(snakemake.input.train_features)),
    grid=snakemake.params.grid,
    metrics=MetricsConfig.from_dict(snakemake.params.metrics),
    real_images=load_npz(snakemake.input.base)["x_out"],
)
print(metrics.to_string(), file=sys.stderr)
write_parquet(predictions, snakemake.output.predictions)
write_parquet(metrics, snakemake.output.metrics)
