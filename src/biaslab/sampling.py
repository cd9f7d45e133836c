"""Sampling with diffusers' schedulers, one generator per sample.

Sample ``i`` draws its initial noise and every stochastic step's noise from its own
``torch.Generator`` seeded from ``(base_seed, i)``: the i-th image is the same whatever the
batch size, and identical seeds are shared by every model (same-seed grids across depths).
Each sampler is a plain function ``sampler(denoiser, noise, scheduler_config, *, steps,
generators, **knobs) -> x0`` in the spirit of NVlabs/edm's ``generate.py``; ``denoiser(x, t)``
returns the predicted noise of the DDPM-trained network at (possibly fractional) timestep
``t``, so guidance or interventions wrap the denoiser (``biaslab.denoisers``), not the sampler.
Whatever the network predicts (``training.objective``: epsilon, v, edm), its objective's
adapter (``biaslab.objectives``) turns it into that eps denoiser; ``generate`` reads the
objective from the model's scheduler config (``train.load_model`` puts it there).

Samplers (registry ``grid.SAMPLERS``: knobs, defaults, cost; functions ``SAMPLE_FUNCTIONS``):

* ``ddpm`` - ancestral DDPM (diffusers ``DDPMScheduler``);
* ``ddim`` - DDIM with ``eta`` (diffusers ``DDIMScheduler``); both with ``timestep_spacing``
  (``grid.TIMESTEP_SPACINGS``), a ``from_config`` keyword (config entries may be dropped);
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

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from tqdm import tqdm

from .denoisers import BYPASS_SCHEDULES, GuidedDenoiser, mid_block_bypass, network
from .grid import KNOB_TYPES, SAMPLER_SPECIFIC_KNOBS, SAMPLERS, knob_error, sampler_spec
from .images import to_uint8
from .objectives import Objective, objective_of_schedule, sampler_schedule, vp_sigmas

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_seed(base_seed: int, index: int) -> int:
    """Seed of sample ``index``: a SeedSequence hash of (base_seed, index)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1)[0])


def sample_seeds(cfg: SamplerConfig) -> np.ndarray:
    """The seed of every sample of ``cfg`` (``sample_seed`` of each index)."""
    return np.array([sample_seed(cfg.sample_seed, i) for i in range(cfg.n_samples)], dtype=np.int64)


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


#: Each registered sampler's function, ``sample_<name>`` (``grid.SAMPLERS`` is the registry).
SAMPLE_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    name: globals()[f"sample_{name}"] for name in SAMPLERS
}


@dataclass(frozen=True)
class SamplerConfig:
    """One sampling setting. ``eta`` is a ddim knob (ddpm: 1 by definition), ``s_*`` are
    euler/heun knobs (Karras et al. 2022 names; ``s_min``/``s_max``/``s_noise`` are ignored at
    ``s_churn = 0``), ``timestep_spacing`` a ddpm/ddim knob ("none" for the others); a knob
    left out takes the sampler's default (``grid.SAMPLERS``).
    ``guidance`` (w) and ``labels`` need a class-conditional model: sample ``i`` gets class
    ``labels[i % len(labels)]``, or ``i % K`` when ``labels`` is None. ``bypass`` is the
    fraction of the mid-block bypassed, ``bypass_schedule`` "constant" or "linear"
    (``biaslab.denoisers.mid_block_bypass``). ``intervene`` (ratio, 1 = off) and
    ``intervene_mode`` describe the DiffLens intervention, which the caller passes to
    ``generate`` as a hook (``biaslab.difflens.SAEIntervention``)."""

    sampler: str = "ddim"
    steps: int = 50
    eta: float | None = None
    n_samples: int = 64
    sample_seed: int = 0
    batch_size: int = 256
    s_churn: float | None = None
    s_min: float = 0.05
    s_max: float = 50.0
    s_noise: float = 1.003
    guidance: float = 0.0
    bypass: float = 0.0
    bypass_schedule: str = "constant"
    timestep_spacing: str | None = None
    intervene: float = 1.0
    intervene_mode: str = "none"
    labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        spec = sampler_spec(self.sampler)
        for knob in SAMPLER_SPECIFIC_KNOBS:
            if getattr(self, knob) is None:
                object.__setattr__(self, knob, KNOB_TYPES[knob](spec.default(knob)))

    def knobs(self) -> dict[str, float]:
        """The keyword arguments of the sampler's function (its knobs less the fixed ones)."""
        spec = sampler_spec(self.sampler)
        return {k: getattr(self, k) for k in spec.knobs if k not in spec.fixed}


def unet_denoiser(unet: UNet2DModel) -> Denoiser:
    """The raw output of an epsilon-prediction U-Net as a denoiser (``generate`` goes through
    the model's objective instead: ``biaslab.objectives``)."""
    net = network(unet)
    return lambda x, t: net(x, t)


