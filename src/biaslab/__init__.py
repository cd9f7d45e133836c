"""biaslab: a bias-amplification lab for diffusion models.

The science code of the workflow; it never imports snakemake. See README.md.
"""

__version__ = "0.1.0"
