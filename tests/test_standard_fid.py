"""The standard FID (``metrics.fid_inception_weights``) and the issue-26 metric names.

The real FID Inception weights (about 92 MB) are not on the development machine: the error
paths are tested with missing, corrupt and foreign files, and the loading path with a random
state dict of exactly the FID Inception's keys and shapes (torch-fidelity's
``FeatureExtractorInceptionV3`` built without its download)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

from biaslab.base.metric_names import rename_legacy_claims, rename_legacy_metrics
from biaslab.evaluation.quality import FID_INCEPTION_FILE, fid_inception_metric, standard_fid
from biaslab.plan.checks import ConfigError, check_inputs, with_defaults


def _config(weights) -> dict:
    return with_defaults({"metrics": {"fid_inception_weights": str(weights)}})


@pytest.fixture(scope="module")
def random_fid_inception(tmp_path_factory):
    """A state dict file with the FID Inception's keys and shapes and random values."""
    tf = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = tf.FeatureExtractorInceptionV3
    with (
        mock.patch.object(tf, "load_state_dict_from_url", return_value={}),
        mock.patch.object(cls, "load_state_dict", lambda self, sd, *a, **k: None),
    ):
        torch.manual_seed(0)
        net = cls("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("fid") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_missing_weights_file_names_the_key_and_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics\.fid_inception_weights") as e:
        check_inputs(_config(tmp_path / "nope.pth"))
    assert FID_INCEPTION_FILE in str(e.value) and "does not exist" in str(e.value)
    assert "fetch_weights" in str(e.value)


def test_no_standard_fid_by_default():
    assert with_defaults({})["metrics"]["fid_inception_weights"] is None
    check_inputs(with_defaults({}))  # reads no FID weights


def test_corrupt_weights_file_is_rejected(tmp_path):
    pytest.importorskip("torch_fidelity")
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ConfigError, match=r"metrics.fid_inception_weights: .*not a readable"):
        check_inputs(_config(bad))
    truncated = tmp_path / "truncated.pth"
    buf = tmp_path / "full.pth"
    torch.save({"w": torch.zeros(1000)}, buf)
    truncated.write_bytes(buf.read_bytes()[:500])
    with pytest.raises(ConfigError, match="not a readable torch state dict"):
        check_inputs(_config(truncated))


def test_a_foreign_state_dict_is_not_the_fid_inception(tmp_path, random_fid_inception):
    small = tmp_path / "tiny.pth"
    torch.save({"conv.weight": torch.randn(3, 3)}, small)
    with pytest.raises(ConfigError, match="is not the FID Inception's state dict"):
        check_inputs(_config(small))
    sd = torch.load(random_fid_inception, weights_only=True)
    sd["fc.weight"] = sd["fc.weight"][:1000]  # torchvision's 1000 classes, not the 1008
    wrong = tmp_path / "wrong-shape.pth"
    torch.save(sd, wrong)
    with pytest.raises(ValueError, match="size mismatch"):
        fid_inception_metric(wrong)
    pickled = tmp_path / "object.pth"
    torch.save([1, 2, 3], pickled)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        fid_inception_metric(pickled)


def test_a_state_dict_of_the_right_keys_builds_torchmetrics_fid(random_fid_inception):
    check_inputs(_config(random_fid_inception))  # passes: right keys and shapes
    metric = fid_inception_metric(random_fid_inception)
    assert type(metric).__name__ == "FrechetInceptionDistance"
    assert metric.inception.use_antialias is False  # the original TF1-style resize
    with pytest.raises(ValueError, match="uint8"):
        standard_fid(np.zeros((3, 3, 8, 8), np.float32), np.zeros((3, 8, 8), np.uint8), "x")


class _Flat:  # a backbone: the pixels as features
    name = "classifier"

    def embed(self, x):
        return x.flatten(1).float()


def test_quality_rows_add_the_standard_fid_when_weights_are_set(random_fid_inception, monkeypatch):
    from biaslab.base.images import to_model_range
    from biaslab.evaluation import quality
    from biaslab.evaluation.cell import MetricsConfig

    monkeypatch.setattr(quality, "load_backbone", lambda *a, **k: _Flat())
    rng = np.random.default_rng(0)
    real = to_model_range(rng.integers(0, 256, (3, 1, 16, 16), dtype=np.uint8))  # grey
    gen = to_model_range(rng.integers(0, 256, (3, 1, 16, 16), dtype=np.uint8))
    off = quality.quality_rows(gen, real, None, MetricsConfig())
    assert [r["metric"] for r in off] == ["fid_classifier", "kid_classifier", "kid_classifier_std"]
    assert {r["backbone"] for r in off} == {"classifier"}
    on = quality.quality_rows(
        gen, real, None, MetricsConfig(fid_inception_weights=str(random_fid_inception))
    )
    assert on[:3] == off and on[3]["metric"] == "fid" and on[3]["backbone"] == "fid_inception"
    assert np.isfinite(on[3]["value"]) and on[3]["value"] >= -1e-6 and on[3]["n"] == 3


def test_legacy_metric_names_map_on_read():
    t = pd.DataFrame(
        {
            "metric": ["fid", "kid", "kid_std", "fid", "fd"],
            "backbone": ["classifier", "classifier", "classifier", "fid_inception", None],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    got = rename_legacy_metrics(t)
    assert list(got["metric"]) == [
        "fid_classifier",
        "kid_classifier",
        "kid_classifier_std",
        "fid",
        "fd",
    ]
    assert list(got["value"]) == list(t["value"]) and t["metric"].iloc[0] == "fid"
    cfg = {"claims": [{"id": "a", "metric": "fid"}, {"id": "b", "metric": "fd"}]}
    new, changed = rename_legacy_claims(cfg)
    assert changed == ["a"] and new["claims"][0]["metric"] == "fid_classifier"
    assert cfg["claims"][0]["metric"] == "fid"  # the input is not changed
    std = {**cfg, "metrics": {"fid_inception_weights": "w.pth"}}
    assert rename_legacy_claims(std)[1] == []  # a new config's fid is the standard FID
