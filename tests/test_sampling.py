"""Tests of biaslab.sampling.generate: per-sample seeds, batch-size invariance, samplers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from biaslab.sampling.generate import SamplerConfig, generate
from biaslab.sampling.registry import SAMPLERS
from biaslab.sampling.samplers import per_sample_noise, sample_ddim, sample_ddpm, sample_seed

SAMPLER_CASES = [("ddpm", 1.0), ("ddim", 0.0), ("ddim", 0.5)]
STEPS = 4


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(unet, sched_config, **kw):
    cfg = SamplerConfig(**{"steps": STEPS, "n_samples": 7, "batch_size": 7, **kw})
    return generate(unet, sched_config, cfg, progress=False)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(scope="module")
def reference(unet, sched_config):
    """n=7 in one batch, per sampler case."""
    return {(s, eta): _gen(unet, sched_config, sampler=s, eta=eta) for s, eta in SAMPLER_CASES}


@pytest.mark.parametrize(("sampler", "eta"), SAMPLER_CASES)
def test_output_format(reference, sampler, eta):
    images, seeds = reference[(sampler, eta)]
    assert images.shape == (7, 1, 16, 16)
    assert images.dtype == np.uint8
    assert seeds.shape == (7,)
    assert seeds.dtype == np.int64
    assert len(set(seeds.tolist())) == 7
    # Distinct seeds give distinct images.
    flat = {im.tobytes() for im in images}
    assert len(flat) == 7


@pytest.mark.parametrize(("sampler", "eta"), SAMPLER_CASES)
def test_same_seed_same_images(unet, sched_config, reference, sampler, eta):
    again, seeds = _gen(unet, sched_config, sampler=sampler, eta=eta)
    np.testing.assert_array_equal(again, reference[(sampler, eta)][0])
    np.testing.assert_array_equal(seeds, reference[(sampler, eta)][1])


@pytest.mark.parametrize(("sampler", "eta"), SAMPLER_CASES)
def test_batch_size_does_not_change_samples(unet, sched_config, reference, sampler, eta):
    images, seeds = _gen(unet, sched_config, sampler=sampler, eta=eta, batch_size=3)
    ref_images, ref_seeds = reference[(sampler, eta)]
    np.testing.assert_array_equal(seeds, ref_seeds)
    assert images.shape == ref_images.shape
    assert _max_diff(images, ref_images) <= 1  # float rounding of batched convolutions


@pytest.mark.parametrize(("sampler", "eta"), SAMPLER_CASES)
def test_prefix_property(unet, sched_config, reference, sampler, eta):
    images, seeds = _gen(unet, sched_config, sampler=sampler, eta=eta, n_samples=4)
    ref_images, ref_seeds = reference[(sampler, eta)]
    np.testing.assert_array_equal(seeds, ref_seeds[:4])
    assert images.shape == (4, 1, 16, 16)
    assert _max_diff(images, ref_images[:4]) <= 1


@pytest.mark.parametrize(("sampler", "eta"), SAMPLER_CASES)
def test_other_sample_seed_other_images(unet, sched_config, reference, sampler, eta):
    images, seeds = _gen(unet, sched_config, sampler=sampler, eta=eta, sample_seed=1)
    ref_images, ref_seeds = reference[(sampler, eta)]
    assert not set(seeds.tolist()) & set(ref_seeds.tolist())
    for a, b in zip(images, ref_images, strict=True):
        assert _max_diff(a, b) > 1


def test_samplers_differ(reference):
    """ddpm, deterministic ddim and eta = 0.5 ddim are different samplers."""
    a, b, c = (reference[case][0] for case in SAMPLER_CASES)
    assert _max_diff(a, b) > 1
    assert _max_diff(b, c) > 1
    # Same seeds for the same index, whatever the sampler (same-seed grids).
    seeds = [reference[case][1] for case in SAMPLER_CASES]
    np.testing.assert_array_equal(seeds[0], seeds[1])
    np.testing.assert_array_equal(seeds[0], seeds[2])


def test_ddim_eta0_ignores_generators(unet, sched_config):
    """eta = 0 is deterministic given the initial noise: the step generators don't matter."""
    from biaslab.sampling.generate import unet_denoiser

    noise = per_sample_noise((1, 16, 16), [torch.Generator().manual_seed(s) for s in (1, 2)])
    outs = [
        sample_ddim(
            unet_denoiser(unet),
            noise.clone(),
            sched_config,
            steps=STEPS,
            eta=0.0,
            generators=[torch.Generator().manual_seed(s) for s in seeds],
        )
        for seeds in ((3, 4), (5, 6))
    ]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    outs = [
        sample_ddim(
            unet_denoiser(unet),
            noise.clone(),
            sched_config,
            steps=STEPS,
            eta=1.0,
            generators=[torch.Generator().manual_seed(s) for s in seeds],
        )
        for seeds in ((3, 4), (5, 6))
    ]
    assert not torch.allclose(outs[0], outs[1])


