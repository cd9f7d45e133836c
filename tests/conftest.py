"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from biaslab.models.unets import build_unet
from biaslab.training.train import TrainConfig, make_noise_scheduler
from tests.helpers import TINY, TINY_CONDITIONAL, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole DAG on the tiny config, run once per session and read by every test that
    needs a finished run (tables, figures, goldens, the SLURM and crash-resume comparisons)."""
    work = tmp_path_factory.mktemp("tiny")
    snakemake("--cores", "2", "--configfile", str(TINY), cwd=work, timeout=900, check=True)
    return work


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory) -> Path:
    """The tiny class-conditional family with its DiffLens slice, run once per session."""
    work = tmp_path_factory.mktemp("tiny_conditional")
    snakemake(
        "--cores", "2", "--configfile", str(TINY_CONDITIONAL), cwd=work, timeout=900, check=True
    )
    return work


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
