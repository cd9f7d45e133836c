"""Training objectives: what the network predicts, its training loss, and its one adapter to
the samplers' ``eps(x, t)`` contract.

The registry ``OBJECTIVES`` (name -> class) is the one place an objective's facts live: its
noise-level draw and loss for training (``training.train._batch_loss``), the diffusers
``prediction_type`` saved with the model, and ``adapter``, which turns the raw network into the
denoiser every sampler calls (``biaslab.sampling.generate``): ``eps(x_vp, t)``, the noise predicted
at the VP (DDPM) variable ``x_vp = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` on the DDPM timestep
scale, ``t`` possibly fractional (the EDM samplers evaluate at ``t(sigma)``,
``sampling.samplers.sigma_to_t``). Guidance (``sampling.denoisers.GuidedDenoiser``) combines these
eps predictions, so it works for every objective; the mid-block bypass reads the DDPM timestep back
from the network's timestep input (``Objective.train_timestep``).

* ``epsilon`` (Ho et al. 2020): the network predicts eps; the adapter is the identity (an
  epsilon model samples bit-identically to before objectives existed).
* ``v`` (Salimans & Ho 2022; diffusers ``prediction_type="v_prediction"``): the network
  predicts ``v = sqrt(abar) eps - sqrt(1 - abar) x0``; ``eps = sqrt(abar) v + sqrt(1 - abar)
  x_vp``.
* ``edm`` (Karras et al. 2022, Table 1, "Ours" column): ``D(x; sigma) = c_skip x + c_out
  F(c_in x, c_noise)`` on the EDM variable ``x = x0 + sigma n``, with ``c_skip = s_d^2 /
  (sigma^2 + s_d^2)``, ``c_out = sigma s_d / sqrt(sigma^2 + s_d^2)``, ``c_in = 1 /
  sqrt(sigma^2 + s_d^2)``, ``c_noise = ln(sigma) / 4``; training draws ``ln sigma ~
  N(P_mean, P_std^2)`` and weights the loss by ``lambda(sigma) = (sigma^2 + s_d^2) / (sigma
  s_d)^2`` (defaults s_d = sigma_data = 0.5, P_mean = -1.2, P_std = 1.2: config keys
  ``training.edm``). The adapter takes ``sigma = sigma(t)`` of the model's own DDPM schedule
  (``NoiseLevels.sigma``: log sigma interpolated linearly between training timesteps, the
  inverse of ``sampling.samplers.sigma_to_t``), ``x = x_vp sqrt(1 + sigma^2)`` and returns ``eps =
  (x - D) / sigma``, written as ``sigma x / (sigma^2 + s_d^2) - s_d F / sqrt(sigma^2 + s_d^2)``
  (the same quantity without the cancellation of ``x - D`` at small sigma).

  **c_noise enters the U-Net as ``EDM_TIMESTEP_SCALE * c_noise = 250 ln sigma``.** diffusers'
  ``UNet2DModel`` embeds its timestep sinusoidally with frequencies from 1 down to 1e-4 per unit
  (``get_timestep_embedding``, ``max_period`` 10^4), a band made for DDPM timesteps spanning
  0..999. ``c_noise = ln(sigma) / 4`` spans only about +-1.5 over the training sigmas (ln sigma
  within P_mean +- 3 P_std), where every frequency below 1 barely moves, so the noise level
  would reach the network through one or two embedding channels (a narrow U-Net has 4 to 16
  frequencies). Scaled by 1000 it spans about 3,000 over the sampled sigmas (0.01 to 157 on the
  linear schedule) and 1,800 over the training bulk: the embedding sees it as it sees DDPM
  timesteps. (NVlabs/edm feeds ln(sigma) / 4 to its own positional embedding; the scale only
  changes which embedding frequencies carry it.)

Every objective travels with the saved model: ``training.train.save_model`` writes
``objective.json`` (``save_objective``) and the DDPM training schedule with the objective's
``prediction_type`` ("epsilon", "v_prediction", "edm"); ``training.train.load_model`` puts the
objective into the loaded scheduler config under ``"objective"``, which ``sampling.generate`` reads
(``objective_of_schedule``). The folder is also a diffusers pipeline (``biaslab.models.interop``):
its ``scheduler/`` is ``Objective.pipeline_scheduler``, the training schedule itself for
epsilon and v, diffusers' ``EDMEulerScheduler`` for edm (whose DDPM training schedule, which
the adapter needs for ``sigma(t)``, is then kept in ``ddpm_scheduler/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

#: ``net(x, timestep, **kw) -> tensor``: the raw network output (``class_labels`` in ``kw``).
Network = Callable[..., torch.Tensor]
#: ``eps(x_vp, t, **kw) -> tensor``: what the samplers call (``kw`` passed to the network).
EpsDenoiser = Callable[..., torch.Tensor]

#: U-Net timestep input of an EDM model = this times ``c_noise = ln(sigma) / 4`` (module doc).
EDM_TIMESTEP_SCALE = 1000.0
#: Karras et al. 2022, Table 1 and Sec. 5: sigma_data, P_mean, P_std.
EDM_DEFAULTS = {"sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2}
#: The file in a saved model folder that names its objective and constants.
OBJECTIVE_FILE = "objective.json"
#: The key under which ``training.train.load_model`` puts the objective into the scheduler config.
SCHEDULE_KEY = "objective"


def vp_sigmas(scheduler_config: Mapping[str, Any]) -> torch.Tensor:
    """Training sigmas ``sigma_t = sqrt((1 - abar_t) / abar_t)``, t = 0..T-1 (ascending), f64,
    from the (float32) ``alphas_cumprod`` the model was trained with."""
    from diffusers import DDPMScheduler

    config = {k: v for k, v in scheduler_config.items() if k != SCHEDULE_KEY}
    abar = DDPMScheduler.from_config(config).alphas_cumprod.to(torch.float64)
    return ((1 - abar) / abar).sqrt()


class NoiseLevels:
    """A DDPM schedule's noise levels on the DDPM timestep scale, at fractional timesteps too:
    ``log sigma`` linear between neighbouring training timesteps (k-diffusion's
    ``DiscreteSchedule``), so ``sigma(timestep(s)) == s`` and ``timestep`` equals
    ``sampling.samplers.sigma_to_t``. Computed in float64 on the CPU."""

    def __init__(self, scheduler_config: Mapping[str, Any]):
        self.log_sigmas = vp_sigmas(scheduler_config).log()
        self.T = len(self.log_sigmas)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma at (fractional) timesteps ``t``, clamped to [0, T - 1]; exact at integers."""
        t = torch.as_tensor(t).detach().to("cpu", torch.float64).clamp(0, self.T - 1)
        lo = t.floor().long().clamp(max=self.T - 2)
        w = t - lo
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[lo + 1]).exp()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of noise levels ``sigma`` (the inverse of ``sigma``), clamped."""
        ls = torch.as_tensor(sigma).detach().to("cpu", torch.float64).log()
        ls = ls.clamp(float(self.log_sigmas[0]), float(self.log_sigmas[-1]))
        i = (torch.searchsorted(self.log_sigmas, ls) - 1).clamp(0, self.T - 2)
        w = (ls - self.log_sigmas[i]) / (self.log_sigmas[i + 1] - self.log_sigmas[i])
        return (i + w).clamp(0, self.T - 1)


def _col(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample coefficients as a [N, 1, 1, 1] tensor of ``like``'s dtype and device."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))


class Objective:
    """What the network predicts (base class of the registered objectives)."""

    name: ClassVar[str]
    #: diffusers' name for it, saved as the scheduler's ``prediction_type``
    prediction_type: ClassVar[str]

    # ---- training (``training.train._batch_loss``; random draws in the order images, noise, level)
    def draw_level(
        self, gen: torch.Generator, n: int, device: torch.device, num_train_timesteps: int
    ) -> torch.Tensor:
        """Each training sample's noise level: a DDPM timestep (long), or sigma (edm)."""
        return torch.randint(0, num_train_timesteps, (n,), generator=gen, device=device)

    def network_input(
        self, x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor, alphas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input and timestep input for clean images ``x0`` and ``noise``."""
        a = alphas[level].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise, level

    def loss(
        self,
        pred: torch.Tensor,
        x0: torch.Tensor,
        noise: torch.Tensor,
        level: torch.Tensor,
        alphas: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    # ---- sampling
    def adapter(self, net: Network, scheduler_config: Mapping[str, Any]) -> EpsDenoiser:
        """``eps(x_vp, t, **kw)`` from the raw network ``net`` (module doc)."""
        raise NotImplementedError

    def train_timestep(
        self, scheduler_config: Mapping[str, Any]
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The DDPM timestep of the network's timestep input (None: it is the timestep)."""
        return None

    def pipeline_scheduler(self, training_schedule):
        """The scheduler a diffusers pipeline gets with the model (``biaslab.models.interop``): the
        DDPM training schedule itself, which diffusers steps with its ``prediction_type``."""
        return training_schedule

    def to_dict(self) -> dict[str, Any]:
        """What ``objective.json`` holds: the name and the constants (``objective_from_dict``)."""
        return {"objective": self.name, **asdict(self)}


@dataclass(frozen=True)
class Epsilon(Objective):
    name: ClassVar[str] = "epsilon"
    prediction_type: ClassVar[str] = "epsilon"

    def loss(self, pred, x0, noise, level, alphas):
        return F.mse_loss(pred, noise)

    def adapter(self, net, scheduler_config):
        return net


@dataclass(frozen=True)
class VPrediction(Objective):
    name: ClassVar[str] = "v"
    prediction_type: ClassVar[str] = "v_prediction"

    def loss(self, pred, x0, noise, level, alphas):
        a = alphas[level].view(-1, 1, 1, 1)
        return F.mse_loss(pred, a.sqrt() * noise - (1 - a).sqrt() * x0)

    def adapter(self, net, scheduler_config):
        levels = NoiseLevels(scheduler_config)

        def eps(x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
            v = net(x, t, **kw)
            s = levels.sigma(t)
            root = (1 + s**2).sqrt()  # sqrt(abar) = 1 / root, sqrt(1 - abar) = s / root
            return _col(1 / root, v) * v + _col(s / root, v) * x.to(v.device)

        return eps


@dataclass(frozen=True)
class EDM(Objective):
    sigma_data: float = EDM_DEFAULTS["sigma_data"]
    p_mean: float = EDM_DEFAULTS["p_mean"]
    p_std: float = EDM_DEFAULTS["p_std"]
    timestep_scale: float = EDM_TIMESTEP_SCALE

    name: ClassVar[str] = "edm"
    prediction_type: ClassVar[str] = "edm"

    def __post_init__(self) -> None:
        if not self.sigma_data > 0 or not self.p_std > 0:
            raise ValueError(
                f"training.edm: sigma_data ({self.sigma_data}) and p_std ({self.p_std}) must "
                "be positive"
            )

    def precondition(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(c_skip, c_out, c_in, c_noise)`` of Karras et al. 2022, Table 1."""
        sd2 = self.sigma_data**2
        s2 = sigma**2
        return (
            sd2 / (s2 + sd2),
            sigma * self.sigma_data / (s2 + sd2).sqrt(),
            1 / (s2 + sd2).sqrt(),
            sigma.log() / 4,
        )

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2 (Table 1; lambda c_out^2 = 1)."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def draw_level(self, gen, n, device, num_train_timesteps):
        return (self.p_mean + self.p_std * torch.randn((n,), generator=gen, device=device)).exp()

    def network_input(self, x0, noise, level, alphas):
        s = level.view(-1, 1, 1, 1)
        _, _, c_in, c_noise = self.precondition(level)
        return c_in.view(-1, 1, 1, 1) * (x0 + s * noise), self.timestep_scale * c_noise

    def loss(self, pred, x0, noise, level, alphas):
        """``mean(lambda(sigma) |D - x0|^2)``, computed as ``mean(|F - F_target|^2)`` with
        ``F_target = (x0 - c_skip x) / c_out`` (equal, as lambda c_out^2 = 1; no
        cancellation in ``D - x0`` at small sigma)."""
        c_skip, c_out, _, _ = (c.view(-1, 1, 1, 1) for c in self.precondition(level))
        x = x0 + level.view(-1, 1, 1, 1) * noise
        return F.mse_loss(pred, (x0 - c_skip * x) / c_out)

    def adapter(self, net, scheduler_config):
        levels = NoiseLevels(scheduler_config)
        sd2 = self.sigma_data**2

        def eps(x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
            s = levels.sigma(t)
            root = (1 + s**2).sqrt()  # x = x_vp * root
            norm = (s**2 + sd2).sqrt()
            tau = (self.timestep_scale * s.log() / 4).to(torch.float32)
            f = net(_col(root / norm, x) * x, tau.to(x.device), **kw)  # c_in * x
            return (
                _col(s * root / norm**2, f) * x.to(f.device) - _col(self.sigma_data / norm, f) * f
            )

        return eps

    def pipeline_scheduler(self, training_schedule):
        """diffusers' ``EDMEulerScheduler`` on the Karras sigmas (rho = 7) between the training
        schedule's smallest and largest sigma (the range of ``sampling.samplers.sample_euler``),
        with this ``sigma_data``. Its ``prediction_type`` "epsilon" is diffusers' name for this
        preconditioning (``c_out = sigma s_d / sqrt(sigma^2 + s_d^2)``); its timesteps are
        ``c_noise``, so the network's timestep input is ``timestep_scale`` times them."""
        from diffusers import EDMEulerScheduler

        sigmas = vp_sigmas(training_schedule.config)
        return EDMEulerScheduler(
            sigma_min=float(sigmas[0]),
            sigma_max=float(sigmas[-1]),
            sigma_data=self.sigma_data,
            sigma_schedule="karras",
            num_train_timesteps=int(training_schedule.config.num_train_timesteps),
            prediction_type="epsilon",
            rho=7.0,
            final_sigmas_type="zero",
        )

    def train_timestep(self, scheduler_config):
        levels = NoiseLevels(scheduler_config)

        def t_of(tau: torch.Tensor) -> torch.Tensor:
            sigma = (
                torch.as_tensor(tau).detach().to("cpu", torch.float64) * 4 / self.timestep_scale
            ).exp()
            return levels.timestep(sigma).to(torch.as_tensor(tau).device)

        return t_of


#: The objective registry: name (``training.objective``) -> its class.
OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (Epsilon, VPrediction, EDM)}


def make_objective(name: str, edm: Mapping[str, float] | None = None) -> Objective:
    """The objective ``name``; ``edm`` (sigma_data, p_mean, p_std) configures ``edm`` only."""
    if name not in OBJECTIVES:
        raise ValueError(f"training.objective: unknown objective {name!r} ({list(OBJECTIVES)})")
    return EDM(**dict(edm or {})) if name == "edm" else OBJECTIVES[name]()


def objective_from_dict(d: Mapping[str, Any]) -> Objective:
    """The inverse of ``Objective.to_dict``."""
    d = dict(d)
    name = d.pop("objective")
    if name == "edm":
        return EDM(**d)
    if d:
        raise ValueError(f"objective {name!r} takes no constants, got {sorted(d)}")
    return make_objective(name)


def objective_of_schedule(scheduler_config: Mapping[str, Any]) -> Objective:
    """The objective of a model from its scheduler config: the ``"objective"`` entry that
    ``training.train.load_model`` adds, else its ``prediction_type`` (epsilon, v_prediction)."""
    if scheduler_config.get(SCHEDULE_KEY):
        return objective_from_dict(scheduler_config[SCHEDULE_KEY])
    kind = scheduler_config.get("prediction_type", "epsilon")
    for cls in OBJECTIVES.values():
        if cls.prediction_type == kind and cls is not EDM:
            return cls()
    raise ValueError(
        f"scheduler prediction_type {kind!r}: the model's {OBJECTIVE_FILE} is needed "
        f"(load it with biaslab.training.train.load_model)"
    )


def sampler_schedule(scheduler_config: Mapping[str, Any]) -> dict[str, Any]:
    """The scheduler config the samplers get: the adapter hands them eps, whatever the
    objective, so ``prediction_type`` is "epsilon" (and the ``"objective"`` entry is gone)."""
    config = {k: v for k, v in scheduler_config.items() if k != SCHEDULE_KEY}
    config["prediction_type"] = "epsilon"
    return config


def save_objective(objective: Objective, model_dir: str | Path) -> None:
    (Path(model_dir) / OBJECTIVE_FILE).write_text(json.dumps(objective.to_dict(), indent=2) + "\n")


def load_objective(model_dir: str | Path, scheduler_config: Mapping[str, Any]) -> Objective:
    """``objective.json`` of a saved model; without one (saved before objectives existed) the
    scheduler's ``prediction_type``."""
    path = Path(model_dir) / OBJECTIVE_FILE
    if path.is_file():
        return objective_from_dict(json.loads(path.read_text()))
    return objective_of_schedule({k: v for k, v in scheduler_config.items() if k != SCHEDULE_KEY})
