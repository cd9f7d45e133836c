"""Fig. 6 of "Deeper Diffusion Models Amplify Bias" for one text-to-image model: the images of
different prompts from the same seeds, at each bypass fraction of the bypass study."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import load_npz
from biaslab.figures import fig_bypass_grid, save

samples = {
    float(p): load_npz(path)
    for p, path in zip(snakemake.params.bypass, snakemake.input.samples, strict=True)
}
fig = fig_bypass_grid(samples, snakemake.params.classes, n_seeds=snakemake.params.n_seeds)
save(fig, [snakemake.output.png, snakemake.output.pdf])
