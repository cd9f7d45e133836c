"""Tests of class-conditional training, classifier-free guidance and the mid-block bypass."""

from __future__ import annotations

import copy
import dataclasses
import os
import signal

import numpy as np
import pytest
import torch

from biaslab.models.unets import build_unet
from biaslab.sampling.denoisers import GuidedDenoiser, conditional_denoiser, mid_block_bypass
from biaslab.sampling.generate import SamplerConfig, generate, num_classes, sample_labels
from biaslab.training.train import (
    Preempted,
    TrainConfig,
    checkpoint_dir_for,
    load_model,
    save_model,
    train_diffusion,
)

COND = TrainConfig(
    depth="2",
    width=0.25,
    steps=8,
    batch_size=8,
    checkpoint_every=4,
    warmup_steps=2,
    seed=3,
    num_classes=3,
    label_dropout=0.5,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 24, res: int = 16):
    x = np.random.default_rng(0).integers(0, 256, (n, 3, res, res), dtype=np.uint8)
    return x, np.arange(n) % 3


# ------------------------------------------------------------------------ conditional training


def test_conditional_training_resumes_exactly(tmp_path, monkeypatch):
    x, y = _data()
    ref, ref_log = train_diffusion(x, COND, checkpoint_dir=tmp_path / "a", progress=False, labels=y)
    assert ref.class_embedding is not None
    assert ref.config.num_class_embeds == 4
    assert num_classes(ref) == 3

    # Preempt after step 6 (SIGTERM to ourselves), then resume from the step-6 checkpoint.
    clip = torch.nn.utils.clip_grad_norm_
    calls = []

    def clip_and_signal(*args, **kw):
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return clip(*args, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_signal)
    with pytest.raises(Preempted, match="step 6/8"):
        train_diffusion(x, COND, checkpoint_dir=tmp_path / "b", progress=False, labels=y)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    resumed, log = train_diffusion(x, COND, checkpoint_dir=tmp_path / "b", progress=False, labels=y)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(ref_log["loss"], log["loss"])

    save_model(resumed, COND, tmp_path / "model")
    unet, _ = load_model(tmp_path / "model")
    assert unet.config.num_class_embeds == 4
    assert torch.equal(unet.class_embedding.weight, ref.class_embedding.weight)


def test_label_dropout_one_trains_only_the_null_class(tmp_path):
    """With label_dropout = 1 every sample is null: rows 0..K-1 of the class embedding keep
    their initial values, the null row K moves."""
    x, y = _data()
    cfg = dataclasses.replace(COND, steps=3, label_dropout=1.0)
    unet, _ = train_diffusion(x, cfg, checkpoint_dir=tmp_path, progress=False, labels=y)
    torch.manual_seed(cfg.seed)
    init = build_unet("2", resolution=16, in_channels=3, width=0.25, num_class_embeds=4)
    assert torch.equal(unet.class_embedding.weight[:3], init.class_embedding.weight[:3])
    assert not torch.equal(unet.class_embedding.weight[3], init.class_embedding.weight[3])


def test_config_compatibility_and_label_checks(tmp_path):
    uncond = TrainConfig(depth="3")
    d = uncond.as_dict()
    assert "num_classes" not in d and "label_dropout" not in d
    assert d == {
        k: v
        for k, v in dataclasses.asdict(uncond).items()
        if k not in ("num_classes", "label_dropout", "objective", "edm")  # epsilon: as before
    }
    assert "num_classes" in COND.as_dict()
    x, y = _data(8)
    with_y = checkpoint_dir_for(tmp_path, COND, x, y)
    assert with_y != checkpoint_dir_for(tmp_path, COND, x)
    assert with_y != checkpoint_dir_for(tmp_path, COND, x, y[::-1])
    assert TrainConfig.from_dict({"num_classes": 10}).num_classes == 10
    kw = {"checkpoint_dir": tmp_path, "progress": False}
    with pytest.raises(ValueError, match="labels are required"):
        train_diffusion(x, COND, **kw)
    with pytest.raises(ValueError, match="num_classes is 0"):
        train_diffusion(x, dataclasses.replace(COND, num_classes=0), labels=y, **kw)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        train_diffusion(x, COND, labels=y + 1, **kw)
    with pytest.raises(ValueError, match="labels for 8 images"):
        train_diffusion(x, COND, labels=y[:5], **kw)


# ------------------------------------------------------------------------------------ guidance


@pytest.fixture(scope="module")
def cond_unet():
    torch.manual_seed(1)
    unet = build_unet("2", resolution=16, width=0.25, num_class_embeds=4).eval()
    with torch.no_grad():  # make the classes matter in an untrained model
        unet.class_embedding.weight.mul_(10)
    return unet


@pytest.fixture(scope="module")
def sched_config():
    from biaslab.training.train import make_noise_scheduler

    return dict(make_noise_scheduler(TrainConfig()).config)


def _xt(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 16, 16, generator=g), torch.tensor([999, 500, 10, 0][:n])


def test_guidance_zero_is_the_conditional_model(cond_unet):
    x, t = _xt()
    labels = torch.tensor([0, 1, 2, 0])
    plain = conditional_denoiser(cond_unet, labels)(x, t)
    assert torch.equal(GuidedDenoiser(cond_unet, 0.0, null_class=3)(x, t, labels), plain)
    assert torch.equal(GuidedDenoiser(cond_unet, 0.0, null_class=3).bind(labels)(x, t), plain)


