"""Sampling with diffusers' schedulers, one generator per sample.

Sample ``i`` draws its initial noise and every stochastic step's noise from its own
``torch.Generator`` seeded from ``(base_seed, i)``: the i-th image is the same whatever the
batch size, and identical seeds are shared by every model (same-seed grids across depths).
Each sampler is a plain function ``sampler(denoiser, noise, scheduler_config, *, steps,
generators, **knobs) -> x0`` in the spirit of NVlabs/edm's ``generate.py``; ``denoiser(x, t)``
returns the predicted noise of the DDPM-trained network at (possibly fractional) timestep
``t``, so guidance or interventions wrap the denoiser (``biaslab.sampling.denoisers``), not the
sampler. Whatever the network predicts (``training.objective``: epsilon, v, edm), its objective's
adapter (``biaslab.models.objectives``) turns it into that eps denoiser; ``generate`` reads the
objective from the model's scheduler config (``training.train.load_model`` puts it there).

Samplers (registry ``sampling.registry.SAMPLERS``: knobs, defaults, cost; functions
``SAMPLE_FUNCTIONS``):

* ``ddpm`` - ancestral DDPM (diffusers ``DDPMScheduler``);
* ``ddim`` - DDIM with ``eta`` (diffusers ``DDIMScheduler``); both with ``timestep_spacing``
  (``base.columns.TIMESTEP_SPACINGS``), a ``from_config`` keyword (config entries may be dropped);
* ``euler`` / ``heun`` - EDM, Karras et al. 2022, Algorithm 2 (``heun``; ``euler`` drops the
  second-order correction), on the Karras sigma schedule (Eq. 5, rho = 7) between the training
  schedule's smallest and largest sigma, with stochasticity ``s_churn, s_min, s_max, s_noise``
  (``s_churn = 0``: the deterministic ODE). ``steps`` = N noise levels (Heun: 2N - 1
  network evaluations);
* ``dpmpp`` - DPM-Solver++(2M) (Lu et al. 2022), diffusers' multistep scheduler, Karras sigmas.

VP <-> EDM (Karras et al. 2022, Table 1, VP column, as in k-diffusion's ``DiscreteEpsDDPMDenoiser``
and diffusers' ``EulerDiscreteScheduler``): the DDPM model was trained on
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. With ``sigma_t = sqrt((1 - abar_t) / abar_t)``
the EDM variable is ``x = x_t / sqrt(abar_t) = x0 + sigma eps``, so the network sees
``x / sqrt(1 + sigma^2)`` at timestep ``t(sigma)``, where ``t(sigma)`` interpolates log sigma
linearly between the training timesteps (``sigma_to_t``), and the EDM denoiser is
``D(x; sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), t(sigma))``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from biaslab.models.objectives import vp_sigmas
from biaslab.sampling.registry import SAMPLERS

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
    first: tuple | None = None,
    **step_kw,
) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    if first is not None:  # (scheduler, step keywords) of step 0
        first[0].set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        tt = torch.full((x.shape[0],), int(t), dtype=torch.long)
        eps = denoiser(scheduler.scale_model_input(x, t), tt)
        sched, kw = first if i == 0 and first is not None else (scheduler, step_kw)
        x = sched.step(eps, t, x, generator=generators, **kw).prev_sample
    return x


def sample_ddpm(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    generators: list[torch.Generator],
    timestep_spacing: str = "trailing",
) -> torch.Tensor:
    """Ancestral DDPM (Ho et al. 2020, Alg. 2) on ``steps`` evenly spaced timesteps (eta = 1
    by definition: the grid's eta column reads 1.0 and is no knob of this sampler)."""
    return _run(
        denoiser,
        noise,
        DDPMScheduler.from_config(scheduler_config, timestep_spacing=timestep_spacing),
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
    timestep_spacing: str = "trailing",
) -> torch.Tensor:
    """DDIM (Song et al. 2021, Eq. 12): eta = 0 deterministic, eta = 1 DDPM-like noise.

    x0 kept in range (``ddim_schedulers``; ``clip_sample: false``: unclipped). Steps 2.. clip
    x0 and re-derive eps from it (``use_clipped_model_output``: with the network's eps,
    guidance inverts). Step 1 (x0 = eps error x 157 at t = 999) keeps the network's eps and
    thresholds x0 dynamically (Imagen): clipped and re-derived there, seeds with noise std
    1.05-1.1 ended as pixel noise (8-10 of 64 per default-run model; now 0, guidance at
    w <= 3 unchanged). ``benchmarks/bench_noise_mode.py``; docs/notes/decisions.md."""
    first, later = ddim_schedulers(scheduler_config, timestep_spacing)
    return _run(
        denoiser,
        noise,
        later,
        steps=steps,
        generators=generators,
        first=(first, {"eta": eta, "use_clipped_model_output": False}),
        eta=eta,
        use_clipped_model_output=True,
    )


def ddim_schedulers(
    scheduler_config: dict, timestep_spacing: str = "trailing"
) -> tuple[DDIMScheduler, DDIMScheduler]:
    """``sample_ddim``'s schedulers: step 1's (dynamic thresholding) and the later steps'."""
    later = DDIMScheduler.from_config(scheduler_config, timestep_spacing=timestep_spacing)
    first = DDIMScheduler.from_config(
        scheduler_config,
        timestep_spacing=timestep_spacing,
        thresholding=bool(later.config.clip_sample),
        sample_max_value=float("inf"),
    )
    return first, later


# --------------------------------------------------------------------------------------------
# EDM / Karras samplers on a VP (DDPM) model
# --------------------------------------------------------------------------------------------


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, Eq. 5: ``steps`` levels from sigma_max down to sigma_min, then 0."""
    if steps < 1:
        raise ValueError(f"steps: {steps} < 1")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


def sigma_to_t(sigma: float, train_sigmas: torch.Tensor) -> float:
    """Fractional DDPM timestep of noise level ``sigma``: log sigma interpolated linearly
    between neighbouring training timesteps (k-diffusion ``DiscreteSchedule.sigma_to_t``,
    diffusers ``_sigma_to_t``); clamped to [0, T - 1]."""
    log_s = train_sigmas.log()
    ls = float(np.clip(np.log(sigma), float(log_s[0]), float(log_s[-1])))
    i = int(torch.searchsorted(log_s, torch.tensor([ls], dtype=log_s.dtype))[0])
    i = min(max(i - 1, 0), len(log_s) - 2)
    w = (ls - float(log_s[i])) / float(log_s[i + 1] - log_s[i])
    return float(np.clip(i + w, 0, len(log_s) - 1))


def _edm(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    generators: list[torch.Generator],
    s_churn: float,
    s_min: float,
    s_max: float,
    s_noise: float,
    second_order: bool,
) -> torch.Tensor:
    """Karras et al. 2022, Algorithm 2 (line numbers in comments), state in float64 as in
    NVlabs/edm; the network sees float32."""
    train_sigmas = vp_sigmas(scheduler_config)
    t_steps = karras_sigmas(float(train_sigmas[0]), float(train_sigmas[-1]), steps)

    def D(x: torch.Tensor, sigma: float) -> torch.Tensor:  # Table 1, VP column
        t = torch.full((x.shape[0],), sigma_to_t(sigma, train_sigmas), dtype=torch.float32)
        eps = denoiser((x / (1 + sigma**2) ** 0.5).float(), t).to(torch.float64)
        return x - sigma * eps

    x_next = noise.to(torch.float64) * t_steps[0]  # 2: x_0 ~ N(0, t_0^2 I)
    for i in range(steps):  # 3
        t_cur, t_next = float(t_steps[i]), float(t_steps[i + 1])
        x_cur = x_next
        gamma = min(s_churn / steps, 2**0.5 - 1) if s_min <= t_cur <= s_max else 0.0  # 4
        t_hat = t_cur + gamma * t_cur  # 6
        x_hat = x_cur
        if gamma > 0:  # 5, 7: eps_i ~ N(0, S_noise^2 I), one generator per sample
            eps = s_noise * per_sample_noise(tuple(x_cur.shape[1:]), generators)
            x_hat = x_cur + (t_hat**2 - t_cur**2) ** 0.5 * eps.to(torch.float64)
        d_cur = (x_hat - D(x_hat, t_hat)) / t_hat  # 8
        x_next = x_hat + (t_next - t_hat) * d_cur  # 9
        if second_order and t_next != 0:  # 10
            d_prime = (x_next - D(x_next, t_next)) / t_next  # 11
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)  # 12
    return x_next.to(torch.float32)  # 13


def sample_euler(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    generators: list[torch.Generator],
    s_churn: float = 0.0,
    s_min: float = 0.05,
    s_max: float = 50.0,
    s_noise: float = 1.003,
) -> torch.Tensor:
    """EDM Algorithm 2 without the Heun correction (first order, ``steps`` evaluations)."""
    return _edm(
        denoiser,
        noise,
        scheduler_config,
        steps=steps,
        generators=generators,
        s_churn=s_churn,
        s_min=s_min,
        s_max=s_max,
        s_noise=s_noise,
        second_order=False,
    )


def sample_heun(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    generators: list[torch.Generator],
    s_churn: float = 0.0,
    s_min: float = 0.05,
    s_max: float = 50.0,
    s_noise: float = 1.003,
) -> torch.Tensor:
    """EDM Algorithm 2 (Heun's second-order method, ``2 * steps - 1`` evaluations)."""
    return _edm(
        denoiser,
        noise,
        scheduler_config,
        steps=steps,
        generators=generators,
        s_churn=s_churn,
        s_min=s_min,
        s_max=s_max,
        s_noise=s_noise,
        second_order=True,
    )


def sample_dpmpp(
    denoiser: Denoiser,
    noise: torch.Tensor,
    scheduler_config: dict,
    *,
    steps: int,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) over Karras sigmas: diffusers'
    ``DPMSolverMultistepScheduler`` on the training schedule. Deterministic; the network is
    evaluated at diffusers' rounded timesteps ``round(t(sigma))``."""
    config = {k: v for k, v in scheduler_config.items() if k not in ("variance_type",)}
    scheduler = DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )
    return _run(denoiser, noise, scheduler, steps=steps, generators=generators)


#: Each registered sampler's function, ``sample_<name>`` (``sampling.registry.SAMPLERS`` is the
#: registry).
SAMPLE_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    name: globals()[f"sample_{name}"] for name in SAMPLERS
}
