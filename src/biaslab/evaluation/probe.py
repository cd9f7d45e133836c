"""What the model knows, before we read an amplification from its samples.

A bias-amplification measurement means something only if the model learned the bias of its
data. The probe asks the trained denoiser directly, per model, with the same classifiers and
labellers as the generated samples:

* **reconstruction vs noise**: training images (a seeded subset, their true class and bias
  attribute known) are noised to each timestep ``t`` of ``ProbeConfig.timesteps`` with a fixed
  generator, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``; the denoiser's prediction
  ``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)`` (conditional models: given the
  image's class) is scored: ``class_accuracy`` (the evaluation classifier recovers the class),
  ``minority_accuracy`` (the same on the minority / bias-conflicting images only) and, where
  the family has a bias attribute apart from the class (coloured MNIST's background colour,
  BFFHQ's gender), ``attribute_accuracy``;
* **the model's own rho at the start of sampling** (conditional models): ``x0_hat`` predicted
  from pure noise at ``t = T - 1`` for ``ProbeConfig.n_start`` seeds per class. That x0 is the
  mean of what the model would generate for the class, so its background is a *blend* of
  colours in the model's own proportions. ``start_rho`` is the mean weight of the class's own
  colour in that blend (``colour_mnist.own_colour_weight``, on the line from the other
  colours' mean to the own colour, the blend the data's even spread of conflicting colours
  gives; an unlearned colour gives ``1 / K``), to be compared with the training set's rho;
  ``start_rho_nearest`` is the share whose nearest colour is the own one (the labeller of
  generated samples), which saturates towards 1 for a model that predicts the class mean
  well (0.92 at rho 0.8 measured).
  Attributes without a blend reading (BFFHQ's gender, from a classifier) give the nearest
  share as ``start_rho``.

The verdict (``learned``): a conditional model learned its bias attribute when ``start_rho``
is within ``max_rho_gap`` of the training set's rho; an unconditional model learned its
classes when ``minority_accuracy`` at ``reference_t`` (250) is at least ``min_accuracy``. Why
250: the one-step x0 is the posterior mean, which at high noise blends the classes by their
prior, so even the optimal denoiser of the training set (the posterior-weighted mean of its
images) recovers few minority digits there: measured on the 16 px MNIST 6-vs-9 sets, 16% and
54% at t = 500 (minority 10% and 30%), 0-2% at t = 700, but 100% at t = 250. Every
evaluation row of a model carries the verdict as ``probe_learned``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler, UNet2DModel

from biaslab.base.columns import GRID_COLUMNS
from biaslab.base.images import to_model_range, to_uint8
from biaslab.base.sections import from_section
from biaslab.evaluation.classifier import load_classifier, predict
from biaslab.models.objectives import objective_of_schedule, sampler_schedule
from biaslab.sampling.denoisers import network
from biaslab.sampling.generate import on_device
from biaslab.sampling.samplers import per_sample_noise, sample_seed

Labeller = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ProbeConfig:
    """The ``probe`` section of the config."""

    n_images: int = 256
    timesteps: tuple[int, ...] = (0, 250, 500, 700, 850, 950, 999)
    n_start: int = 64
    seed: int = 0
    batch_size: int = 256
    reference_t: int = 250
    min_accuracy: float = 0.9
    max_rho_gap: float = 0.1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeConfig:
        return from_section(cls, d, "probe", int_tuples=("timesteps",))


@dataclass
class Subject:
    """A model and what its outputs are scored against: the training set's images, class
    indices and bias attribute (or None), the classifier of the classes and the labeller of
    the attribute (uint8 images -> attribute ids)."""

    unet: UNet2DModel
    scheduler_config: dict
    x: np.ndarray
    y_index: np.ndarray
    is_minority: np.ndarray
    classifier: Any
    attribute: np.ndarray | None = None
    label_attribute: Labeller | None = None
    own_attribute: np.ndarray | None = None  # aligned attribute per class index
    #: (uint8 images, class indices) -> [N] own attribute's weight in each image's blend
    attribute_weights: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        n = getattr(self.unet.config, "num_class_embeds", None)
        return int(n) - 1 if n else 0

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """The training schedule's alpha-bar per timestep (built once per subject)."""
        return DDPMScheduler.from_config(sampler_schedule(self.scheduler_config)).alphas_cumprod

    @cached_property
    def eps(self):
        """The model's eps adapter (``Objective.adapter``), the network on its device."""
        device = next(self.unet.parameters()).device
        return objective_of_schedule(self.scheduler_config).adapter(
            on_device(network(self.unet), device), sampler_schedule(self.scheduler_config)
        )