def test_sample_seed():
    assert sample_seed(0, 0) == sample_seed(0, 0)
    assert isinstance(sample_seed(0, 0), int)
    seeds = [sample_seed(b, i) for b in range(5) for i in range(200)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**32 for s in seeds)
    # (base, index) is not just base + index.
    assert sample_seed(0, 1) != sample_seed(1, 0)
    # numpy integers are accepted.
    assert sample_seed(np.int64(3), np.int32(5)) == sample_seed(3, 5)


def test_per_sample_noise():
    gens = [torch.Generator().manual_seed(s) for s in (7, 8, 7)]
    x = per_sample_noise((1, 4, 4), gens)
    assert x.shape == (3, 1, 4, 4)
    torch.testing.assert_close(x[0], x[2], rtol=0, atol=0)
    assert not torch.equal(x[0], x[1])
    torch.testing.assert_close(
        x[1], torch.randn((1, 4, 4), generator=torch.Generator().manual_seed(8)), rtol=0, atol=0
    )


@pytest.mark.parametrize("eta", [0.0, 0.5, 0.999])
def test_ddpm_rejects_eta(unet, sched_config, eta):
    with pytest.raises(ValueError, match="ddpm sampler has no eta"):
        _gen(unet, sched_config, sampler="ddpm", eta=eta)
    with pytest.raises(TypeError, match="eta"):  # not a parameter of ancestral DDPM
        sample_ddpm(
            lambda x, t: x,
            torch.zeros(1, 1, 4, 4),
            sched_config,
            steps=2,
            eta=eta,
            generators=[torch.Generator()],
        )


def test_unknown_sampler(unet, sched_config):
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        _gen(unet, sched_config, sampler="nope")
    assert {"ddpm", "ddim", "euler", "heun", "dpmpp"} <= set(SAMPLERS)


def test_sampler_config_defaults_come_from_the_registry():
    assert SamplerConfig(sampler="ddpm").eta == 1.0  # ancestral: eta 1 by definition
    assert SamplerConfig(sampler="ddim").eta == 0.0
    assert SamplerConfig(sampler="heun").s_churn == 0.0
    assert SamplerConfig(sampler="ddpm").knobs() == {"timestep_spacing": "trailing"}
    assert set(SamplerConfig(sampler="euler").knobs()) == {"s_churn", "s_min", "s_max", "s_noise"}


def test_ddpm_default_config_samples(unet, sched_config):
    images, _ = generate(unet, sched_config, SamplerConfig(sampler="ddpm", steps=2, n_samples=2))
    assert images.shape[0] == 2


def test_denoiser_sees_every_timestep_once(sched_config):
    """Samplers call the denoiser once per step, with descending timesteps, batch-wide."""
    calls = []

    def denoiser(x, t):
        calls.append(t.clone())
        return torch.zeros_like(x)

    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    noise = per_sample_noise((1, 4, 4), gens)
    for fn, knobs in ((sample_ddpm, {}), (sample_ddim, {"eta": 0.0})):
        calls.clear()
        out = fn(denoiser, noise, sched_config, steps=5, generators=gens, **knobs)
        assert out.shape == noise.shape
        ts = [int(t[0]) for t in calls]
        assert len(ts) == 5
        assert ts == sorted(ts, reverse=True)
        assert all(t.shape == (2,) and (t == t[0]).all() for t in calls)


@pytest.mark.parametrize("fn", [sample_ddpm, sample_ddim])
@pytest.mark.parametrize(
    ("spacing", "first", "last"), [("trailing", 999, 99), ("leading", 900, 0), ("linspace", 999, 0)]
)
def test_timestep_spacing_reaches_the_scheduler(sched_config, fn, spacing, first, last):
    """``sched_config`` is ``make_noise_scheduler(...).config``: it lists timestep_spacing among
    its ``_use_default_values``, so setting it in the dict would be silently dropped."""
    assert "timestep_spacing" in sched_config["_use_default_values"]
    calls = []

    def denoiser(x, t):
        calls.append(int(t[0]))
        return torch.zeros_like(x)

    gens = [torch.Generator().manual_seed(0)]
    noise = per_sample_noise((1, 4, 4), gens)
    fn(denoiser, noise, sched_config, steps=10, generators=gens, timestep_spacing=spacing)
    assert (calls[0], calls[-1], len(calls)) == (first, last, 10)


@pytest.mark.parametrize(("spacing", "first"), [("trailing", 999), ("leading", 900)])
def test_generate_samples_on_the_asked_spacing(unet, sched_config, spacing, first):
    seen = []
    handle = unet.register_forward_pre_hook(lambda m, a: seen.append(int(a[1].flatten()[0])))
    try:
        _gen(unet, sched_config, sampler="ddim", steps=10, n_samples=1, timestep_spacing=spacing)
    finally:
        handle.remove()
    assert seen[0] == first and len(seen) == 10


def test_non_finite_samples_raise(sched_config):
    class NaNUnet(torch.nn.Module):
        config = SimpleNamespace(in_channels=1, sample_size=4)

        def forward(self, x, t):
            return SimpleNamespace(sample=torch.full_like(x, float("nan")))

    cfg = SamplerConfig(sampler="ddim", steps=2, n_samples=2)
    with pytest.raises(FloatingPointError, match="non-finite samples from ddim"):
        generate(NaNUnet(), sched_config, cfg, progress=False)
