"""biaslab.jobs.cells: a model's cells in one process; the errors of a mis-specified job.

That a model job writes what per-cell jobs wrote is checked end to end (the tiny runs' golden
tables, tests/test_workflow.py) and by benchmarks/bench_cell_jobs.py on the default run."""

from __future__ import annotations

import pytest

from biaslab.jobs.cells import Cell, ModelCells, ModelFiles
from biaslab.sampling.generate import SamplerConfig


def _loaded(unet, sched_config, **files) -> ModelCells:
    """A ModelCells around an in-memory U-Net (no files read)."""
    m = object.__new__(ModelCells)
    m.files = ModelFiles(
        model="m", train="t", base="b", train_features="f", classifier="c", **files
    )
    m.unet, m.log, m._sae = unet, open("/dev/null", "w"), None
    return m


def test_intervened_cell_without_sae_files_is_refused(unet, sched_config):
    m = _loaded(unet, sched_config)
    cfg = SamplerConfig(sampler="ddim", steps=2, n_samples=2, intervene=4.0)
    with pytest.raises(ValueError, match=r"intervene 4\.0: the model's SAE files are not given"):
        m._intervention(cfg, None)


def test_same_seed_table_needs_the_twin(unet, sched_config):
    m = _loaded(unet, sched_config)
    cell = Cell({}, {}, "s.npz", "p.parquet", "m.parquet", same_seed="ss.parquet")
    with pytest.raises(ValueError, match=r"ss\.parquet: an intervened cell needs its twin"):
        m.run(cell)  # before anything is sampled
