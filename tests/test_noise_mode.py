"""DDIM's noise mode (issue 21, item 6) and its x0 rule (``sampling.samplers.sample_ddim``).

The mechanism on an analytic denoiser: the exact eps of a point mass (a ring, a digit-like
image on a -1 background), rescaled to unit RMS per sample, as a U-Net that predicts eps of
about unit norm whatever its input does. A seed whose noise has a sample std above 1 then
gets eps ~ x / std: its x0 at t = 999 is its own noise amplified ~157-fold. With clipping and
eps re-derived at every step (the rule before) those seeds end as pixel noise; the new rule
(the first step keeps the network's eps, x0 dynamically thresholded) ends every seed on the
ring.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from biaslab.base.images import to_uint8
from biaslab.sampling.samplers import per_sample_noise, sample_ddim

pytestmark = pytest.mark.usefixtures("one_thread")

#: total variation above this is the noise mode (the ring: 0.30; pixel noise: 0.6 to 1.1)
NOISE_TV = 0.5
#: sample std of each seed's initial noise (the default run's noise-mode seeds: 1.05 to 1.10)
NOISE_STDS = (0.95, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1, 1.15)


def total_variation(images: np.ndarray) -> np.ndarray:
    """Per-sample TV of uint8 [N, C, H, W] scaled to [0, 1]: mean |dy| + mean |dx|."""
    x = images.astype(np.float64) / 255.0
    return np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=3)).mean(
        axis=(1, 2, 3)
    )


def _ring() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    r = ((yy - 7.5) ** 2 + (xx - 7.5) ** 2).sqrt()
    return torch.where((r > 3.5) & (r < 6), 1.0, -1.0).double().view(1, 1, 16, 16)


def _unit_rms_denoiser(sched_config: dict, target: torch.Tensor):
    abar = DDIMScheduler.from_config(sched_config).alphas_cumprod.double()

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[t.long()].view(-1, 1, 1, 1)
        eps = (x.double() - a.sqrt() * target) / (1 - a).sqrt()  # exact, point mass
        return (eps / eps.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()).float()

    return denoiser


def _noise() -> torch.Tensor:
    z = torch.randn((len(NOISE_STDS), 1, 16, 16), generator=torch.Generator().manual_seed(0))
    z = z / z.std(dim=(1, 2, 3), keepdim=True)
    return z * torch.tensor(NOISE_STDS).view(-1, 1, 1, 1)


def _clip_rederive_everywhere(denoiser, noise, sched_config, steps):
    """The rule before: x0 clipped and eps re-derived from it at every step."""
    sched = DDIMScheduler.from_config(sched_config, timestep_spacing="trailing")
    sched.set_timesteps(steps)
    x = noise
    for t in sched.timesteps:
        eps = denoiser(x, torch.full((x.shape[0],), int(t)))
        x = sched.step(eps, t, x, use_clipped_model_output=True).prev_sample
    return x


@pytest.mark.parametrize("steps", [10, 25])
def test_no_seed_ends_in_the_noise_mode(sched_config, steps):
    target = _ring()
    ring = to_uint8(target.float())
    assert total_variation(ring)[0] == pytest.approx(0.30, abs=0.01)
    denoiser, noise = _unit_rms_denoiser(sched_config, target), _noise()
    gens = [None] * len(noise)

    before = to_uint8(_clip_rederive_everywhere(denoiser, noise, sched_config, steps))
    assert (total_variation(before) > NOISE_TV).sum() >= 2  # the setup shows the noise mode

    images = to_uint8(sample_ddim(denoiser, noise, sched_config, steps=steps, generators=gens))
    tv = total_variation(images)
    assert (tv < NOISE_TV).all(), tv
    err = np.abs(images.astype(np.float64) - ring).mean(axis=(1, 2, 3)) / 255.0
    assert (err < 0.05).all(), err  # every seed ends on the ring


def _diffusers_ddim(denoiser, noise, sched_config, steps, eta, gens):
    """diffusers' DDIMScheduler configured as the rule: the first step with dynamic
    thresholding (s unbounded) and the network's eps, the later ones clipping with eps
    re-derived from the clipped x0."""
    first = DDIMScheduler.from_config(
        sched_config,
        timestep_spacing="trailing",
        thresholding=True,
        dynamic_thresholding_ratio=0.995,
        sample_max_value=float("inf"),
    )
    later = DDIMScheduler.from_config(sched_config, timestep_spacing="trailing")
    first.set_timesteps(steps)
    later.set_timesteps(steps)
    x = noise
    for i, t in enumerate(later.timesteps):
        eps = denoiser(x, torch.full((x.shape[0],), int(t)))
        sched = first if i == 0 else later
        x = sched.step(eps, t, x, eta=eta, generator=gens, use_clipped_model_output=i > 0)
        x = x.prev_sample
    return x


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_is_diffusers_ddim_with_the_rule(sched_config, eta):
    denoiser = _unit_rms_denoiser(sched_config, _ring())
    seeds = (3, 4, 5)
    noise = per_sample_noise((1, 16, 16), [torch.Generator().manual_seed(s) for s in seeds])

    def gens():
        return [torch.Generator().manual_seed(100 + s) for s in seeds]

    got = sample_ddim(denoiser, noise, sched_config, steps=6, eta=eta, generators=gens())
    want = _diffusers_ddim(denoiser, noise, sched_config, 6, eta, gens())
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_ddim_steps_written_out(sched_config):
    """Three trailing DDIM steps (t = 999, 666, 332) of a denoiser whose x0 leaves
    [-1, 1], by hand: the first keeps the network's eps and divides x0 by s = max(1, 99.5th
    percentile of |x0|); the later ones clip x0 and re-derive eps from the clipped x0."""
    ab = DDIMScheduler.from_config(sched_config).alphas_cumprod.double()
    k = 0.9  # eps = k x: x0 = (1 - b k) x / a, out of range at t = 999

    def denoiser(x, t):
        return k * x

    x = torch.tensor([[[[3.0, -2.0], [0.5, -0.1]]]])
    got = sample_ddim(denoiser, x.clone(), sched_config, steps=3, eta=0.0, generators=[None])

    x = x.double()
    # diffusers' DDIM steps from t to t - T // steps (final abar 1 below 0)
    for i, (t, t_prev) in enumerate(((999, 666), (666, 333), (332, -1))):
        a, a_prev = ab[t], ab[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=ab.dtype)
        x0 = (x - (1 - a).sqrt() * k * x) / a.sqrt()
        if i == 0:
            s = torch.quantile(x0.abs().flatten(), 0.995).clamp(min=1)
            x0, eps = x0.clamp(-s, s) / s, k * x  # thresholded x0, the network's eps
        else:
            x0 = x0.clamp(-1, 1)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # re-derived from the clipped x0
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    torch.testing.assert_close(got.double(), x, rtol=0, atol=1e-5)


def test_unclipped_schedule_is_plain_ddim(sched_config):
    """A schedule with ``clip_sample: false`` (latents) is neither clipped nor thresholded:
    DDIM as diffusers steps it by default."""
    cfg = dict(sched_config, clip_sample=False)
    denoiser = _unit_rms_denoiser(sched_config, _ring())
    noise = _noise()
    got = sample_ddim(denoiser, noise, cfg, steps=5, generators=[None] * len(noise))
    sched = DDIMScheduler.from_config(cfg, timestep_spacing="trailing")
    sched.set_timesteps(5)
    x = noise
    for t in sched.timesteps:
        x = sched.step(denoiser(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    assert float(x.abs().max()) > 1.5  # out of [-1, 1]: nothing clipped it
    torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-5)
