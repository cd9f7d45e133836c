"""kNN-backbone features computed once: of a base set's held-in pool (``scope: base``; every
skew's training set indexes into it) or of one training set (``scope: train``)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import torch

from biaslab.base.io import load_npz, write_npz
from biaslab.evaluation.cell import MetricsConfig, feature_pool, knn_features

torch.set_num_threads(snakemake.threads)
scope = snakemake.params.scope
images = feature_pool(load_npz(snakemake.input.data), scope)
metrics = MetricsConfig.from_dict(snakemake.params.metrics)
emb, name = knn_features(images, snakemake.input.classifier, metrics)
print(f"{scope} features, {name}: {emb.shape}", file=sys.stderr)
write_npz(snakemake.output.features, embeddings=emb, backbone=np.array(name), scope=np.array(scope))
