"""A model's sampler cells in one process: load the model, its data and its classifiers once,
then sample and evaluate every cell in turn, each cell's files written as it finishes.

The workflow runs one such job per trained model (``workflow/rules/sample.smk``: every
unintervened cell, with the probe; and, for a model with an SAE, a second job for its
intervened cells, which need the SAE and add the same-seed similarity to their twins). The
outputs stay one folder per cell; only the process is shared, so the imports (torch,
diffusers, torchmetrics: several seconds), the model and the classifier are loaded once per
model instead of twice per cell. ``benchmarks/bench_cell_jobs.py`` measures the two designs
(a process per cell, a process per model) on the same cells and checks their files are
identical.

A cell's samples depend on its knobs and per-sample seeds alone (``biaslab.sampling.generate``), and
every evaluation draw has its own fixed seed, so which cells share a process changes no
number.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import torch

from biaslab.base.columns import intervened
from biaslab.base.io import load_npz, write_npz, write_parquet
from biaslab.evaluation.cell import (
    MetricsConfig,
    evaluate_cell,
    same_seed_table,
    training_set_features,
)
from biaslab.models.unets import default_device
from biaslab.sampling.generate import (
    SamplerConfig,
    generate,
    num_classes,
    sample_labels,
    sample_seeds,
)
from biaslab.training.train import load_model


@dataclass(frozen=True)
class Cell:
    """One sampler cell of a model: its sampler settings (``SamplerConfig`` keywords), its
    grid columns (``Family.cell_columns``) and the files it writes. An intervened cell names
    its unintervened twin's samples (``reference``) and its same-seed table (``same_seed``)."""

    sampling: Mapping[str, Any]
    grid: Mapping[str, Any]
    samples: str
    predictions: str
    metrics: str
    reference: str | None = None
    same_seed: str | None = None


@dataclass(frozen=True)
class ModelFiles:
    """What the cells of one model read: the model folder, its training set, the base set
    (its held-out images are the FIDs' reference), the kNN feature cache, the classifiers, and
    for intervened cells the SAE, the located features and DiffLens' target distribution."""

    model: str
    train: str
    base: str
    train_features: str
    classifier: str
    attribute_classifier: str | None = None
    sae: str | None = None
    features: str | None = None
    target: Sequence[float] | None = None


class ModelCells:
    """A loaded model with what its cells share; ``run(cell)`` writes one cell's files."""

    def __init__(self, files: ModelFiles, metrics: MetricsConfig, log: TextIO = sys.stderr):
        self.files, self.metrics, self.log = files, metrics, log
        self.unet, self.scheduler = load_model(files.model)
        self.unet.to(default_device())  # the U-Net runs there; noise and sampler state on CPU
        self.train = load_npz(files.train)
        self.train_features = training_set_features(self.train, load_npz(files.train_features))
        self.real_images = load_npz(files.base)["x_out"]
        self._sae = None

    def _intervention(self, cfg: SamplerConfig, labels: np.ndarray | None) -> list:
        """The SAE intervention of an intervened cell (loaded and checked on first use)."""
        from biaslab.difflens.steps import (
            SAEIntervention,
            check_features_file,
            fingerprint,
            load_sae,
            target_classes,
        )

        f = self.files
        if f.sae is None or f.features is None or f.target is None:
            raise ValueError(f"intervene {cfg.intervene}: the model's SAE files are not given")
        if self._sae is None:
            model_fp = fingerprint(self.unet)
            sae = load_sae(f.sae, model_fingerprint=model_fp)
            feats = load_npz(f.features)
            feats["model_fingerprint"] = str(feats["model_fingerprint"])
            check_features_file(
                feats, model_fingerprint=model_fp, n_classes=len(f.target), path=f.features
            )
            self._sae = (sae, feats["features"])
        sae, features = self._sae
        targets = target_classes(sample_seeds(cfg), cfg.intervene_mode, f.target, labels=labels)
        counts = np.bincount(targets, minlength=len(f.target))
        print(f"intervention targets {counts}", file=self.log)
        return [SAEIntervention(self.unet, sae, features, cfg.intervene, targets)]

    def sample(self, sampling: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One cell's samples: uint8 images, per-sample seeds, and a conditional model's
        class of each sample."""
        cfg = SamplerConfig(**sampling)
        labels = sample_labels(cfg, num_classes(self.unet))
        hooks = self._intervention(cfg, labels) if intervened(sampling) else []
        images, seeds = generate(self.unet, self.scheduler.config, cfg, hooks=hooks)
        return {"images": images, "seeds": seeds, **({} if labels is None else {"labels": labels})}

    def run(self, cell: Cell) -> None:
        """Sample one cell, evaluate it, and write its files (each atomically)."""
        if cell.same_seed is not None and cell.reference is None:
            raise ValueError(f"{cell.same_seed}: an intervened cell needs its twin's samples")
        print(f"== cell {cell.samples}", file=self.log)
        samples = self.sample(cell.sampling)
        write_npz(cell.samples, **samples)
        f = self.files
        predictions, metrics = evaluate_cell(
            samples=samples,
            train=self.train,
            classifier_path=f.classifier,
            attribute_classifier_path=f.attribute_classifier,
            train_features=self.train_features,
            grid=dict(cell.grid),
            metrics=self.metrics,
            real_images=self.real_images,
        )
        print(metrics.to_string(), file=self.log)
        write_parquet(predictions, cell.predictions)
        write_parquet(metrics, cell.metrics)
        if cell.same_seed is not None:
            table = same_seed_table(
                samples, load_npz(cell.reference), f.classifier, dict(cell.grid), self.metrics
            )
            print(table.to_string(), file=self.log)
            write_parquet(table, cell.same_seed)


def run_cells(
    files: ModelFiles,
    cells: Sequence[Cell],
    metrics: MetricsConfig,
    *,
    threads: int | None = None,
    log: TextIO = sys.stderr,
) -> ModelCells:
    """Sample and evaluate ``cells`` of one model in this process (module docstring); returns
    the loaded model, for a probe of the same model."""
    if threads:
        torch.set_num_threads(int(threads))
    m = ModelCells(files, metrics, log)
    for cell in cells:
        m.run(cell)
    return m
