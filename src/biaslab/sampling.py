"""Sampling with diffusers' schedulers, one generator per sample.

Sample ``i`` draws its initial noise and every stochastic step's noise from its own
``torch.Generator`` seeded from ``(base_seed, i)``: the i-th image is the same whatever the
batch size, and identical seeds are shared by every model (same-seed grids across depths).
Each sampler is a plain function ``sampler(denoiser, noise, scheduler_config, *, steps, eta,
generators) -> x0`` in the spirit of NVlabs/edm's ``generate.py``; ``denoiser(x, t)`` returns
the predicted noise, so guidance or interventions wrap the denoiser, not the sampler.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from tqdm import tqdm

from .data import to_uint8

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_seed(base_seed: int, index: int) -> int:
    """Seed of sample ``index``: a SeedSequence hash of (base_seed, index)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1)[0])


def per_sample_noise(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """One ``randn`` draw of ``shape`` per generator, stacked: [len(generators), *shape]."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def _run(
    denoiser: Denoiser,
    x: torch.Tensor,
    scheduler,
    *,
    steps: int,
    generators: list[torch.Generator],
    **step_kw,
) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        tt = torch.full((x.shape[0],), int(t), dtype=torch.long)
        eps = denoiser(scheduler.scale_model_input(x, t), tt)
        x = scheduler.step(eps, t, x, generator=generators, **step_kw).prev_sample
    return x


def sample_ddpm(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    eta: float = 1.0,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """Ancestral DDPM (Ho et al. 2020, Alg. 2) on ``steps`` evenly spaced timesteps.

    ``eta`` is not a DDPM knob; it must be 1 (full ancestral noise) and is kept in the grid
    only for a uniform signature.
    """
    if eta != 1.0:
        raise ValueError("sampling grid: the ddpm sampler has no eta; use eta: 1.0 or ddim")
    return _run(
        denoiser,
        noise,
        DDPMScheduler.from_config(scheduler_config),
        steps=steps,
        generators=generators,
    )


def sample_ddim(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    eta: float = 0.0,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """DDIM (Song et al. 2021, Eq. 12): eta = 0 deterministic, eta = 1 DDPM-like noise."""
    return _run(
        denoiser,
        noise,
        DDIMScheduler.from_config(scheduler_config),
        steps=steps,
        generators=generators,
        eta=eta,
    )


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddpm": sample_ddpm, "ddim": sample_ddim}


@dataclass(frozen=True)
class SamplerConfig:
    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    n_samples: int = 64
    sample_seed: int = 0
    batch_size: int = 256


def unet_denoiser(unet: UNet2DModel) -> Denoiser:
    @torch.no_grad()
    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t).sample

    return denoise


def generate(
    unet: UNet2DModel, scheduler_config: dict, cfg: SamplerConfig, *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.n_samples`` images as uint8 [N, C, H, W] and their per-sample seeds."""
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"sampling grid: unknown sampler {cfg.sampler!r} ({sorted(SAMPLERS)})")
    sampler = SAMPLERS[cfg.sampler]
    unet.eval()
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    denoiser = unet_denoiser(unet)
    seeds = np.array(
        [sample_seed(cfg.sample_seed, i) for i in range(cfg.n_samples)], dtype=np.int64
    )
    out = []
    starts = range(0, cfg.n_samples, cfg.batch_size)
    for s in tqdm(starts, disable=not progress, file=sys.stderr, desc=f"{cfg.sampler}"):
        gens = [torch.Generator().manual_seed(int(v)) for v in seeds[s : s + cfg.batch_size]]
        noise = per_sample_noise(shape, gens)
        x = sampler(
            denoiser, noise, dict(scheduler_config), steps=cfg.steps, eta=cfg.eta, generators=gens
        )
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"non-finite samples from {cfg.sampler} (batch at {s})")
        out.append(to_uint8(x))
    return np.concatenate(out), seeds
