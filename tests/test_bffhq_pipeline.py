"""BFFHQ in the pipeline: gender-balanced classifier sets, training sets at rho, the gender
classifier as bias labeller, and the whole DAG on a fixture in the released folder layout."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from biaslab.datasets import build_base, build_train, classifier_view
from tests.helpers import snakemake
from tests.test_faces import make_bffhq

TRAIN = {(0, 0): 30, (1, 1): 30, (0, 1): 10, (1, 0): 10}
FLAT = {
    "valid": {(0, 0): 5, (1, 1): 5, (0, 1): 5, (1, 0): 5},
    "test": {(0, 0): 5, (1, 1): 5, (0, 1): 5, (1, 0): 5},
}


@pytest.fixture(scope="module")
def bffhq(tmp_path_factory):
    return make_bffhq(tmp_path_factory.mktemp("bffhq"), TRAIN, FLAT, size=32)


def settings(root):
    return {
        "dataset": "bffhq",
        "root": str(root),
        "parts": ["0.5pct", "valid", "test"],
        "resolution": 16,
        "heldout_fraction": 0.2,
        "split_seed": 0,
        "n_per_class": None,
    }


def test_base_pool_and_balanced_classifier_sets(bffhq):
    base, table = build_base(settings(bffhq))
    # pool per (age, gender): 40, 40, 20, 20 -> 32, 32, 16, 16 held in
    assert len(base["pool_y"]) == 96 and base["pool_x"].shape[1:] == (3, 16, 16)
    for part in ("in", "out"):
        t, b = base[f"y_{part}"], base[f"bias_{part}"]
        for c in (0, 1):
            assert (t == c).sum() == (b == c).sum()  # gender balanced within each age...
            assert ((t == c) & (b == c)).sum() == ((t == c) & (b != c)).sum()  # ...rho 0.5
    view = classifier_view(base, "bias")
    assert np.array_equal(view["y_in"], base["bias_in"]) and view["classes"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="only 'class'"):
        classifier_view(base, "age")
    assert set(table["split"]) == {"heldin", "heldout"}


@pytest.mark.parametrize("rho", [0.5, 0.75])
def test_train_at_rho(bffhq, rho):
    base, _ = build_base(settings(bffhq))
    train, table = build_train(base, settings(bffhq), round(1 - rho, 10))
    for c in (0, 1):
        m = train["y"] == c
        assert (train["bias"][m] == c).mean() == pytest.approx(rho, abs=0.02)
    assert (train["y"] == 0).sum() == (train["y"] == 1).sum()
    assert (table["rho_data"] == rho).all()
    # rows of the held-in pool, so the pool's kNN features serve every rho
    idx = train["base_index"]
    assert np.array_equal(train["x"], base["pool_x"][idx])
    assert np.array_equal(train["bias"], base["pool_bias"][idx])


TINY = """
data: {{dataset: mnist69, source: embedded, resolution: 16, n_train: 60}}
minority_fractions: [0.2]
model: {{depths: ["2"], width: 0.25}}
training: {{steps: 20, batch_size: 8, lr: 1.0e-3, warmup_steps: 2, ema_decay: 0.9,
  checkpoint_every: 10}}
classifier: {{epochs: 2, min_accuracy: 0.0}}  # random fixture faces: nothing to learn
sampling:
  n_samples: 8
  batch_size: 8
  grid: [{{sampler: ddim, steps: 3}}]
conditional:
  datasets: [bffhq]
  bffhq: {{root: {root}, resolution: 16, heldout_fraction: 0.2}}
  rhos: [0.5, 0.75]
  n_samples: 8
  grid:
    - {{sampler: ddim, steps: 3, guidance: 0.0}}
    - {{sampler: ddim, steps: 3, guidance: 2.0}}
figures: {{grid_samples: 4}}
"""


@pytest.mark.slow
def test_tiny_bffhq_run(bffhq, tmp_path):
    cfg = tmp_path / "bffhq.yaml"
    cfg.write_text(textwrap.dedent(TINY.format(root=bffhq)))
    snakemake("--cores", "2", "--configfile", str(cfg), cwd=tmp_path, timeout=600, check=True)
    m = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    b = m[m.dataset == "bffhq"]
    rho = b[b.metric == "rho_model"]
    assert len(rho) == 4 and set(rho["guidance"]) == {0.0, 2.0}
    assert ((rho.value >= rho.ci_low) & (rho.value <= rho.ci_high)).all()
    assert (b["source"] == "bffhq").all() and (b["resolution"] == 16).all()
    assert (b["num_classes"] == 2).all()
    train_rho = b[b.metric == "training_rho"].groupby("rho_data")["value"].first()
    assert train_rho[0.5] == 0.5 and train_rho[0.75] == pytest.approx(0.75, abs=0.02)
    p = pd.read_parquet(tmp_path / "results" / "predictions.parquet")
    pb = p[p.dataset == "bffhq"]
    assert set(pb["label"]) == {0, 1} and set(pb["bias"]) <= {0, 1}
    assert (tmp_path / "results/classifier/bffhq/bias_classifier.pt").exists()
    assert (tmp_path / "results/figures/fig_rho_vs_guidance.png").stat().st_size > 1000


def test_depth_checked_against_bffhq_resolution(bffhq, tmp_path):
    """Depth 6 fits data.resolution 32 but not BFFHQ at 16 px: rejected before any job."""
    cfg = tmp_path / "deep.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        data: {{resolution: 32}}
        conditional:
          datasets: [bffhq]
          bffhq: {{root: {bffhq}, resolution: 16}}
          depths: ["6"]
        """)
    )
    proc = snakemake("-n", "--configfile", str(cfg), cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "conditional.bffhq.resolution" in proc.stdout + proc.stderr