def test_guidance_formula_one_batched_forward(cond_unet):
    x, t = _xt()
    labels = torch.tensor([2, 1, 0, 2])
    calls = []
    handle = cond_unet.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    try:
        guided = GuidedDenoiser(cond_unet, 2.0, null_class=3)(x, t, labels)
    finally:
        handle.remove()
    assert calls == [8]  # cond and uncond halves together
    cond = conditional_denoiser(cond_unet, labels)(x, t)
    uncond = conditional_denoiser(cond_unet, torch.full_like(labels, 3))(x, t)
    torch.testing.assert_close(guided, 3.0 * cond - 2.0 * uncond, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond, uncond, atol=1e-3)
    with pytest.raises(ValueError, match="negative"):
        GuidedDenoiser(cond_unet, -1.0, null_class=3)


def _gen(unet, sched_config, **kw):
    cfg = SamplerConfig(**{"sampler": "ddim", "steps": 3, "n_samples": 5, "batch_size": 5} | kw)
    return generate(unet, sched_config, cfg, progress=False)[0]


def _max_diff(a, b) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_conditional_generate(cond_unet, sched_config):
    assert sample_labels(SamplerConfig(n_samples=5), 3).tolist() == [0, 1, 2, 0, 1]
    assert sample_labels(SamplerConfig(n_samples=4, labels=(2,)), 3).tolist() == [2, 2, 2, 2]
    assert sample_labels(SamplerConfig(n_samples=3, labels=(1, 0)), 3).tolist() == [1, 0, 1]
    assert sample_labels(SamplerConfig(), 0) is None
    with pytest.raises(ValueError, match="class indices"):
        sample_labels(SamplerConfig(labels=(3,)), 3)
    for sampler, kw in (("ddim", {}), ("heun", {"s_churn": 40.0})):
        w0 = _gen(cond_unet, sched_config, sampler=sampler, **kw)
        w2 = _gen(cond_unet, sched_config, sampler=sampler, guidance=2.0, **kw)
        assert _max_diff(w0, w2) > 1
        split = _gen(cond_unet, sched_config, sampler=sampler, guidance=2.0, batch_size=2, **kw)
        assert _max_diff(split, w2) <= 1
    # Labels change the samples; same labels, same samples.
    a = _gen(cond_unet, sched_config, labels=(0,))
    assert _max_diff(a, _gen(cond_unet, sched_config, labels=(1,))) > 1
    np.testing.assert_array_equal(a, _gen(cond_unet, sched_config, labels=(0,)))


# --------------------------------------------------------------------------- mid-block bypass


class _IdentityMid(torch.nn.Module):
    def forward(self, hidden_states, temb=None):
        return hidden_states


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_unet("3", resolution=16, width=0.25).eval()


@torch.no_grad()
def test_bypass_zero_and_one(unet):
    x, t = _xt()
    base = unet(x, t).sample
    with mid_block_bypass(unet, 0.0):
        assert torch.equal(unet(x, t).sample, base)
    no_mid = copy.deepcopy(unet)
    no_mid.mid_block = _IdentityMid()
    identity = no_mid(x, t).sample
    assert not torch.allclose(identity, base, atol=1e-4)
    with mid_block_bypass(unet, 1.0):
        assert torch.equal(unet(x, t).sample, identity)
    with mid_block_bypass(unet, 0.5):
        half = unet(x, t).sample
    assert not torch.allclose(half, base, atol=1e-5)
    assert not torch.allclose(half, identity, atol=1e-5)
    assert torch.equal(unet(x, t).sample, base)  # hooks removed on exit
    with pytest.raises(ValueError, match="not in"):
        with mid_block_bypass(unet, 1.5):
            pass


@torch.no_grad()
def test_bypass_linear_ramp(unet):
    x, _ = _xt()
    no_mid = copy.deepcopy(unet)
    no_mid.mid_block = _IdentityMid()
    t = torch.tensor([999, 0, 999, 0])
    base, identity = unet(x, t).sample, no_mid(x, t).sample
    with mid_block_bypass(unet, 1.0, schedule="linear", num_train_timesteps=1000):
        out = unet(x, t).sample
        # keyword call (as from a guided batch) also sees the timestep
        out_kw = unet(sample=x, timestep=t).sample
    torch.testing.assert_close(out[[0, 2]], base[[0, 2]], rtol=0, atol=0)  # p(999) = 0
    torch.testing.assert_close(out[[1, 3]], identity[[1, 3]], rtol=0, atol=0)  # p(0) = 1
    assert torch.equal(out, out_kw)
    with pytest.raises(ValueError, match="bypass_schedule"):
        with mid_block_bypass(unet, 1.0, schedule="cosine"):
            pass


def test_bypass_in_generate(unet, sched_config):
    plain = _gen(unet, sched_config)
    assert _max_diff(plain, _gen(unet, sched_config, bypass=0.8)) > 1
    ramp = _gen(unet, sched_config, bypass=0.8, bypass_schedule="linear")
    assert _max_diff(ramp, plain) > 1
    np.testing.assert_array_equal(plain, _gen(unet, sched_config))  # nothing left attached
