"""Fairness Discrepancy, same-seed similarity and image quality of a cell.

Fairness (DiffLens): ``fairness_discrepancy`` / ``fd_interval`` (bootstrap interval, per
conditioning class for class-conditional models), ``same_seed_similarity`` (CLIP-I analogue).
The metric rows of ``evaluation.cell.evaluate_cell``: ``fairness_rows``, ``quality_rows``,
``same_seed_rows`` (``metrics`` the ``evaluation.cell.MetricsConfig`` section).

Image quality against held-out real images, through ``torchmetrics`` (the Frechet distance
and the polynomial-kernel MMD of Binkowski et al. 2018 are theirs, not rewritten here):

* ``fid_classifier``, ``kid_classifier`` and ``kid_classifier_std`` (``fid_kid``): FID and
  KID in the kNN feature space, by default the evaluation classifier's penultimate features
  (``evaluation.backbones.ClassifierBackbone.embed``), the backbone named in the ``backbone``
  column. Comparable across the cells of one run, not with published FIDs (hence the names; before
  issue 26 they were ``fid``, ``kid`` and ``kid_std``: ``biaslab.base.metric_names``).
* ``fid`` (``standard_fid``), only when ``metrics.fid_inception_weights`` names a local copy of
  the FID Inception weights (``pt_inception-2015-12-05``, torch-fidelity's
  ``FeatureExtractorInceptionV3``, which torchmetrics' ``FrechetInceptionDistance`` loads
  through ``feature_extractor_weights_path``): the standard FID, backbone ``fid_inception``.
  Nothing is downloaded (torch-fidelity would fetch the weights when given no path; biaslab
  always gives one). Still only as comparable with published numbers as the sample sizes and
  the reference images are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biaslab.base.images import to_model_range, to_uint8
from biaslab.base.metric_names import (
    FID_CLASSIFIER,
    KID_CLASSIFIER,
    KID_CLASSIFIER_STD,
    STANDARD_FID,
    STANDARD_FID_BACKBONE,
)
from biaslab.evaluation.backbones import load_backbone


class EmbedFeatures(nn.Module):
    """A backbone's ``embed(x) -> [N, D]`` as the feature module torchmetrics takes."""

    def __init__(self, backbone: Any, num_features: int):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(x).to(torch.float64)


