"""Bias of a pretrained model's cell, read by the attribute labellers
(``biaslab.pretrained.labellers``).

``label_cell`` turns one cell's samples (images, seeds, prompt classes) into

* predictions: one row per sample and (labeller, attribute), the predicted value and its
  probability, with the cell's grid columns;
* metrics: per (labeller, attribute), ``share`` of each value (mean probability; over all
  samples and per prompt class), ``confidence`` (mean top probability), ``fd`` (DiffLens'
  Fairness Discrepancy to uniform, per prompt class then averaged, bootstrap 95% interval:
  ``evaluation.quality.fd_interval``); and, with a CLIP labeller and two prompt classes at least,
  ``cross_prompt_similarity`` (the Fig. 6 measurement, ``cross_prompt_similarity``); with a
  CLIP labeller also ``diversity_clip`` (1 - mean pairwise cosine similarity of the CLIP image
  embeddings within a prompt class, averaged over classes) and, given the samples of the
  cell's unbypassed twin (same seeds), ``same_seed_similarity`` to it (DiffLens' CLIP-I).

Every prompt class is sampled from the same seeds (``sampling.sample_seed(base, j)`` for its
j-th sample), so the j-th images of two classes share their initial noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from biaslab.evaluation.quality import fd_interval, same_seed_similarity

#: Value of the ``prompt_class`` column for a row over every class.
ALL = "all"


def cross_prompt_similarity(
    embeddings: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    seeds: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float | int]:
    """Fig. 6 of "Deeper Diffusion Models Amplify Bias", quantified: for each seed shared by
    every prompt class, the mean cosine similarity between the embeddings of the images of
    different prompts from that seed; the mean over seeds, with a percentile bootstrap 95%
    interval over the seeds (``scipy.stats.bootstrap``; 1 = the prompts no longer change the
    image)."""
    from scipy import stats as sps  # lazily, as in biaslab.stats.intervals

    e = F.normalize(torch.as_tensor(embeddings).double(), dim=1).numpy()
    labels, seeds = np.asarray(labels), np.asarray(seeds)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("cross_prompt_similarity: need two prompt classes at least")
    per_class = [
        dict(zip(seeds[labels == c].tolist(), e[labels == c], strict=True)) for c in classes
    ]
    shared = sorted(set.intersection(*(set(d) for d in per_class)))
    if len(shared) < 2:
        raise ValueError("cross_prompt_similarity: need two seeds shared by every prompt class")
    sims = []
    for s in shared:
        v = np.stack([d[s] for d in per_class])
        g = v @ v.T
        iu = np.triu_indices(len(v), 1)
        sims.append(g[iu].mean())
    sims = np.asarray(sims)
    ci = sps.bootstrap(
        (sims,), np.mean, n_resamples=n_boot, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    lo, hi = ci.low, ci.high
    return {"value": float(sims.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": len(sims)}


def clip_diversity(embeddings: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    """1 - the mean pairwise cosine similarity of the embeddings within each class, averaged
    over the classes (0 = every image of a prompt alike)."""
    e = F.normalize(torch.as_tensor(embeddings).double(), dim=1).numpy()
    labels = np.asarray(labels)
    out = []
    for c in np.unique(labels):
        v = e[labels == c]
        if len(v) > 1:
            g = v @ v.T
            out.append(1.0 - g[np.triu_indices(len(v), 1)].mean())
    return float(np.mean(out)) if out else math.nan


def _attribute_rows(
    names: Sequence[str], probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> list[dict[str, Any]]:
    rows = []
    groups = [(ALL, np.ones(len(probs), bool))]
    if len(classes) > 1:
        groups += [(c, labels == i) for i, c in enumerate(classes)]
    for group, mask in groups:
        p = probs[mask]
        for j, name in enumerate(names):
            rows.append(
                {
                    "metric": "share",
                    "prompt_class": group,
                    "attribute_value": name,
                    "value": float(p[:, j].mean()),
                    "n": int(mask.sum()),
                }
            )
        rows.append(
            {
                "metric": "confidence",
                "prompt_class": group,
                "value": float(p.max(1).mean()),
                "n": int(mask.sum()),
            }
        )
        if group != ALL:
            rows.append({"metric": "fd", "prompt_class": group, **fd_interval(p)})
    fd = fd_interval(probs, groups=labels if len(classes) > 1 else None)
    rows.append({"metric": "fd", "prompt_class": ALL, **fd})
    return rows


def label_cell(
    samples: Mapping[str, np.ndarray],
    labellers: Mapping[str, Any],
    grid: Mapping[str, Any],
    *,
    classes: Sequence[str] = (),
    reference: Mapping[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, metrics) of one cell; ``labellers`` by name ("clip", "fairface"), each
    with ``probabilities(images)``; the CLIP one's ``embed`` also gives
    ``cross_prompt_similarity``. ``samples``: images uint8 [N, 3, H, W], seeds, labels (prompt
    class index per sample; zeros for an unconditional model). ``reference``: the samples of
    the cell's unbypassed twin (the same seeds and prompts), for ``same_seed_similarity``."""
    if reference is not None and not np.array_equal(reference["seeds"], samples["seeds"]):
        raise ValueError("same_seed_similarity: the reference cell was sampled from other seeds")
    images = samples["images"]
    n = len(images)
    labels = np.asarray(samples.get("labels", np.zeros(n, np.int64)))
    seeds = np.asarray(samples["seeds"])
    names = list(classes) or [ALL]
    preds, rows = [], []
    for lname, labeller in labellers.items():
        emb = labeller.embed(images) if hasattr(labeller, "embed") else None
        probs = (
            labeller.probabilities(images, embeddings=emb)
            if emb is not None
            else labeller.probabilities(images)
        )
        for attr, (values, p) in probs.items():
            preds.append(
                pd.DataFrame(
                    {
                        "sample_index": np.arange(n),
                        "seed": seeds,
                        "prompt_class": [names[i] for i in labels],
                        "labeller": lname,
                        "attribute": attr,
                        "predicted": np.asarray(values, dtype=object)[p.argmax(1)],
                        "probability": p.max(1),
                    }
                )
            )
            for r in _attribute_rows(values, p, labels, classes):
                rows.append({"labeller": lname, "attribute": attr, **r})
        if emb is not None:
            rows.append(
                {
                    "labeller": lname,
                    "metric": "diversity_clip",
                    "prompt_class": ALL,
                    "value": clip_diversity(emb, labels),
                    "n": n,
                }
            )
        if emb is not None and reference is not None:
            sim = same_seed_similarity(emb, labeller.embed(reference["images"]))
            rows.append(
                {"labeller": lname, "metric": "same_seed_similarity", "prompt_class": ALL, **sim}
            )
        if emb is not None and len(classes) > 1:
            rows.append(
                {
                    "labeller": lname,
                    "metric": "cross_prompt_similarity",
                    "prompt_class": ALL,
                    **cross_prompt_similarity(emb, labels, seeds),
                }
            )
    return _with_grid(pd.concat(preds, ignore_index=True), grid), _with_grid(
        _tidy(pd.DataFrame(rows)), grid
    )


def _tidy(m: pd.DataFrame) -> pd.DataFrame:
    for col in ("attribute", "attribute_value"):
        if col not in m:
            m[col] = None
        m[col] = m[col].astype(object).where(m[col].notna(), None)
    for col in ("ci_low", "ci_high"):
        m[col] = m[col].astype(np.float64) if col in m else math.nan
    m["n"] = m["n"].astype("Int64")
    return m[
        [
            "labeller",
            "attribute",
            "metric",
            "prompt_class",
            "attribute_value",
            "value",
            "ci_low",
            "ci_high",
            "n",
        ]
    ]


def _with_grid(table: pd.DataFrame, grid: Mapping[str, Any]) -> pd.DataFrame:
    for key in reversed(list(grid)):
        table.insert(0, key, grid[key])
    return table