def on_device(denoiser: Denoiser, device: torch.device) -> Denoiser:
    """``denoiser`` run on ``device`` (the U-Net's), its inputs (tensor keywords too) moved
    there and its output moved back: the samplers keep their state, and every random draw, on
    the CPU, so a sample depends on its seed only, not on where the network runs."""
    if device.type == "cpu":
        return denoiser

    def denoise(x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
        kw = {k: v.to(device) if torch.is_tensor(v) else v for k, v in kw.items()}
        return denoiser(x.to(device), torch.as_tensor(t).to(device), **kw).to(x.device)

    return denoise


def num_classes(unet: UNet2DModel) -> int:
    """K for a class-conditional U-Net (K + 1 class embeddings, null class K), else 0."""
    n = getattr(unet.config, "num_class_embeds", None)
    return int(n) - 1 if n else 0


def sample_labels(cfg: SamplerConfig, k: int) -> np.ndarray | None:
    """Class index of each sample (None for an unconditional model, ``k = 0``)."""
    if k == 0:
        if cfg.labels is not None or cfg.guidance != 0.0:
            raise ValueError("sampling: labels and guidance need a class-conditional model")
        return None
    if cfg.labels is None:
        return np.arange(cfg.n_samples, dtype=np.int64) % k
    labels = np.asarray(cfg.labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"sampling.labels: need class indices in [0, {k}), got {cfg.labels}")
    return labels[np.arange(cfg.n_samples) % labels.size]


def check_sampler_config(cfg: SamplerConfig) -> None:
    """A clear error for a knob the sampler does not have or a value out of range."""
    err = knob_error(cfg.sampler, {k: getattr(cfg, k) for k in SAMPLER_SPECIFIC_KNOBS})
    if err:
        raise ValueError(f"sampling grid: {err[1]}")
    if cfg.s_churn < 0:
        raise ValueError(f"sampling grid: s_churn {cfg.s_churn} is negative")
    if cfg.bypass_schedule not in BYPASS_SCHEDULES:
        raise ValueError(
            f"sampling grid: bypass_schedule {cfg.bypass_schedule!r} not in {BYPASS_SCHEDULES}"
        )


def generate(
    unet: UNet2DModel,
    scheduler_config: dict,
    cfg: SamplerConfig,
    *,
    progress: bool = True,
    objective: Objective | None = None,
    hooks: Sequence = (),
) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.n_samples`` images as uint8 [N, C, H, W] and their per-sample seeds. The U-Net
    runs on its own device (move it first, say to ``biaslab.models.default_device()``).

    ``objective``: what the network predicts; None reads it from ``scheduler_config`` (the
    ``"objective"`` entry of a ``train.load_model`` scheduler, else its ``prediction_type``).
    The samplers, guidance and the bypass see the objective's eps adapter only.

    For a class-conditional U-Net, sample ``i`` is conditioned on ``sample_labels(cfg, K)[i]``
    with guidance ``cfg.guidance``.

    ``hooks``: objects with ``attached()`` (a context manager holding their forward hooks on
    the U-Net) and ``begin_batch(indices)`` (called with the sample indices of each batch
    before it is sampled): the mid-block recorder and the SAE intervention of
    ``biaslab.difflens``.
    """
    check_sampler_config(cfg)
    objective = objective or objective_of_schedule(scheduler_config)
    schedule = sampler_schedule(scheduler_config)
    unet.eval()
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    k = num_classes(unet)
    labels = sample_labels(cfg, k)
    param = next(iter(unet.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    # the network on its device; the adapter, guidance and the sampler on the CPU
    eps = objective.adapter(on_device(network(unet), device), schedule)
    guided = GuidedDenoiser(eps, cfg.guidance, null_class=k) if k else None
    bypass = bypass_context(unet, cfg, objective, schedule)

    def denoiser_for(idx: np.ndarray) -> Denoiser:
        return eps if guided is None else guided.bind(torch.from_numpy(labels[idx]))

    with bypass:
        return sample_batches(
            cfg, shape, schedule, denoiser_for, finish=to_uint8, hooks=hooks, progress=progress
        )


def bypass_context(unet, cfg: SamplerConfig, objective: Objective, schedule: dict):
    """The mid-block bypass of ``cfg`` on ``unet`` (a no-op context at ``bypass = 0``)."""
    if cfg.bypass == 0.0:
        return contextlib.nullcontext()
    return mid_block_bypass(
        unet,
        cfg.bypass,
        schedule=cfg.bypass_schedule,
        num_train_timesteps=int(schedule["num_train_timesteps"]),
        timestep_to_t=objective.train_timestep(schedule),
    )


def sample_batches(
    cfg: SamplerConfig,
    shape: tuple[int, ...],
    schedule: dict,
    denoiser_for: Callable[[np.ndarray], Denoiser],
    *,
    finish: Callable[[torch.Tensor], np.ndarray],
    hooks: Sequence = (),
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The batch loop every model kind shares: per batch of sample indices ``idx``, one
    generator per sample (``sample_seeds``), the initial noise of ``shape`` from it, the
    sampler ``cfg.sampler`` on ``denoiser_for(idx)``, a NaN check, and ``finish`` (to uint8
    images; a text-to-image model decodes its latents there). ``hooks`` as in ``generate``.
    Returns the concatenated images and the seeds."""
    ratios = [h.ratio for h in hooks if getattr(h, "intervenes", False) and h.ratio != 1.0]
    if ratios != ([cfg.intervene] if cfg.intervene != 1.0 else []):
        raise ValueError(
            f"sampling: intervene = {cfg.intervene}, but the SAE intervention hooks have ratios "
            f"{ratios} (intervene != 1 needs one, biaslab.difflens.SAEIntervention)"
        )
    sampler = SAMPLE_FUNCTIONS[cfg.sampler]
    knobs = cfg.knobs()
    seeds = sample_seeds(cfg)
    out = []
    starts = range(0, cfg.n_samples, cfg.batch_size)
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook.attached())
        for s in tqdm(starts, disable=not progress, file=sys.stderr, desc=f"{cfg.sampler}"):
            idx = np.arange(s, min(s + cfg.batch_size, cfg.n_samples))
            for hook in hooks:
                hook.begin_batch(idx)
            gens = [torch.Generator().manual_seed(int(v)) for v in seeds[idx]]
            noise = per_sample_noise(shape, gens)
            x = sampler(
                denoiser_for(idx), noise, dict(schedule), steps=cfg.steps, generators=gens, **knobs
            )
            if not torch.isfinite(x).all():
                raise FloatingPointError(f"non-finite samples from {cfg.sampler} (batch at {s})")
            out.append(finish(x))
    return np.concatenate(out), seeds
