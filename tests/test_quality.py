"""Fairness Discrepancy and FID / KID (biaslab.evaluation.metrics, biaslab.evaluation.quality), FID
cross-checked against the closed form computed with scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from biaslab.evaluation.quality import (
    fairness_discrepancy,
    fairness_rows,
    fd_interval,
    fid_kid,
    hard_labels,
    same_seed_similarity,
)


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


def test_fd_per_group_is_the_mean_of_the_groups():
    # class 0: all attribute 0; class 1: half / half
    probs = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    groups = np.array([0, 0, 0, 1, 1, 1])
    r = fd_interval(probs, groups=groups, n_boot=200)
    want = (np.hypot(0.5, 0.5) + np.hypot(1 / 6, 1 / 6)) / 2
    assert r["value"] == pytest.approx(want)
    ref = np.array([[1.0, 0.0], [1 / 3, 2 / 3]])  # each group's own training distribution
    assert fd_interval(probs, ref, groups=groups, n_boot=10)["value"] == pytest.approx(0.0)
    # pooled, class 1's balance hides nothing, class 0's skew is diluted
    assert fairness_discrepancy(probs) < r["value"]


def test_fd_from_hard_labels():
    """Hard labels: each sample's most probable class counts whole; soft probabilities that all
    lean the same way give a smaller FD than their hard labels (by hand: 3 samples)."""
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    np.testing.assert_array_equal(hard_labels(probs), [[1, 0], [1, 0], [0, 1]])
    rows = {r["metric"]: r for r in fairness_rows(probs, np.array([0.9, 0.1]))}
    assert set(rows) == {"fd", "fd_hard", "fd_training"}
    # soft: mean (0.5, 0.5) -> 0; hard: mean (2/3, 1/3) -> sqrt(2) / 6
    assert rows["fd"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert rows["fd_hard"]["value"] == pytest.approx(np.sqrt(2) / 6)
    onehot = hard_labels(probs)
    assert fairness_rows(onehot, None)[1]["value"] == fairness_rows(onehot, None)[0]["value"]


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


def test_same_seed_similarity():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 8, generator=g)
    same = same_seed_similarity(a, 3.0 * a)  # cosine: scale-free
    assert same["value"] == pytest.approx(1.0) and same["n"] == 50
    other = same_seed_similarity(a, torch.randn(50, 8, generator=g))
    assert abs(other["value"]) < 0.3 and other["ci_low"] < other["value"] < other["ci_high"]
    with pytest.raises(ValueError, match="paired"):
        same_seed_similarity(a, a[:10])


def _hand_bootstrap(p, ref, groups, n_boot, seed):
    """The percentile bootstrap fd_interval computed by hand before it used scipy (same draws:
    one ``integers(0, n_g, (n_boot, n_g))`` per group in group order, then the quantiles)."""
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for k in names:
        m = np.flatnonzero(groups == k)
        idx = m[rng.integers(0, len(m), size=(n_boot, len(m)))]
        boot += np.linalg.norm(p[idx].mean(1) - ref, axis=1)
    return np.quantile(boot / len(names), [0.025, 0.975])


def test_fd_interval_is_scipy_s_percentile_bootstrap():
    """``fd_interval`` is ``scipy.stats.bootstrap(method="percentile")`` over each group's
    sample indices: the same resamples and interval as the former hand-written bootstrap
    (float rounding apart), a group of one sample included, and as scipy on one group."""
    from scipy import stats as sps

    rng = np.random.default_rng(3)
    for n, groups in ((40, None), (60, rng.integers(0, 3, 60)), (25, np.r_[np.zeros(24), 5])):
        p = rng.dirichlet(np.ones(3), size=n)
        g = np.zeros(n, int) if groups is None else groups.astype(int)
        r = fd_interval(p, groups=groups, n_boot=400, seed=7)
        lo, hi = _hand_bootstrap(p, np.full(3, 1 / 3), g, 400, 7)
        assert r["ci_low"] == pytest.approx(lo, abs=1e-12)
        assert r["ci_high"] == pytest.approx(hi, abs=1e-12)
    p = rng.dirichlet(np.ones(2), size=30)
    ci = sps.bootstrap(
        (np.arange(30),),
        lambda i, axis=-1: np.linalg.norm(p[i].mean(-2) - 0.5, axis=-1),
        n_resamples=300,
        method="percentile",
        rng=np.random.default_rng(1),
    ).confidence_interval
    r = fd_interval(p, n_boot=300, seed=1)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    one = fd_interval(np.array([[0.9, 0.1]]))  # one sample: nothing to resample
    assert one["ci_low"] == one["value"] == one["ci_high"]