@torch.no_grad()
def _x0_hat(s: Subject, x_t: torch.Tensor, t: int, labels: np.ndarray | None) -> torch.Tensor:
    """x0 predicted in one step through the model's objective adapter (the eps contract the
    samplers use: every objective is probed alike)."""
    abar = float(s.alphas_cumprod[t])
    tt = torch.full((len(x_t),), t, dtype=torch.long)
    kw = {} if labels is None else {"class_labels": torch.from_numpy(labels)}
    eps = s.eps(x_t, tt, **kw).float()
    return ((x_t - (1 - abar) ** 0.5 * eps) / abar**0.5).clamp(-1, 1)


def _noised(x0: torch.Tensor, t: int, s: Subject, seeds: np.ndarray) -> torch.Tensor:
    abar = float(s.alphas_cumprod[t])
    gens = [torch.Generator().manual_seed(int(v)) for v in seeds]
    eps = per_sample_noise(tuple(x0.shape[1:]), gens)
    return abar**0.5 * x0 + (1 - abar) ** 0.5 * eps


def reconstruction_rows(s: Subject, cfg: ProbeConfig) -> list[dict[str, Any]]:
    """Per timestep: class, minority and attribute accuracy of ``x0_hat`` of noised training
    images (a seeded subset of ``cfg.n_images``)."""
    rng = np.random.default_rng(cfg.seed)
    pick = np.sort(rng.choice(len(s.x), min(cfg.n_images, len(s.x)), replace=False))
    x0 = to_model_range(s.x[pick])
    labels = s.y_index[pick] if s.num_classes else None
    rows = []
    for t in cfg.timesteps:
        seeds = np.array([sample_seed(cfg.seed + 1 + t, i) for i in range(len(pick))])
        parts = []
        for b in range(0, len(pick), cfg.batch_size):
            sl = slice(b, b + cfg.batch_size)
            lab = None if labels is None else labels[sl]
            parts.append(_x0_hat(s, _noised(x0[sl], t, s, seeds[sl]), t, lab))
        x_hat = torch.cat(parts)
        pred = predict(s.classifier, x_hat)[0]
        right = pred == s.y_index[pick]
        minority = s.is_minority[pick]
        rows.append(_row("class_accuracy", t, right.mean(), len(right)))
        rows.append(_row("minority_accuracy", t, _mean(right[minority]), int(minority.sum())))
        if s.label_attribute is not None:
            got = s.label_attribute(to_uint8(x_hat))
            rows.append(_row("attribute_accuracy", t, (got == s.attribute[pick]).mean(), len(got)))
    return rows


def start_rows(s: Subject, cfg: ProbeConfig) -> list[dict[str, Any]]:
    """Conditional models with a bias attribute: from pure noise at ``t = T - 1``, per class
    ``cfg.n_start`` predictions; the own attribute's mean weight in their blend
    (``start_rho``; module doc), the share whose nearest attribute is the own one
    (``start_rho_nearest``; ``start_rho`` itself when there are no weights) and whose class
    the classifier recovers (``start_label_adherence``)."""
    if not s.num_classes or s.label_attribute is None:
        return []
    t = int(s.scheduler_config["num_train_timesteps"]) - 1
    k, shape = s.num_classes, tuple(s.x.shape[1:]) if s.x.ndim == 4 else (1, *s.x.shape[1:])
    labels = np.repeat(np.arange(k), cfg.n_start)
    seeds = np.array([sample_seed(cfg.seed, i) for i in range(len(labels))])
    gens = [torch.Generator().manual_seed(int(v)) for v in seeds]
    x_t = per_sample_noise(shape, gens)
    x_hat = torch.cat(
        [
            _x0_hat(s, x_t[b : b + cfg.batch_size], t, labels[b : b + cfg.batch_size])
            for b in range(0, len(labels), cfg.batch_size)
        ]
    )
    images = to_uint8(x_hat)
    got = s.label_attribute(images)
    pred = predict(s.classifier, x_hat)[0]
    nearest = (got == s.own_attribute[labels]).mean()
    rows = [_row("start_label_adherence", t, (pred == labels).mean(), len(labels))]
    if s.attribute_weights is None:
        return [_row("start_rho", t, nearest, len(labels)), *rows]
    own = s.attribute_weights(images, labels)
    return [
        _row("start_rho", t, own.mean(), len(labels)),
        _row("start_rho_nearest", t, nearest, len(labels)),
        *rows,
    ]


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else float("nan")


