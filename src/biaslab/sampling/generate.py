"""One cell's generation: its settings (``SamplerConfig``), the per-sample seeds, class
labels and guidance, the mid-block bypass and the batches (the samplers themselves are
``biaslab.sampling.samplers``, the registry ``biaslab.sampling.registry``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import UNet2DModel
from tqdm import tqdm

from biaslab.base.columns import KNOB_TYPES
from biaslab.base.images import to_uint8
from biaslab.models.objectives import Objective, objective_of_schedule, sampler_schedule
from biaslab.sampling.denoisers import BYPASS_SCHEDULES, GuidedDenoiser, mid_block_bypass, network
from biaslab.sampling.registry import SAMPLER_SPECIFIC_KNOBS, knob_error, sampler_spec
from biaslab.sampling.samplers import SAMPLE_FUNCTIONS, Denoiser, per_sample_noise, sample_seed


def sample_seeds(cfg: SamplerConfig) -> np.ndarray:
    """The seed of every sample of ``cfg`` (``sample_seed`` of each index)."""
    return np.array([sample_seed(cfg.sample_seed, i) for i in range(cfg.n_samples)], dtype=np.int64)


@dataclass(frozen=True)
class SamplerConfig:
    """One sampling setting. ``eta`` is a ddim knob (ddpm: 1 by definition), ``s_*`` are
    euler/heun knobs (Karras et al. 2022 names; ``s_min``/``s_max``/``s_noise`` are ignored at
    ``s_churn = 0``), ``timestep_spacing`` a ddpm/ddim knob ("none" for the others); a knob
    left out takes the sampler's default (``sampling.registry.SAMPLERS``).
    ``guidance`` (w) and ``labels`` need a class-conditional model: sample ``i`` gets class
    ``labels[i % len(labels)]``, or ``i % K`` when ``labels`` is None. ``bypass`` is the
    fraction of the mid-block bypassed, ``bypass_schedule`` "constant" or "linear"
    (``biaslab.sampling.denoisers.mid_block_bypass``). ``intervene`` (ratio, 1 = off) and
    ``intervene_mode`` describe the DiffLens intervention, which the caller passes to
    ``generate`` as a hook (``biaslab.difflens.steps.SAEIntervention``)."""

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
    the model's objective instead: ``biaslab.models.objectives``)."""
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
    runs on its own device (move it first, say to ``biaslab.models.unets.default_device()``).

    ``objective``: what the network predicts; None reads it from ``scheduler_config`` (the
    ``"objective"`` entry of a ``training.train.load_model`` scheduler, else its
    ``prediction_type``). The samplers, guidance and the bypass see the objective's eps adapter
    only.

    For a class-conditional U-Net, sample ``i`` is conditioned on ``sample_labels(cfg, K)[i]``
    with guidance ``cfg.guidance``.

    ``hooks``: objects with ``attached()`` (a context manager holding their forward hooks on
    the U-Net) and ``begin_batch(indices)`` (called with the sample indices of each batch
    before it is sampled): the mid-block recorder and the SAE intervention of
    ``biaslab.difflens.steps``.
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
            f"{ratios} (intervene != 1 needs one, biaslab.difflens.steps.SAEIntervention)"
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
