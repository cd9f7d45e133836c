"""Diffusion training: DDPM noise schedule, an objective (epsilon, v or EDM preconditioning:
``biaslab.models.objectives``), AdamW, EMA.

Resumable: every ``checkpoint_every`` steps the model, optimizer, LR schedule, EMA, the random
generator and the log are written atomically to ``<checkpoint_dir>/last.pt`` (with a content
hash), the checkpoint before it kept as ``prev.pt``. A rerun after a crash (even SIGKILL)
resumes from it, and on CPU ends with exactly the weights of an uninterrupted run: every random
draw (batch indices, noise, timesteps) comes from one ``torch.Generator`` whose state is part of
the checkpoint. A damaged checkpoint is set aside with a warning and training resumes from the
previous one, or starts over.

``save_model`` writes the model folder, a diffusers ``DDPMPipeline`` folder (``model_index.json``;
``biaslab.models.interop``: what diffusers can sample, and how to sample EDM models with diffusers),
with ``checksums.json``; ``load_model`` verifies it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from biaslab.base.images import to_model_range
from biaslab.base.io import (
    CorruptArtifactError,
    atomic_path,
    load_torch,
    save_torch,
    verify_checksums,
    write_checksums,
)
from biaslab.models.interop import MODEL_RULE, training_schedule_dir, write_pipeline
from biaslab.models.objectives import (
    EDM_DEFAULTS,
    Objective,
    load_objective,
    make_objective,
    save_objective,
)
from biaslab.models.unets import build_unet

#: Test hook: the process SIGKILLs itself right after finishing this step (after any
#: checkpoint of that step), to prove resumption after a hard crash.
KILL_AT_STEP_ENV = "BIASLAB_KILL_AT_STEP"

#: The checkpoint files in a checkpoint directory: the latest and the one before it.
CHECKPOINT, PREVIOUS_CHECKPOINT = "last.pt", "prev.pt"


@dataclass(frozen=True)
class TrainConfig:
    depth: str = "2"
    width: float = 1.0
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    #: What the network predicts: epsilon, v or edm (``biaslab.models.objectives.OBJECTIVES``)
    objective: str = "epsilon"
    #: EDM constants (sigma_data, p_mean, p_std; Karras et al. 2022), used by ``edm`` only
    edm: dict[str, float] = field(default_factory=lambda: dict(EDM_DEFAULTS))
    precision: str = "fp32"  # or "bf16" (autocast)
    #: NHWC activations and weights (tensor-core friendly convolutions on GPUs)
    channels_last: bool = False
    #: ``torch.compile`` the U-Net's forward (static shapes: the batch size never changes)
    compile: bool = False
    seed: int = 0
    #: Class-conditional training (classifier-free guidance): 0 = unconditional; K > 0 gives
    #: the U-Net K + 1 class embeddings, class K being the null (unconditional) class.
    num_classes: int = 0
    #: Conditional only: probability that a training sample's class is replaced by the null
    #: class (Ho & Salimans 2022, Alg. 1), drawn from the training generator.
    label_dropout: float = 0.1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"training: unknown keys {sorted(unknown)}")
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        """The config as a dict, without the conditional keys when unconditional, the
        objective when it is epsilon and the EDM constants unless it is edm: such a config
        hashes, checkpoints and saves exactly as before those keys existed."""
        d = dataclasses.asdict(self)
        if self.num_classes == 0:
            del d["num_classes"], d["label_dropout"]
        if self.objective == "epsilon":
            del d["objective"]
        if self.objective != "edm":
            del d["edm"]
        return d

    def training_objective(self) -> Objective:
        return make_objective(self.objective, self.edm)


class NonFiniteLossError(FloatingPointError):
    pass


class Preempted(RuntimeError):
    """Raised after SIGTERM/SIGUSR1 (SLURM preemption, time limit or ``sbatch --signal``): the
    checkpoint of the last finished step is on disk and the next attempt resumes from it."""


#: Signals that make training checkpoint at the next step boundary and stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@contextlib.contextmanager
def _catch_stop_signals():
    """Record stop signals instead of dying, so the loop can checkpoint between steps."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {
        s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in STOP_SIGNALS
    }
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def make_noise_scheduler(cfg: TrainConfig) -> DDPMScheduler:
    """The DDPM schedule; ``prediction_type`` names the objective (epsilon, v_prediction, edm)."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.training_objective().prediction_type,
        clip_sample=True,
    )


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"training.precision: {precision!r} is not fp32 or bf16")


def _set_rng_state(gen: torch.Generator, state: torch.Tensor) -> None:
    gen.set_state(state.cpu() if gen.device.type == "cpu" else state)


@dataclass
class _TrainState:
    """Everything a checkpoint holds: model, optimizer, LR schedule, EMA, the data generator,
    the log so far and the step."""

    cfg: TrainConfig
    unet: UNet2DModel
    optimizer: torch.optim.Optimizer
    lr_sched: Any
    ema: EMAModel
    gen: torch.Generator
    log: list[dict[str, float]] = field(default_factory=list)
    step: int = 0

    def save(self, checkpoint_dir: Path) -> None:
        """Write ``last.pt`` atomically; the one it replaces becomes ``prev.pt``."""
        save_torch(
            {
                "config": self.cfg.as_dict(),
                "step": self.step,
                "model": self.unet.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_sched.state_dict(),
                "ema": self.ema.state_dict(),
                "generator": self.gen.get_state(),
                "log": self.log,
            },
            checkpoint_dir / CHECKPOINT,
            keep_previous=checkpoint_dir / PREVIOUS_CHECKPOINT,
        )

    def restore(self, checkpoint_dir: Path, device: torch.device) -> Path | None:
        """Resume from ``last.pt``, else ``prev.pt``; the checkpoint used, or None (a fresh
        start). A damaged checkpoint (unreadable, or its content hash differs) is renamed to
        ``*.corrupt`` with a warning on stderr and the next one is tried; a readable one of a
        different training config is an error."""
        damaged = False
        for path in (checkpoint_dir / CHECKPOINT, checkpoint_dir / PREVIOUS_CHECKPOINT):
            if not path.exists():
                continue
            try:
                state = load_torch(path, map_location=device)
            except CorruptArtifactError as e:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                print(
                    f"warning: ignoring damaged checkpoint {path} ({e.problem}); renamed it "
                    f"to {aside.name}",
                    file=sys.stderr,
                )
                damaged = True
                continue
            if state.get("config") != self.cfg.as_dict():
                raise RuntimeError(
                    f"checkpoint {path} was written with a different training config; "
                    "delete it to start over"
                )
            self.unet.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_sched.load_state_dict(state["lr_scheduler"])
            self.ema.load_state_dict(state["ema"])
            _set_rng_state(self.gen, state["generator"])
            self.log = state["log"]
            self.step = state["step"]
            return path
        if damaged:
            print(
                f"warning: no usable checkpoint in {checkpoint_dir}: training starts over",
                file=sys.stderr,
            )
        return None


def _new_state(cfg: TrainConfig, shape: tuple[int, ...], device: torch.device) -> _TrainState:
    """A fresh model (seeded by ``cfg.seed``) with its optimizer, schedule, EMA and generator."""
    _, c, h, _ = shape
    torch.manual_seed(cfg.seed)
    unet = build_unet(
        cfg.depth,
        resolution=h,
        in_channels=c,
        width=cfg.width,
        num_class_embeds=cfg.num_classes + 1 if cfg.num_classes else None,
    ).to(device)
    unet = unet.to(memory_format=_memory_format(cfg))
    # One fused kernel for all parameters on CUDA; the same maths as the per-tensor loop.
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused
    )
    lr_sched = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.warmup_steps)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, foreach=True)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    return _TrainState(cfg, unet, optimizer, lr_sched, ema, gen)


def _memory_format(cfg: TrainConfig) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def _batch_loss(
    s: _TrainState,
    forward,
    x0_all: torch.Tensor,
    y_all: torch.Tensor | None,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """The objective's loss (``cfg.objective``) of one random batch (draws from ``s.gen`` in a
    fixed order: images, noise, noise levels (timesteps; EDM: sigmas), label dropout)."""
    cfg, gen, device = s.cfg, s.gen, x0_all.device
    objective = cfg.training_objective()
    idx = torch.randint(0, len(x0_all), (cfg.batch_size,), generator=gen, device=device)
    x0 = x0_all[idx]
    noise = torch.randn(x0.shape, generator=gen, device=device)
    level = objective.draw_level(gen, cfg.batch_size, device, cfg.num_train_timesteps)
    class_labels = None
    if y_all is not None:
        drop = torch.rand((cfg.batch_size,), generator=gen, device=device)
        class_labels = torch.where(drop < cfg.label_dropout, cfg.num_classes, y_all[idx])
    noisy, t = objective.network_input(x0, noise, level, alphas)
    noisy = noisy.contiguous(memory_format=_memory_format(cfg))
    with _autocast(cfg.precision, device):
        pred = forward(noisy, t, class_labels=class_labels).sample
    loss = objective.loss(pred.float(), x0, noise, level, alphas)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(
            f"non-finite loss ({loss.item()}) at step {s.step + 1} (depth {cfg.depth}, "
            f"lr {cfg.lr}); lower training.lr or use training.precision: fp32"
        )
    return loss


def _optimizer_step(s: _TrainState, loss: torch.Tensor, dt_start: float) -> None:
    """Backward, clip, AdamW, LR schedule, EMA; one log row."""
    loss.backward()
    if s.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(s.unet.parameters(), s.cfg.grad_clip)
    s.optimizer.step()
    lr_now = s.lr_sched.get_last_lr()[0]
    s.lr_sched.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.ema.step(s.unet.parameters())
    s.step += 1
    dt = time.perf_counter() - dt_start
    s.log.append(
        {
            "step": s.step,
            "loss": float(loss.item()),
            "lr": float(lr_now),
            "images_per_s": s.cfg.batch_size / dt,
        }
    )


def train_diffusion(
    images: np.ndarray,
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | Path,
    device: str | torch.device = "cpu",
    progress: bool = True,
    labels: np.ndarray | None = None,
) -> tuple[UNet2DModel, pd.DataFrame]:
    """Train the Table-A U-Net of ``cfg.depth`` on uint8 ``images`` ([N, H, W] or [N, C, H, W]).

    With ``cfg.num_classes = K > 0`` the U-Net is class-conditional and ``labels`` (class
    indices in ``[0, K)``, one per image) are required; each training sample's class becomes
    the null class ``K`` with probability ``cfg.label_dropout``. The unconditional path draws
    exactly the random numbers it always did.

    Returns the EMA model (on CPU) and the per-step log (step, loss, lr, images_per_s).
    """
    device = torch.device(device)
    x0_all = to_model_range(images).to(device)
    y_all = _check_labels(labels, cfg, len(x0_all))
    if y_all is not None:
        y_all = y_all.to(device)
    ckpt_dir = Path(checkpoint_dir)
    ckpt_path = ckpt_dir / CHECKPOINT
    s = _new_state(cfg, tuple(x0_all.shape), device)
    forward = torch.compile(s.unet, dynamic=False) if cfg.compile else s.unet
    alphas = make_noise_scheduler(cfg).alphas_cumprod.to(device)
    resumed = s.restore(ckpt_dir, device)
    if resumed is not None:
        print(f"resuming from {resumed} at step {s.step}", file=sys.stderr)

    kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "-1"))
    s.unet.train()
    bar = tqdm(
        total=cfg.steps,
        initial=s.step,
        disable=not progress,
        file=sys.stderr,
        mininterval=5.0,
        desc=f"train depth {cfg.depth}",
    )
    with _catch_stop_signals() as received:
        while s.step < cfg.steps:
            t0 = time.perf_counter()
            _optimizer_step(s, _batch_loss(s, forward, x0_all, y_all, alphas), t0)
            bar.update(1)
            if s.step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean([r['loss'] for r in s.log[-50:]]):.4f}")
            if s.step % cfg.checkpoint_every == 0 or s.step == cfg.steps:
                s.save(ckpt_dir)
            if s.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if received:
                if s.step % cfg.checkpoint_every != 0 and s.step != cfg.steps:
                    s.save(ckpt_dir)
                bar.close()
                raise Preempted(
                    f"received {signal.Signals(received[0]).name} at step {s.step}/{cfg.steps}; "
                    f"checkpoint written to {ckpt_path}; rerunning the job resumes from it"
                )
    bar.close()

    s.ema.copy_to(s.unet.parameters())
    s.unet.eval()
    # the standard layout again: safetensors saves contiguous tensors only
    return s.unet.to(memory_format=torch.contiguous_format).cpu(), pd.DataFrame(s.log)


def _check_labels(labels: np.ndarray | None, cfg: TrainConfig, n: int) -> torch.Tensor | None:
    if cfg.num_classes < 0:
        raise ValueError(f"training.num_classes: {cfg.num_classes} is negative")
    if cfg.num_classes == 0:
        if labels is not None:
            raise ValueError("training: labels given but training.num_classes is 0")
        return None
    if not 0.0 <= cfg.label_dropout <= 1.0:
        raise ValueError(f"training.label_dropout: {cfg.label_dropout} is not in [0, 1]")
    if labels is None:
        raise ValueError(f"training.num_classes is {cfg.num_classes}: labels are required")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.shape != (n,):
        raise ValueError(f"training: {tuple(y.shape)} labels for {n} images")
    if n and (int(y.min()) < 0 or int(y.max()) >= cfg.num_classes):
        raise ValueError(
            f"training: labels must be class indices in [0, {cfg.num_classes}), "
            f"got [{int(y.min())}, {int(y.max())}]"
        )
    return y


def checkpoint_dir_for(
    base: str | Path, cfg: TrainConfig, images: np.ndarray, labels: np.ndarray | None = None
) -> Path:
    """``base/<hash>``: the hash covers the training config, the training images and (for a
    conditional model) the labels, so a changed config or dataset never resumes from a stale
    checkpoint."""
    h = hashlib.sha256(json.dumps(cfg.as_dict(), sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return Path(base) / h.hexdigest()[:16]


def save_model(
    unet: UNet2DModel, cfg: TrainConfig, out_dir: str | Path, extra: dict[str, Any] | None = None
) -> None:
    """Write ``out_dir`` as a diffusers pipeline folder (``unet/``, ``scheduler/``,
    ``model_index.json``; edm: the training schedule in ``ddpm_scheduler/``, see
    ``biaslab.models.interop``) plus ``objective.json``, ``train_config.yaml`` and, last,
    ``checksums.json`` (the sha256 of every file), atomically (the whole directory appears at
    once)."""
    with atomic_path(out_dir, directory=True) as tmp:
        unet.save_pretrained(tmp / "unet")
        write_pipeline(tmp, unet, make_noise_scheduler(cfg), cfg.training_objective())
        save_objective(cfg.training_objective(), tmp)
        resolved = {"training": cfg.as_dict(), **(extra or {})}
        (tmp / "train_config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        write_checksums(tmp)


def load_model(model_dir: str | Path) -> tuple[UNet2DModel, DDPMScheduler]:
    """The U-Net and its DDPM training schedule, the folder's files verified against
    ``checksums.json`` first (``biaslab.base.io.CorruptArtifactError`` names a damaged file, or a
    missing ``checksums.json``, and the rule to rerun). The schedule is ``ddpm_scheduler/``
    where there is one (edm), else ``scheduler/`` (epsilon, v, and folders of every objective
    written before ``model_index.json``): ``models.interop.training_schedule_dir``. Its config
    carries the model's objective under ``"objective"`` (``objective.json``; older folders: the
    ``prediction_type``), so that ``sampling.generate(unet, sched.config, ...)`` samples it
    right."""
    model_dir = Path(model_dir)
    verify_checksums(model_dir, rule=MODEL_RULE)
    try:
        unet = UNet2DModel.from_pretrained(model_dir / "unet")
        sched = DDPMScheduler.from_pretrained(training_schedule_dir(model_dir))
        sched.register_to_config(objective=load_objective(model_dir, sched.config).to_dict())
    except Exception as e:
        raise CorruptArtifactError(
            model_dir, f"cannot be loaded ({type(e).__name__}: {e})", rule=MODEL_RULE
        ) from e
    return unet.eval(), sched
