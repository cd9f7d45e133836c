"""Trained model folders as diffusers pipelines.

``training.train.save_model`` writes every model folder (``results/models/<model>/model/``) as a
diffusers ``DDPMPipeline`` folder::

    model_index.json    DDPMPipeline: unet UNet2DModel, scheduler DDPMScheduler or EDMEulerScheduler
    unet/               the EMA U-Net (UNet2DModel)
    scheduler/          the scheduler diffusers gets
    (``models.objectives.Objective.pipeline_scheduler``) ddpm_scheduler/     edm only: the DDPM
    training schedule (prediction_type "edm") objective.json      the objective and its constants
    (``biaslab.models.objectives``) train_config.yaml   the resolved training config
    checksums.json      the sha256 of every other file (``biaslab.base.io``)

What diffusers alone does with it (``DDPMPipeline.from_pretrained(folder)`` loads every one):

* **epsilon and v, unconditional**: ``DDPMPipeline.from_pretrained(folder)()`` samples it:
  ``scheduler/`` is the DDPM training schedule with ``prediction_type`` "epsilon" or
  "v_prediction". (Its ``timestep_spacing`` is diffusers' default "leading"; this lab's ddpm
  and ddim samplers default to "trailing".) Other VP schedulers come from its config
  (``DDIMScheduler.from_config(pipe.scheduler.config)``).
* **class-conditional** (``training.num_classes = K``: K + 1 class embeddings, the last, K, the
  null class of classifier-free guidance): it loads, but ``DDPMPipeline`` passes no class
  labels and the U-Net refuses to run without them. Call the U-Net with ``class_labels``
  yourself, as ``sample`` below does; guidance ``w`` (this lab's convention, diffusers'
  ``guidance_scale = 1 + w``) is ``(1 + w) unet(x, t, c) - w unet(x, t, K)``.
* **edm**: it loads (the U-Net and an ``EDMEulerScheduler`` with the model's sigma range and
  ``sigma_data``), but ``DDPMPipeline`` does **not** sample it correctly: it starts from unit
  noise instead of ``sigma_max``, feeds the network ``x`` instead of ``c_in x`` (it never calls
  ``scale_model_input``) and passes the scheduler's timestep ``c_noise = ln(sigma) / 4`` where
  the network was trained on ``1000 c_noise = 250 ln sigma``
  (``models.objectives.EDM_TIMESTEP_SCALE``, ``timestep_scale`` in ``objective.json``). Its images
  are wrong, with no error (a warning that ``scale_model_input`` was not called). No diffusers
  pipeline fits: the consistency model pipeline feeds ``250 ln sigma`` and ``c_in x``, but its
  scheduler steps a consistency model (denoise, then noise again), not the EDM ODE. This loop
  samples it, with diffusers calls only (``sample``; Karras et al. 2022, Algorithm 2 without the
  Heun step, S_churn = 0)::

      unet = UNet2DModel.from_pretrained(folder, subfolder="unet")
      sched = EDMEulerScheduler.from_pretrained(folder, subfolder="scheduler")
      scale = json.loads((Path(folder) / "objective.json").read_text())["timestep_scale"]
      sched.set_timesteps(steps)
      x = torch.randn(n, unet.config.in_channels, size, size) * sched.sigmas[0]
      for t in sched.timesteps:
          out = unet(sched.scale_model_input(x, t), scale * t).sample  # class_labels=...
          x = sched.step(out, t, x).prev_sample
      images = (x / 2 + 0.5).clamp(0, 1)

  It agrees with this lab's ``euler`` sampler (``sampling.samplers.sample_euler``) up to float32
  rounding (tests/test_interop.py).

This lab's own loader (``training.train.load_model``) reads the training schedule, from which the v
and edm adapters take ``sigma(t)``, from ``ddpm_scheduler/`` when there is one, else from
``scheduler/`` (``training_schedule_dir``): epsilon and v folders, and the folders written
before this layout (no ``model_index.json``; an edm one has a ``DDPMScheduler`` config with
``prediction_type`` "edm" in ``scheduler/``), which load and sample as they always did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from biaslab.base.io import verify_checksums
from biaslab.models.objectives import OBJECTIVE_FILE, SCHEDULE_KEY, Objective, load_objective

#: The rule that writes a model folder (named in the error for a damaged one).
MODEL_RULE = "train_diffusion"

#: The pipeline index diffusers' ``from_pretrained`` reads.
PIPELINE_INDEX = "model_index.json"
#: The scheduler diffusers' pipeline gets.
SCHEDULER = "scheduler"
#: The DDPM training schedule, where ``scheduler/`` holds another scheduler (edm).
TRAINING_SCHEDULE = "ddpm_scheduler"
#: The diffusers file name of a scheduler config.
SCHEDULER_CONFIG = "scheduler_config.json"


def write_pipeline(folder: str | Path, unet, training_schedule, objective: Objective) -> None:
    """Write ``scheduler/``, ``ddpm_scheduler/`` (when the pipeline's scheduler is not the
    training schedule: edm) and ``model_index.json`` into ``folder`` (``unet/`` is the
    caller's)."""
    from diffusers import DDPMPipeline

    folder = Path(folder)
    scheduler = objective.pipeline_scheduler(training_schedule)
    scheduler.save_pretrained(folder / SCHEDULER)
    if scheduler is not training_schedule:
        training_schedule.save_pretrained(folder / TRAINING_SCHEDULE)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_config(folder)


def training_schedule_dir(folder: str | Path) -> Path:
    """The folder of a model's DDPM training schedule: ``ddpm_scheduler/`` if it has one,
    else ``scheduler/``."""
    folder = Path(folder)
    own = folder / TRAINING_SCHEDULE
    return own if own.is_dir() else folder / SCHEDULER


def trained_schedule_config(folder: str | Path) -> dict[str, Any] | None:
    """For a folder this lab trained (it has ``objective.json``): its training schedule's
    config, less diffusers' ``_`` entries, with the objective under ``"objective"`` (as in
    ``training.train.load_model``'s scheduler). None for any other folder."""
    folder = Path(folder)
    if not (folder / OBJECTIVE_FILE).is_file():
        return None
    file = training_schedule_dir(folder) / SCHEDULER_CONFIG
    try:
        config = json.loads(file.read_text())
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        config[SCHEDULE_KEY] = load_objective(folder, config).to_dict()
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{folder}: not a readable trained model folder: {e}") from e
    return config


def load_pipeline(folder: str | Path):
    """``(DDPMPipeline, timestep_scale)`` of a model folder, its files verified against
    ``checksums.json`` first: the pipeline as diffusers loads it, and the factor of the
    network's timestep input over an EDM scheduler's timesteps (None for epsilon and v), the
    ``timestep_scale`` argument of ``sample``."""
    from diffusers import DDPMPipeline

    folder = Path(folder)
    verify_checksums(folder, rule=MODEL_RULE)
    pipe = DDPMPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    objective = json.loads((folder / OBJECTIVE_FILE).read_text())
    return pipe, objective.get("timestep_scale")


@torch.no_grad()
def sample(
    unet,
    scheduler,
    noise: torch.Tensor,
    *,
    steps: int,
    timestep_scale: float | None = None,
    class_labels: torch.Tensor | None = None,
    guidance: float = 0.0,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Images in [-1, 1] (float, unclamped) from unit Gaussian ``noise`` [N, C, H, W] in
    ``steps`` steps of a diffusers ``scheduler``, with diffusers calls only: the loop of the
    module doc, for every model this lab trains.

    ``timestep_scale`` (edm: ``objective.json``'s, 1000) marks an EDM scheduler: the noise is
    scaled by its largest sigma and the network gets ``timestep_scale`` times its timesteps.
    Without it (epsilon, v: a VP scheduler) the noise is scaled by ``init_noise_sigma`` and the
    timesteps go to the network as they are, as in ``DDPMPipeline``. ``class_labels``
    (class-conditional U-Nets) and guidance ``w`` against the null class (the last class
    embedding); ``generator`` goes to ``scheduler.step`` (stochastic schedulers)."""
    scheduler.set_timesteps(steps)
    edm = timestep_scale is not None
    x = noise * (scheduler.sigmas[0] if edm else scheduler.init_noise_sigma)
    null = None
    if guidance:
        null = torch.full_like(class_labels, unet.config.num_class_embeds - 1)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        t_in = timestep_scale * t if edm else t
        out = unet(x_in, t_in, class_labels=class_labels).sample
        if guidance:
            out = (1 + guidance) * out - guidance * unet(x_in, t_in, class_labels=null).sample
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x
