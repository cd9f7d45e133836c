"""biaslab.evaluation.probe: what the model knows, read from its x0 predictions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from biaslab.datasets.colour_mnist import PALETTE
from biaslab.evaluation.cell import attach_probe
from biaslab.evaluation.classifier import SmallCNN, save_classifier
from biaslab.evaluation.probe import ProbeConfig, probe_model, subject, verdict
from biaslab.training.train import TrainConfig, make_noise_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = np.array([0, 1])


class PointMassOracle(torch.nn.Module):
    """The optimal denoiser of a data set that is one image per class (a point mass): its
    epsilon prediction is exact, ``(x_t - sqrt(abar) x0_c) / sqrt(1 - abar)``, so x0 is
    recovered at every t. ``prior=False``: it ignores the class and predicts the mean image."""

    def __init__(self, x0: torch.Tensor, alphas: torch.Tensor, prior: bool = True):
        super().__init__()
        self.x0, self.alphas, self.prior = x0, alphas, prior
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(num_class_embeds=len(x0) + 1)

    def forward(self, x, t, class_labels=None):
        a = self.alphas[t.long()].view(-1, 1, 1, 1)
        x0 = self.x0[class_labels] if self.prior else self.x0.mean(0, keepdim=True)
        return SimpleNamespace(sample=(x - a.sqrt() * x0) / (1 - a).sqrt())


def _solid(colour_ids: np.ndarray, size: int = 8) -> np.ndarray:
    return np.broadcast_to(
        PALETTE[colour_ids][:, :, None, None], (len(colour_ids), 3, size, size)
    ).copy()


@pytest.fixture
def colour_case(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "clf.pt"
    save_classifier(SmallCNN(3, 2), CLASSES, path)
    y = np.array([0] * 10 + [1] * 10)
    train = {"x": _solid(y), "y": y, "classes": CLASSES, "colour": y.copy()}
    sched = make_noise_scheduler(TrainConfig(depth="2"))
    x0 = torch.from_numpy(_solid(CLASSES)).float() / 127.5 - 1
    return train, sched, x0, str(path)


def test_a_model_that_knows_the_colour_is_learned(colour_case):
    train, sched, x0, clf = colour_case
    unet = PointMassOracle(x0, sched.alphas_cumprod)
    s, rho = subject(unet, dict(sched.config), train, clf, "biased_mnist")
    cfg = ProbeConfig(n_images=20, timesteps=(0, 500, 999), n_start=8)
    table = probe_model(s, cfg, {"dataset": "biased_mnist", "depth": "2"}, rho)
    acc = table[table.metric == "attribute_accuracy"].set_index("t")["value"]
    assert rho == 1.0 and (acc == 1.0).all()
    start = table[table.metric == "start_rho"]
    assert start.value.iloc[0] == pytest.approx(1.0, abs=1e-6) and start.n.iloc[0] == 16
    assert table.loc[table.metric == "start_rho_nearest", "value"].iloc[0] == 1.0
    assert table["learned"].all() and (table["dataset"] == "biased_mnist").all()


def test_start_rho_reads_the_blend_of_a_class_mean(colour_case):
    """A model that predicts each class's mean image at rho 0.8 (0.8 own colour + 0.2 the
    other's, blended): start_rho is 0.8, where the nearest colour says 1.0 (the majority
    colour of every blend) and the verdict against the training rho 0.8 is "learned"."""
    train, sched, _, clf = colour_case
    own = PALETTE[CLASSES].astype(np.float64)
    blend = np.rint(0.8 * own + 0.2 * own[::-1]) / 127.5 - 1  # class c: 0.8 c + 0.2 other
    x0 = torch.from_numpy(np.broadcast_to(blend[:, :, None, None], (2, 3, 8, 8)).copy()).float()
    unet = PointMassOracle(x0, sched.alphas_cumprod)
    s, _ = subject(unet, dict(sched.config), train, clf, "biased_mnist")
    table = probe_model(s, ProbeConfig(n_images=8, timesteps=(0,), n_start=8), {}, 0.8)
    by = table.set_index("metric")["value"]
    assert by["start_rho"] == pytest.approx(0.8, abs=0.01)
    assert by["start_rho_nearest"] == 1.0
    assert table["learned"].all()


def test_a_model_without_the_class_prior_is_not_learned(colour_case):
    train, sched, x0, clf = colour_case
    unet = PointMassOracle(x0, sched.alphas_cumprod, prior=False)
    s, rho = subject(unet, dict(sched.config), train, clf, "biased_mnist")
    table = probe_model(s, ProbeConfig(n_images=20, timesteps=(0, 500, 999), n_start=8), {}, rho)
    start = float(table.loc[table.metric == "start_rho", "value"].iloc[0])
    # the mean image's background is the 50/50 blend: 0.5 up to float noise (5e-7 seen)
    assert start <= 0.5 + 1e-6 and not table["learned"].any()
    # it always predicts the mean image: the colour is never recovered beyond a guess
    acc = table[table.metric == "attribute_accuracy"].set_index("t")["value"]
    assert acc.max() < 0.75


def test_verdict_rules():
    cfg = ProbeConfig(reference_t=500, min_accuracy=0.9, max_rho_gap=0.1)
    uncond = pd.DataFrame({"metric": ["minority_accuracy"] * 2, "t": [0, 500], "value": [1, 0.95]})
    assert verdict(uncond, cfg, None)
    assert not verdict(uncond.assign(value=[1, 0.5]), cfg, None)
    cond = pd.DataFrame({"metric": ["start_rho"], "t": [999], "value": [0.85]})
    assert verdict(cond, cfg, 0.9) and not verdict(cond, cfg, 0.99)
    with pytest.raises(ValueError, match=r"probe\.reference_t"):
        verdict(uncond, ProbeConfig(reference_t=700), None)


def test_attach_probe_flags_every_row_of_a_model():
    grid = {"dataset": "d", "source": "s", "resolution": 16, "minority_fraction": 0.1}
    metrics = pd.DataFrame([{**grid, "depth": d, "metric": "m", "value": 1.0} for d in "23"])
    probe = pd.DataFrame([{**grid, "depth": d, "learned": d == "2"} for d in "23"])
    out = attach_probe(metrics, probe)
    assert out.set_index("depth")["probe_learned"].to_dict() == {"2": True, "3": False}
    with pytest.raises(ValueError, match="no probe"):
        attach_probe(metrics, probe[probe.depth == "2"])


def test_probe_config_reads_its_section():
    assert ProbeConfig.from_dict({"timesteps": [0, 500]}).timesteps == (0, 500)
    with pytest.raises(ValueError, match=r"probe: unknown keys \['steps'\]"):
        ProbeConfig.from_dict({"steps": 3})
