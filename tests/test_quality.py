"""Fairness Discrepancy and FID / KID (biaslab.metrics, biaslab.quality), FID cross-checked
against the closed form computed with scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from biaslab.metrics import fairness_discrepancy, fd_interval
from biaslab.quality import fid_kid


def test_fairness_discrepancy_by_hand():
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.8, 0.2]])
    mean = probs.mean(0)  # (0.7, 0.3)
    assert fairness_discrepancy(probs) == pytest.approx(np.hypot(0.2, 0.2))
    assert fairness_discrepancy(probs, np.array([0.7, 0.3])) == pytest.approx(0.0)
    assert fairness_discrepancy(np.full((5, 4), 0.25)) == 0.0
    with pytest.raises(ValueError, match="reference"):
        fairness_discrepancy(probs, np.array([1.0]))
    r = fd_interval(probs, n_boot=500)
    assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == 4
    assert mean.sum() == pytest.approx(1.0)


def test_fd_interval_covers_the_truth():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(40):
        y = rng.random(400) < 0.3
        probs = np.stack([~y, y], 1).astype(float)
        r = fd_interval(probs, n_boot=300, seed=1)
        hits += r["ci_low"] <= np.hypot(0.2, 0.2) <= r["ci_high"]
    assert hits >= 34  # ~95% coverage


class Identity:
    """A 'backbone' whose features are the flattened images."""

    def embed(self, x):
        return x.flatten(1).float()


def test_fid_matches_the_closed_form_and_kid_is_near_zero_for_one_distribution():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 1, 2, 2, generator=g)
    fake = 0.5 + 1.3 * torch.randn(300, 1, 2, 2, generator=g)
    q = fid_kid(fake, real, Identity(), kid_subset_size=100, kid_subsets=20)
    a, b = real.flatten(1).double().numpy(), fake.flatten(1).double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert q["fid"]["value"] == pytest.approx(want, rel=1e-4)
    same = fid_kid(torch.randn(300, 1, 2, 2, generator=g), real, Identity(), kid_subset_size=100)
    assert abs(same["kid"]["value"]) < 0.5 * q["kid"]["value"]
    assert q["kid"]["subset_size"] == 100
    with pytest.raises(ValueError, match="two images"):
        fid_kid(fake[:1], real, Identity())