def _row(metric: str, t: int, value: float, n: int) -> dict[str, Any]:
    return {"metric": metric, "t": int(t), "value": float(value), "n": int(n)}


def verdict(rows: pd.DataFrame, cfg: ProbeConfig, training_rho: float | None) -> bool:
    """Whether the model learned what its bias readout needs (module docstring)."""
    start = rows[rows.metric == "start_rho"]
    if len(start):
        return bool(abs(float(start.value.iloc[0]) - float(training_rho)) <= cfg.max_rho_gap)
    ref = rows[(rows.metric == "minority_accuracy") & (rows.t == cfg.reference_t)]
    if ref.empty:
        raise ValueError(f"probe.reference_t: {cfg.reference_t} is not in probe.timesteps")
    return bool(float(ref.value.iloc[0]) >= cfg.min_accuracy)


def probe_model(
    s: Subject, cfg: ProbeConfig, grid: Mapping[str, Any], training_rho: float | None = None
) -> pd.DataFrame:
    """The probe table of one model: one row per (metric, t) with every grid column, the
    verdict in ``learned`` on every row."""
    s.unet.eval()
    table = pd.DataFrame(reconstruction_rows(s, cfg) + start_rows(s, cfg))
    table["learned"] = verdict(table, cfg, training_rho)
    for key in reversed(GRID_COLUMNS):
        if key in grid:
            table.insert(0, key, grid[key])
    return table


def subject(
    unet: UNet2DModel,
    scheduler_config: dict,
    train: dict[str, np.ndarray],
    classifier_path: str,
    dataset: str,
    attribute_classifier_path: str | None = None,
) -> tuple[Subject, float | None]:
    """The probe's subject for a model trained on ``train`` and the training set's rho (None
    for unconditional models). The bias attribute: coloured MNIST's background colour (left
    half for Multi-Color), BFFHQ's gender (``attribute_classifier_path``); unconditional
    families have none apart from the class (the minority is ``classes[1]``)."""
    from biaslab.datasets import attributes_of, own_weights_of

    classifier, classes = load_classifier(classifier_path)
    lookup = {int(c): i for i, c in enumerate(classes)}
    y_index = np.array([lookup[int(v)] for v in train["y"]], dtype=np.int64)
    s = Subject(unet, dict(scheduler_config), train["x"], y_index, y_index == 1, classifier)
    k = s.num_classes
    if not k:
        return s, None
    key = next((a for a in ("colour", "colour_left", "bias") if a in train), None)
    if key is None:
        raise ValueError("probe: a conditional training set needs its bias attribute")
    if key == "bias":
        bias_clf, bias_classes = load_classifier(attribute_classifier_path)
        s.label_attribute = lambda img: bias_classes[predict(bias_clf, to_model_range(img))[0]]
    else:
        s.label_attribute = lambda img: attributes_of(img, dataset, classes)[key]
        s.attribute_weights = lambda img, own: own_weights_of(img, dataset, classes, own)[key]
    s.attribute = np.asarray(train[key])
    s.own_attribute = np.asarray(classes) if key != "bias" else np.arange(k)
    aligned = s.attribute == (np.asarray(classes)[y_index] if key != "bias" else y_index)
    s.is_minority = ~aligned
    return s, float(aligned.mean())
