"""Range conversions between stored uint8 images and the model's [-1, 1] float tensors.

A leaf module (imports nothing from biaslab): datasets, training, sampling, classifiers and
metrics all read and write images through these two functions.
"""

from __future__ import annotations

import numpy as np
import torch


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images [N, H, W] or [N, C, H, W] -> float tensor [N, C, H, W] in [-1, 1]."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[:, None]
    return x.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model-range tensor [N, C, H, W] in [-1, 1] -> uint8 [N, C, H, W] (clipped)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
