"""Tests of biaslab.evaluation.classifier: the evaluation CNN trained on real held-in digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biaslab.base.images import to_model_range
from biaslab.datasets.mnist import DataConfig, make_base
from biaslab.evaluation.classifier import (
    AccuracyTooLowError,
    ClassifierConfig,
    SmallCNN,
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base16():
    return make_base(DataConfig(resolution=16))


@pytest.fixture(scope="module")
def trained(base16):
    return train_classifier(base16, ClassifierConfig())


def test_default_classifier_reaches_95_percent(trained, base16):
    model, acc = trained
    assert list(acc.columns) == ["class", "n", "accuracy"]
    assert acc["class"].tolist() == ["all", "6", "9"]
    assert acc["n"].tolist() == [200, 100, 100]
    overall = float(acc.loc[acc["class"] == "all", "accuracy"].iloc[0])
    assert overall >= 0.95
    assert (acc["accuracy"] >= 0.9).all()
    # The overall accuracy is the n-weighted mean of the per-class ones.
    per_class = acc[acc["class"] != "all"]
    assert overall == pytest.approx((per_class["accuracy"] * per_class["n"]).sum() / 200)
    # The reported number is what the returned model actually scores.
    pred, probs = predict(model, to_model_range(base16["x_out"]))
    y = (base16["y_out"] == 9).astype(np.int64)
    assert (pred == y).mean() == pytest.approx(overall)
    assert probs.shape == (200, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_rotated_six_is_a_nine(trained, base16):
    """6 and 9 differ by a half-turn: the classifier must use the layout, not the stroke."""
    model, _ = trained
    sixes = base16["x_out"][base16["y_out"] == 6]
    rotated = np.ascontiguousarray(np.rot90(sixes, 2, axes=(1, 2)))
    pred, _ = predict(model, to_model_range(rotated))
    assert (pred == 1).mean() > 0.8


def test_min_accuracy_above_one_raises(base16):
    cfg = ClassifierConfig(epochs=1, min_accuracy=1.01)
    with pytest.raises(AccuracyTooLowError, match=r"classifier\.min_accuracy=1\.01"):
        train_classifier(base16, cfg)


def test_training_is_deterministic(base16):
    small = {**base16, "x_in": base16["x_in"][::4], "y_in": base16["y_in"][::4]}
    cfg = ClassifierConfig(epochs=1, min_accuracy=0.0)
    a, acc_a = train_classifier(small, cfg)
    b, acc_b = train_classifier(small, cfg)
    assert acc_a.equals(acc_b)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    c, _ = train_classifier(small, ClassifierConfig(epochs=1, min_accuracy=0.0, seed=1))
    assert not torch.equal(a.convs[0].weight, c.convs[0].weight)


def test_save_load_round_trip(trained, base16, tmp_path):
    model, _ = trained
    path = tmp_path / "clf" / "classifier.pt"
    save_classifier(model, base16["classes"], path)
    assert [p.name for p in path.parent.iterdir()] == ["classifier.pt"]
    loaded, classes = load_classifier(path)
    np.testing.assert_array_equal(classes, [6, 9])
    assert not loaded.training
    x = to_model_range(base16["x_out"])
    pa, prob_a = predict(model, x)
    pb, prob_b = predict(loaded, x)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(prob_a, prob_b)


def test_predict_batches_agree(trained, base16):
    model, _ = trained
    x = to_model_range(base16["x_out"][:50])
    p1, prob1 = predict(model, x, batch_size=7)
    p2, prob2 = predict(model, x)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(prob1, prob2, rtol=1e-5, atol=1e-6)


def test_feature_maps_and_embed(trained, base16):
    model, _ = trained
    x = to_model_range(base16["x_out"][:5])
    with torch.no_grad():
        maps = model.feature_maps(x)
        emb = model.embed(x)
        logits = model(x)
    assert len(maps) == 3
    assert [tuple(m.shape) for m in maps] == [(5, 32, 16, 16), (5, 64, 8, 8), (5, 64, 4, 4)]
    assert all((m >= 0).all() for m in maps)  # post-ReLU
    assert emb.shape == (5, 128)
    assert (emb >= 0).all()
    assert logits.shape == (5, 2)
    torch.testing.assert_close(logits, model.head(emb))


def test_small_cnn_other_sizes():
    model = SmallCNN(in_channels=3, n_classes=4)
    x = torch.randn(2, 3, 32, 32)
    maps = model.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 32, 32), (2, 64, 16, 16), (2, 64, 8, 8)]
    assert model.embed(x).shape == (2, 128)
    assert model(x).shape == (2, 4)
