"""Draw one model's DiffLens feature gallery: the captured images that most activate each
class's top located SAE features."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import load_npz
from biaslab.figures import fig_difflens_gallery, save

acts = load_npz(snakemake.input.activations)
feats = load_npz(snakemake.input.features)
fig = fig_difflens_gallery(
    acts["images"],
    feats["gallery"],
    feats["features"],
    list(acts["classes"]),
    title=snakemake.params.title,
)
save(fig, [snakemake.output.png, snakemake.output.pdf])
