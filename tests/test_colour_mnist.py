"""Tests of biaslab.datasets.colour_mnist (Biased / Multi-Color MNIST, bias labeller) and the
rho_model / label-adherence metrics."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.datasets.colour_mnist import (
    PALETTE,
    bias_attribute,
    biased_mnist,
    compose,
    multicolour_mnist,
)
from biaslab.datasets.common import resize_digits
from biaslab.datasets.mnist import load_embedded_mnist
from biaslab.evaluation.metrics import clopper_pearson, label_adherence, rho_model


@pytest.fixture(scope="module")
def digits32():
    x, y = load_embedded_mnist()
    return resize_digits(x, 32), y


@pytest.mark.parametrize("rho", [0.7, 0.99])
def test_biased_mnist_labeller_and_rho(digits32, rho):
    d, y = digits32
    b = biased_mnist(d, y, rho=rho, seed=0)
    assert b["x"].shape == (len(d), 3, 32, 32)
    assert b["x"].dtype == np.uint8
    np.testing.assert_array_equal(b["y"], y)
    assert (bias_attribute(b["x"]) == b["colour"]).mean() >= 0.99
    for c in range(10):
        colours = b["colour"][y == c]
        assert abs(int((colours == c).sum()) - rho * colours.size) <= 1
        others = np.bincount(colours[colours != c], minlength=10)
        others = np.delete(others, c)
        assert others.max() - others.min() <= 1  # conflicting images spread evenly


def test_multicolour_labeller_and_rho(digits32):
    d, y = digits32
    m = multicolour_mnist(d, y, rho_left=0.9, rho_right=0.6, seed=3)
    left, right = bias_attribute(m["x"], half="left"), bias_attribute(m["x"], half="right")
    assert (left == m["colour_left"]).mean() >= 0.99
    assert (right == m["colour_right"]).mean() >= 0.99
    for c in range(10):
        n = int((y == c).sum())
        assert abs(int((m["colour_left"][y == c] == c).sum()) - 0.9 * n) <= 1
        assert abs(int((m["colour_right"][y == c] == c).sum()) - 0.6 * n) <= 1
    # The two halves are drawn independently: not the same assignment.
    assert (m["colour_left"] != m["colour_right"]).mean() > 0.2


def test_determinism_and_seed(digits32):
    d, y = digits32
    a, b = biased_mnist(d, y, rho=0.9, seed=1), biased_mnist(d, y, rho=0.9, seed=1)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["colour"], b["colour"])
    c = biased_mnist(d, y, rho=0.9, seed=2)
    assert not np.array_equal(a["colour"], c["colour"])
    m1 = multicolour_mnist(d, y, rho_left=0.9, rho_right=0.9, seed=1)
    m2 = multicolour_mnist(d, y, rho_left=0.9, rho_right=0.9, seed=1)
    np.testing.assert_array_equal(m1["x"], m2["x"])


def test_class_subset(digits32):
    d, y = digits32
    b = biased_mnist(d, y, rho=0.8, seed=0, classes=[6, 9])
    assert set(b["y"].tolist()) == {6, 9}
    assert set(b["colour"].tolist()) == {6, 9}  # conflicting colour = the other class's
    assert len(b["y"]) == int(np.isin(y, [6, 9]).sum())
    assert (bias_attribute(b["x"], colours=[6, 9]) == b["colour"]).all()
    with pytest.raises(ValueError, match="distinct"):
        biased_mnist(d, y, rho=0.8, seed=0, classes=[6, 6])
    with pytest.raises(ValueError, match="rho"):
        biased_mnist(d, y, rho=1.5, seed=0)


def test_compose():
    digit = np.array([[[0, 255, 128]]], dtype=np.uint8)  # [1, 1, 3]
    x = compose(digit, PALETTE[[2]])  # blue
    assert x.shape == (1, 3, 1, 3)
    np.testing.assert_array_equal(x[0, :, 0, 0], [0, 0, 255])
    np.testing.assert_array_equal(x[0, :, 0, 1], [255, 255, 255])
    np.testing.assert_array_equal(x[0, :, 0, 2], [128, 128, 255])


def test_labeller_robust_to_noise(digits32):
    """Generated images are noisy: Gaussian noise (std 20 levels) keeps the labeller >= 99%."""
    d, y = digits32
    b = biased_mnist(d[:1000], y[:1000], rho=0.5, seed=0)
    noisy = b["x"] + np.random.default_rng(0).normal(0, 20, b["x"].shape)
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    assert (bias_attribute(noisy) == b["colour"]).mean() >= 0.99


def test_labeller_palette_and_edge_cases():
    flat = np.repeat(PALETTE[:, :, None, None], 4, axis=2).repeat(4, axis=3)
    np.testing.assert_array_equal(bias_attribute(flat), np.arange(10))
    white = np.full((1, 3, 4, 4), 255, dtype=np.uint8)
    assert bias_attribute(white, colours=[0, 9])[0] == 9  # falls back to the mean colour
    with pytest.raises(ValueError, match="RGB"):
        bias_attribute(np.zeros((1, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="half"):
        bias_attribute(flat, half="top")


def test_rho_model_and_label_adherence():
    bias = np.array([0, 1, 2, 2, 5])
    labels = np.array([0, 1, 2, 3, 4])
    r = rho_model(bias, labels)
    assert (r["k"], r["n"]) == (3, 5)
    assert r["value"] == pytest.approx(0.6)
    assert (r["ci_low"], r["ci_high"]) == clopper_pearson(3, 5)
    own = np.array([5, 1, 2, 3, 5])  # class 0 owns colour 5, class 4 owns colour 5
    assert rho_model(bias, labels, own=own)["k"] == 3
    a = label_adherence(np.array([1, 1, 0]), np.array([1, 0, 0]))
    assert (a["k"], a["n"]) == (2, 3)
    assert a["ci_low"] < 2 / 3 < a["ci_high"]
    empty = rho_model(np.array([], dtype=int), np.array([], dtype=int))
    assert np.isnan(empty["value"])
    with pytest.raises(ValueError, match="differ"):
        rho_model(bias, labels[:3])
    with pytest.raises(ValueError, match="differ"):
        label_adherence(bias, labels[:3])


def test_own_colour_weight_reads_the_blend_of_a_class_mean():
    """The own colour's weight on the line from the other colours' mean: 0.8 for a 0.8 / 0.2
    blend of 2 colours, 0.9 for 10 colours with the 0.1 spread evenly (the class mean of
    Biased MNIST at rho 0.9), 1 / K for the plain mean, per half for Multi-Color."""
    from biaslab.datasets.colour_mnist import PALETTE, compose, own_colour_weight

    digits = np.zeros((4, 16, 16), np.uint8)
    digits[:, 4:12, 5:11] = 255  # a white block inside the border ring: ignored
    ten = PALETTE[:10].astype(float)
    blend = lambda w, p: np.rint(np.asarray(w) @ p).astype(np.uint8)  # noqa: E731
    spread = np.full(10, 0.1 / 9)
    spread[3] = 0.9
    bgs = np.stack(
        [
            blend([0.8, 0.2] + [0] * 8, ten),
            blend(spread, ten),
            blend(np.full(10, 0.1), ten),
            blend([0, 1] + [0] * 8, ten),
        ]
    )
    images = compose(digits, bgs)
    got = own_colour_weight(images[:1], [0, 1], np.array([0]))
    np.testing.assert_allclose(got, [0.8], atol=0.01)
    got = own_colour_weight(images[1:], list(range(10)), np.array([3, 5, 0]))
    np.testing.assert_allclose(got[:2], [0.9, 0.1], atol=0.01)
    assert got[2] == 0.0  # another colour entirely: clipped at 0
    left = compose(digits[:1], bgs[:1])
    left[:, :, :, 8:] = PALETTE[2][None, :, None, None]  # right half colour 2
    assert own_colour_weight(left, [0, 1, 2], np.array([0]), half="left")[0] > 0.75
    assert own_colour_weight(left, [0, 1, 2], np.array([2]), half="right")[0] > 0.99
    with pytest.raises(ValueError, match="own"):
        own_colour_weight(images, [0, 1], np.array([0]))
