"""The compute-budget estimate agrees with the DAG's job counts and the samplers' NFEs."""

from __future__ import annotations

import yaml

from biaslab.plan.budget import estimate
from tests.helpers import ROOT


def test_paper_budget_matches_dry_run_counts():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    rows = {r["family"]: r for r in estimate(cfg, train_rate=100.0, sample_rate=1000.0)}
    # the dry run (tests/test_workflow.py) lists 144 trainings and 2772 sampling jobs
    assert sum(r["models"] for r in rows.values()) == 144
    assert sum(r["cells"] for r in rows.values()) == 72 * 11 + 72 * 26 + 36 * 3
    assert rows["mnist69"]["train_images"] == 72 * 50000 * 128
    assert rows["mnist69"]["train_hours"] == 72 * 50000 * 128 / 100 / 3600


def test_sample_evals_count_heun_and_guidance():
    cfg = {
        "data": {"dataset": "mnist69"},
        "minority_fractions": [0.1],
        "model": {"depths": ["2"]},
        "training": {"steps": 10, "batch_size": 4, "seeds": [0]},
        "sampling": {"n_samples": 10, "grid": [{"sampler": "ddpm", "steps": 7}]},
        "conditional": {
            "datasets": ["biased_mnist"],
            "classes": [0, 1, 2],
            "rhos": [0.9, 0.99],
            "n_samples": 3,
            "grid": [
                {"sampler": "heun", "steps": 5, "guidance": 1.0},  # 9 NFE x 2
                {"sampler": "ddim", "steps": 4},  # 4 NFE
            ],
        },
    }
    depth, colour = estimate(cfg)
    assert depth["sample_evals"] == 10 * 7 and depth["train_images"] == 40
    assert colour["models"] == 2 and colour["sample_evals"] == 2 * 3 * (18 + 4)
