"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from biaslab.models import build_unet
from biaslab.train import TrainConfig, make_noise_scheduler


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: faster for tiny models on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def unet():
    """An untrained narrow depth-2 U-Net at 16 px (sampler tests need no training)."""
    torch.manual_seed(0)
    return build_unet("2", resolution=16, width=0.25).eval()


@pytest.fixture(scope="module")
def sched_config():
    """The default DDPM training schedule's config."""
    return dict(make_noise_scheduler(TrainConfig()).config)