def fid_kid(
    x_gen: torch.Tensor,
    x_real: torch.Tensor,
    backbone: Any,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
) -> dict[str, dict[str, float]]:
    """FID and KID (mean and std over ``kid_subsets`` subsets of ``min(kid_subset_size, N_gen,
    N_real)`` images) of model-range images ``x_gen`` against ``x_real`` in ``backbone``'s
    ``embed`` features (the ``fid_classifier`` / ``kid_classifier`` rows)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(x_gen) < 2 or len(x_real) < 2:
        raise ValueError(
            f"fid/kid: need two images at least on each side, got {len(x_gen)} generated and "
            f"{len(x_real)} real"
        )
    with torch.no_grad():
        d = int(backbone.embed(x_real[:1]).shape[1])
        feats = EmbedFeatures(backbone, d)
        fid = FrechetInceptionDistance(feature=feats, reset_real_features=False)
        fid.update(x_real, real=True)
        fid.update(x_gen, real=False)
        size = min(kid_subset_size, len(x_gen), len(x_real))
        kid = KernelInceptionDistance(feature=feats, subsets=kid_subsets, subset_size=size)
        kid.update(x_real, real=True)
        kid.update(x_gen, real=False)
        with torch.random.fork_rng():  # KID's subsets: the same draw in every cell
            torch.manual_seed(0)
            kid_mean, kid_std = kid.compute()
        return {
            "fid": {"value": float(fid.compute())},
            "kid": {"value": float(kid_mean), "std": float(kid_std), "subset_size": size},
        }


#: The FID Inception weights as torch-fidelity releases them (pytorch-fid's copy of the same
#: TensorFlow graph: ``pt_inception-2015-12-05-6726825d.pth``); any local name works.
FID_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def fid_inception_metric(weights_path: str | Path):
    """torchmetrics' ``FrechetInceptionDistance`` on the FID Inception (torch-fidelity's
    ``FeatureExtractorInceptionV3``, 2048-d pool features) with its weights read from the local
    file ``weights_path``, resized to 299 as the original TensorFlow FID does
    (``antialias=False``: torch-fidelity's TF1-compatible bilinear; torchmetrics' default
    antialiasing differs from it). Raises ``FileNotFoundError`` (no file),
    ``ModuleNotFoundError`` (torch-fidelity missing) or ``ValueError`` (not a state dict of
    that network: a corrupt file, or other keys / shapes). The file is first read with
    ``weights_only=True``, as torch-fidelity itself unpickles it without that guard."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"the FID Inception weights file {str(path)!r} does not exist (expected torch-"
            f"fidelity's {FID_INCEPTION_FILE}, about 92 MB; on an online machine: python -m "
            "biaslab.evaluation.fetch_weights --dest DIR fid_inception)"
        )
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the standard FID needs torch-fidelity (pip install torch-fidelity), which holds "
            "the FID Inception network torchmetrics uses"
        ) from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a pickle, a pickle of other objects, ...
        raise ValueError(
            f"{path} is not a readable torch state dict ({type(e).__name__}: {str(e)[:200]}); "
            f"expected {FID_INCEPTION_FILE}"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict; expected {FID_INCEPTION_FILE}")
    try:
        return FrechetInceptionDistance(
            feature=2048,
            reset_real_features=False,
            feature_extractor_weights_path=str(path),
            antialias=False,
        )
    except RuntimeError as e:  # load_state_dict(strict): missing / unexpected keys, shapes
        raise ValueError(
            f"{path} is not the FID Inception's state dict ({str(e)[:300]}); expected "
            f"{FID_INCEPTION_FILE}"
        ) from None


def standard_fid(
    gen: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    weights_path: str | Path,
    *,
    batch_size: int = 32,
) -> float:
    """The standard FID of uint8 images ``gen`` against ``real`` ([N, H, W] or [N, C, H, W],
    grey repeated to 3 channels) with the FID Inception weights file ``weights_path``
    (``fid_inception_metric``)."""
    if len(gen) < 2 or len(real) < 2:
        raise ValueError(
            f"fid: need two images at least on each side, got {len(gen)} generated and "
            f"{len(real)} real"
        )
    sides = []
    for is_real, images in ((True, real), (False, gen)):
        x = torch.as_tensor(np.asarray(images))
        if x.dtype != torch.uint8:
            raise ValueError(f"fid: uint8 images needed, got {x.dtype}")
        x = x[:, None] if x.ndim == 3 else x
        sides.append((is_real, x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x))
    metric = fid_inception_metric(weights_path)
    with torch.no_grad():
        for is_real, x in sides:
            for s in range(0, len(x), batch_size):
                metric.update(x[s : s + batch_size].contiguous(), real=is_real)
        return float(metric.compute())


def fairness_discrepancy(probs: np.ndarray, reference: np.ndarray | None = None) -> float:
    """DiffLens' Fairness Discrepancy: ``|| mean_i p_i - reference ||_2`` for the attribute
    probabilities ``p_i`` [N, A] of N samples (one-hot rows for a hard labeller); the
    reference is the uniform distribution over the A classes unless given (the training
    set's attribute distribution gives ``fd_training``). 0 = the reference exactly."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"fairness_discrepancy: need probabilities [N, A], got {p.shape}")
    ref = np.full(p.shape[1], 1.0 / p.shape[1]) if reference is None else np.asarray(reference)
    if ref.shape != (p.shape[1],):
        raise ValueError(f"fairness_discrepancy: reference {ref.shape} for {p.shape[1]} classes")
    return float(np.linalg.norm(p.mean(0) - ref))


def fd_interval(
    probs: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """``fairness_discrepancy`` with a percentile bootstrap ``1 - alpha`` interval over the
    samples (``scipy.stats.bootstrap``, ``method="percentile"``, ``n_boot`` resamples, a fixed
    seed). With ``groups`` (a class-conditional model's conditioning labels, as DiffLens scores
    each prompt on its own), the value is the mean over the groups of each group's FD, the
    reference one row per group ([G, A], or [A] for all) and the resamples are drawn within
    each group (scipy resamples each of several samples on its own: here each group's sample
    indices). A group of one sample resamples to itself: its FD enters every resample as is
    (scipy wants two observations a sample)."""
    from scipy import stats as sps  # lazily, as in biaslab.stats.intervals

    p = np.asarray(probs, dtype=np.float64)
    a = p.shape[1]
    ref = np.full(a, 1.0 / a) if reference is None else np.asarray(reference, dtype=np.float64)
    g = np.zeros(len(p), dtype=np.int64) if groups is None else np.asarray(groups, np.int64)
    names = np.unique(g)
    refs = ref if ref.ndim == 2 else np.broadcast_to(ref, (int(names.max()) + 1, a))
    members = [np.flatnonzero(g == k) for k in names]
    fds = [fairness_discrepancy(p[m], refs[k]) for k, m in zip(names, members, strict=True)]
    value = float(np.mean(fds))
    drawn = [(k, m) for k, m in zip(names, members, strict=True) if len(m) > 1]
    fixed = sum(fd for fd, m in zip(fds, members, strict=True) if len(m) == 1)
    if not drawn:
        return {"value": value, "ci_low": value, "ci_high": value, "n": len(p)}

    def statistic(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        total = np.zeros(np.shape(idx[0])[:-1])
        for (k, m), i in zip(drawn, idx, strict=True):
            total += np.linalg.norm(p[m[np.asarray(i, np.int64)]].mean(-2) - refs[k], axis=-1)
        return (total + fixed) / len(names)

    ci = sps.bootstrap(
        tuple(np.arange(len(m)) for _, m in drawn),
        statistic,
        n_resamples=n_boot,
        confidence_level=1 - alpha,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    ).confidence_interval
    lo, hi = ci.low, ci.high
    return {"value": value, "ci_low": float(lo), "ci_high": float(hi), "n": len(p)}


def same_seed_similarity(
    edited: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor
) -> dict[str, float | int]:
    """DiffLens' CLIP-I analogue: the mean cosine similarity between the features of each
    edited image and of the unedited image from the same seed (rows paired), with a normal
    95% interval over the pairs; 1 = the intervention changed nothing."""
    a, b = torch.as_tensor(edited).double(), torch.as_tensor(reference).double()
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"same_seed_similarity: paired features of one shape needed, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    cos = (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1).numpy()
    mean = float(cos.mean())
    half = 1.96 * float(cos.std(ddof=1)) / math.sqrt(len(cos)) if len(cos) > 1 else math.nan
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(cos)}


def fairness_rows(
    probs: np.ndarray | None, training: np.ndarray | None, groups: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """``fd`` (DiffLens' Fairness Discrepancy to the uniform distribution over the attribute's
    classes, from the soft probabilities), ``fd_hard`` (the same from hard labels:
    ``hard_labels``; equal to ``fd`` for a labeller that gives one-hot rows) and
    ``fd_training`` (to the training set's distribution: what amplification is relative to),
    each with a bootstrap 95% interval (``fd_interval``); for a
    class-conditional model per conditioning class (the attribute given the class), then the
    mean over classes."""
    if probs is None:
        return []
    rows = [{"metric": "fd", **fd_interval(probs, groups=groups)}]
    hard = hard_labels(probs)
    rows.append({"metric": "fd_hard", **fd_interval(hard, groups=groups)})
    if training is not None:
        rows.append({"metric": "fd_training", **fd_interval(probs, training, groups=groups)})
    return rows


def hard_labels(probs: np.ndarray) -> np.ndarray:
    """One-hot rows of each sample's most probable attribute class (ties: the first), the
    hard-label input of ``fairness_discrepancy`` (DiffLens reports FD from both)."""
    p = np.asarray(probs, dtype=np.float64)
    return np.eye(p.shape[1])[p.argmax(axis=1)]


def quality_rows(
    x_gen: torch.Tensor, x_real: torch.Tensor, classifier, metrics
) -> list[dict[str, Any]]:
    """``fid_classifier``, ``kid_classifier`` and ``kid_classifier_std`` against held-out real
    images in the kNN feature space (``MetricsConfig.knn_network``; offline default: the
    evaluation classifier's penultimate features, named in the ``backbone`` column), through
    torchmetrics; and the standard ``fid`` (backbone ``fid_inception``) when
    ``metrics.fid_inception_weights`` is set (``standard_fid``)."""
    name, weights = metrics.knn_network()
    bb = load_backbone(
        name, weights_path=weights, resize=metrics.lpips_resize, classifier=classifier
    )
    q = fid_kid(x_gen, x_real, bb)
    n = len(x_gen)
    rows = [
        {"metric": FID_CLASSIFIER, "backbone": bb.name, "value": q["fid"]["value"], "n": n},
        {"metric": KID_CLASSIFIER, "backbone": bb.name, "value": q["kid"]["value"], "n": n},
        {"metric": KID_CLASSIFIER_STD, "backbone": bb.name, "value": q["kid"]["std"], "n": n},
    ]
    weights_file = getattr(metrics, "fid_inception_weights", None)
    if weights_file:
        value = standard_fid(to_uint8(x_gen), to_uint8(x_real), weights_file)
        rows.append(
            {"metric": STANDARD_FID, "backbone": STANDARD_FID_BACKBONE, "value": value, "n": n}
        )
    return rows


def same_seed_rows(
    samples: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    classifier,
    metrics,
) -> list[dict[str, Any]]:
    """``same_seed_similarity`` of an intervened cell to its unintervened cell, in the kNN
    feature space (DiffLens' CLIP-I, with this run's backbone named)."""
    if not np.array_equal(samples["seeds"], reference["seeds"]):
        raise ValueError(
            "same_seed_similarity: the reference cell was sampled from other seeds (its "
            "sample_seed or n_samples differs)"
        )
    name, weights = metrics.knn_network()
    bb = load_backbone(
        name, weights_path=weights, resize=metrics.lpips_resize, classifier=classifier
    )
    with torch.no_grad():
        e = bb.embed(to_model_range(samples["images"]))
        r = bb.embed(to_model_range(reference["images"]))
    return [{"metric": "same_seed_similarity", "backbone": bb.name, **same_seed_similarity(e, r)}]
