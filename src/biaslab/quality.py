"""Image quality: FID and KID of generated images against held-out real images, in a chosen
feature space, through ``torchmetrics`` (Frechet distance and the polynomial-kernel MMD of
Binkowski et al. 2018 are theirs, not rewritten here).

The offline default feature space is the evaluation classifier's penultimate features
(``backbones.ClassifierBackbone.embed``), so the numbers are labelled with the backbone's
name: a "classifier-FID" is comparable across the cells of one run, not with published
Inception FIDs. An Inception-v3 weights file (``metrics.knn_backbone: inception``) gives the
usual space.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EmbedFeatures(nn.Module):
    """A backbone's ``embed(x) -> [N, D]`` as the feature module torchmetrics takes."""

    def __init__(self, backbone: Any, num_features: int):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(x).to(torch.float64)


def fid_kid(
    x_gen: torch.Tensor,
    x_real: torch.Tensor,
    backbone: Any,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> dict[str, dict[str, float]]:
    """FID and KID (mean and std over ``kid_subsets`` subsets of ``min(kid_subset_size, N_gen,
    N_real)`` images) of model-range images ``x_gen`` against ``x_real``."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(x_gen) < 2 or len(x_real) < 2:
        raise ValueError(
            f"fid/kid: need two images at least on each side, got {len(x_gen)} generated and "
            f"{len(x_real)} real"
        )
    with torch.no_grad():
        d = int(backbone.embed(x_real[:1]).shape[1])
        feats = EmbedFeatures(backbone, d)
        fid = FrechetInceptionDistance(feature=feats, reset_real_features=False)
        fid.update(x_real, real=True)
        fid.update(x_gen, real=False)
        size = min(kid_subset_size, len(x_gen), len(x_real))
        kid = KernelInceptionDistance(feature=feats, subsets=kid_subsets, subset_size=size)
        kid.update(x_real, real=True)
        kid.update(x_gen, real=False)
        with torch.random.fork_rng():  # KID's subsets: the same draw in every cell
            torch.manual_seed(0)
            kid_mean, kid_std = kid.compute()
        return {
            "fid": {"value": float(fid.compute())},
            "kid": {"value": float(kid_mean), "std": float(kid_std), "subset_size": size},
        }
