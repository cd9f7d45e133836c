"""The kNN-backbone features of one training set, computed once for every cell trained on it."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import numpy as np
import torch

from biaslab.evaluate import train_embeddings
from biaslab.io import load_npz, write_npz

torch.set_num_threads(snakemake.threads)
emb, name = train_embeddings(
    load_npz(snakemake.input.train), snakemake.input.classifier, **snakemake.params.metrics
)
print(f"{name}: {emb.shape}", file=sys.stderr)
write_npz(snakemake.output.features, embeddings=emb, backbone=np.array(name))
