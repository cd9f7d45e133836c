"""evaluate_cell: the tidy per-cell tables, and a kNN feature space apart from LPIPS's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from biaslab.base.columns import GRID_COLUMNS
from biaslab.evaluation.cell import MetricsConfig, evaluate_cell, knn_features
from biaslab.evaluation.classifier import SmallCNN, save_classifier

pytestmark = pytest.mark.usefixtures("one_thread")

GRID = {
    "dataset": "mnist69",
    "source": "embedded",
    "resolution": 16,
    "minority_fraction": 0.2,
    "depth": "2",
    "width": 1.0,
    "train_seed": 0,
    "train_steps": 10,
    "sampler": "ddim",
    "steps": 5,
    "eta": 0.0,
    "n_samples": 12,
    "sample_seed": 0,
}


@pytest.fixture
def cell(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "clf.pt"
    save_classifier(SmallCNN(1, 2), np.array([6, 9]), path)
    rng = np.random.default_rng(0)
    samples = {
        "images": rng.integers(0, 256, (12, 1, 16, 16), dtype=np.uint8),
        "seeds": np.arange(12),
    }
    train = {
        "x": rng.integers(0, 256, (20, 16, 16), dtype=np.uint8),
        "y": np.array([6] * 16 + [9] * 4),
        "classes": np.array([6, 9]),
    }
    return {"samples": samples, "train": train, "classifier_path": str(path), "grid": GRID}


def test_tables_carry_grid_and_consistent_shares(cell):
    preds, metrics = evaluate_cell(**cell)
    assert set(GRID_COLUMNS) <= set(preds.columns) and set(GRID_COLUMNS) <= set(metrics.columns)
    m = metrics.set_index("metric")
    share = m.loc["minority_share"]
    assert share.value == pytest.approx(preds.is_minority.mean())
    assert share.ci_low <= share.value <= share.ci_high
    assert m.loc["training_minority_share"].value == pytest.approx(0.2)
    assert m.loc["amplification"].value == pytest.approx(0.2 - share.value)  # majority grew: > 0
    knn = metrics[metrics.metric == "knn_cosine"]
    assert list(knn.k) == [1, 2, 5, 10] and (knn.backbone == "classifier").all()


def test_separate_knn_backbone_changes_only_knn_cosine(cell, tmp_path):
    weights = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), weights)
    _, same = evaluate_cell(**cell)
    _, other = evaluate_cell(
        **cell,
        metrics=MetricsConfig(knn_backbone="inception", knn_backbone_weights=str(weights)),
    )
    cos_same = same[same.metric == "knn_cosine"]
    cos_other = other[other.metric == "knn_cosine"]
    assert (cos_other.backbone == "inception").all()
    assert not np.allclose(cos_same.value, cos_other.value)
    rest = ~same.metric.eq("knn_cosine")
    assert (
        same[rest]
        .reset_index(drop=True)
        .equals(other[~other.metric.eq("knn_cosine")].reset_index(drop=True))
    )


def test_precomputed_train_features_give_the_same_knn(cell):
    emb, name = knn_features(cell["train"]["x"], cell["classifier_path"])
    assert name == "classifier" and emb.shape[0] == len(cell["train"]["x"])
    _, direct = evaluate_cell(**cell)
    _, cached = evaluate_cell(**cell, train_features=emb)
    pd_cols = ["metric", "k", "value"]
    a, b = direct[pd_cols], cached[pd_cols]
    assert a[["metric", "k"]].equals(b[["metric", "k"]])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        evaluate_cell(**cell, train_features=emb[:-1])


def test_base_feature_cache_serves_every_skew(cell):
    """Features of the held-in pool, computed once, indexed by each skew's base_index, equal
    the features computed from each training set itself."""
    from biaslab.datasets.mnist import make_skewed
    from biaslab.evaluation.cell import feature_pool, training_set_features

    rng = np.random.default_rng(3)
    base = {
        "x_in": rng.integers(0, 256, (30, 16, 16), dtype=np.uint8),
        "y_in": rng.permutation(np.array([6] * 20 + [9] * 10)),
        "classes": np.array([6, 9]),
    }
    emb, _ = knn_features(feature_pool(base, "base"), cell["classifier_path"])
    cache = {"embeddings": emb, "scope": np.array("base")}
    for fraction in (0.1, 0.3):
        train = make_skewed(base, fraction, n_train=None, seed=0)
        assert np.array_equal(train["x"], base["x_in"][train["base_index"]])
        direct, _ = knn_features(train["x"], cell["classifier_path"])
        np.testing.assert_allclose(
            training_set_features(train, cache), direct, rtol=1e-5, atol=1e-6
        )
    # a per-training-set cache is used as stored
    own = {"embeddings": direct, "scope": np.array("train")}
    assert training_set_features(train, own) is direct
    with pytest.raises(ValueError, match="no base_index"):
        training_set_features({"x": train["x"]}, cache)
    with pytest.raises(ValueError, match="different base sets"):
        training_set_features(train, {"embeddings": emb[:5], "scope": np.array("base")})
    with pytest.raises(ValueError, match="scope"):
        feature_pool(base, "pool")


def test_group_classifier_adds_group_shares(cell, tmp_path):
    """CelebA's Male x Blond_Hair groups: a pred_group per sample and, per group, the
    generated share (Clopper-Pearson) and the training share."""
    torch.manual_seed(1)
    path = tmp_path / "groups.pt"
    save_classifier(SmallCNN(1, 4), np.arange(4), path)
    names = np.array(["female_not_blond", "female_blond", "male_not_blond", "male_blond"])
    train = {
        **cell["train"],
        "group": np.array([0] * 10 + [1] * 6 + [2] * 3 + [3]),
        "group_names": names,
    }
    preds, metrics = evaluate_cell(**{**cell, "train": train}, attribute_classifier_path=str(path))
    assert set(preds["pred_group"]) <= {0, 1, 2, 3}
    g = metrics[metrics.metric == "group_share"].set_index("group")
    assert list(g.index) == names.tolist()
    counts = preds["pred_group"].value_counts().reindex(range(4), fill_value=0)
    np.testing.assert_allclose(g["value"], counts.to_numpy() / 12)
    assert (g["ci_low"] <= g["value"]).all() and (g["value"] <= g["ci_high"]).all()
    t = metrics[metrics.metric == "training_group_share"].set_index("group")["value"]
    np.testing.assert_allclose(t.to_numpy(), [0.5, 0.3, 0.15, 0.05])
    # without a group classifier the column is there, empty
    _, plain = evaluate_cell(**cell)
    assert "group" in plain and plain["group"].isna().all()
    with pytest.raises(ValueError, match="do not fit"):
        evaluate_cell(
            **{**cell, "train": {**train, "group_names": names[:2]}},
            attribute_classifier_path=str(path),
        )
    with pytest.raises(ValueError, match="needs the training set"):
        evaluate_cell(**cell, attribute_classifier_path=str(path))


def test_metrics_config_rejects_unknown_keys():
    assert MetricsConfig.from_dict({"knn_k": [1, 3]}).knn_k == (1, 3)
    with pytest.raises(ValueError, match="unknown keys \\['knn'\\]"):
        MetricsConfig.from_dict({"knn": 5})
    assert MetricsConfig(backbone="alex", backbone_weights="a.pth").knn_network() == (
        "alex",
        "a.pth",
    )
    assert MetricsConfig(knn_backbone="inception").knn_network() == ("inception", None)


def test_amplification_sign_is_positive_when_the_majority_grew():
    from biaslab.evaluation.metrics import amplification

    assert amplification(generated_minority_share=0.05, training_minority_share=0.1) == 0.1 - 0.05
    assert amplification(0.2, 0.1) < 0  # the minority grew: bias reduced


def test_gather_refuses_a_cell_gathered_twice(cell):
    from biaslab.evaluation.cell import gather

    preds, metrics = evaluate_cell(**cell)
    assert len(gather([metrics], "metrics")) == len(metrics)
    other = metrics.assign(train_seed=1)
    assert len(gather([metrics, other], "metrics")) == 2 * len(metrics)
    with pytest.raises(ValueError, match=r"share their grid key \(from \['a', 'b'\]\)"):
        gather([metrics, metrics], "metrics", ["a", "b"])
    with pytest.raises(ValueError, match="predictions"):
        gather([preds, preds], "predictions")
