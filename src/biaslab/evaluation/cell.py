"""Per-cell evaluation: bias (% minority), diversity (LPIPS) and memorization (kNN).

One call per (model, sampler setting) cell produces two tidy tables that carry every grid
column: one row per sample (predicted class, confidence) and one row per metric value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from biaslab.base.columns import GRID_COLUMNS
from biaslab.base.images import to_model_range
from biaslab.base.sections import from_section
from biaslab.datasets.common import class_indices
from biaslab.evaluation.attributes import conditional_attribute
from biaslab.evaluation.backbones import load_backbone
from biaslab.evaluation.classifier import load_classifier, predict
from biaslab.evaluation.metrics import amplification, knn_similarity, mean_pairwise_lpips, share
from biaslab.evaluation.quality import fairness_rows, quality_rows, same_seed_rows
from biaslab.stats.gather import ROW_KEYS, attach_probe, gather, summary_table  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class MetricsConfig:
    """The ``metrics`` section of the config: the LPIPS backbone (and its weights file), the
    kNN feature space (``knn_backbone``, "same" = the LPIPS backbone), the resize before
    the backbone, the k of the kNN similarity, the per-sample confidence cut-off and the
    FID Inception weights file of the standard ``fid`` (None: no standard FID)."""

    backbone: str = "classifier"
    backbone_weights: str | None = None
    knn_backbone: str = "same"
    knn_backbone_weights: str | None = None
    lpips_resize: int = 64
    knn_k: tuple[int, ...] = (1, 2, 5, 10)
    confidence_threshold: float = 0.9
    fid_inception_weights: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricsConfig:
        return from_section(cls, d, "metrics", int_tuples=("knn_k",))

    def knn_network(self) -> tuple[str, str | None]:
        """The kNN backbone and its weights file."""
        if self.knn_backbone == "same":
            return self.backbone, self.backbone_weights
        return self.knn_backbone, self.knn_backbone_weights


def share_row(metric: str, k: int, n: int, **extra: Any) -> dict[str, Any]:
    """A share ``k / n`` with its exact 95% interval (``evaluation.metrics.share``), as a
    metrics row."""
    s = share(k, n)
    return {"metric": metric, **{c: s[c] for c in ("value", "ci_low", "ci_high", "n")}, **extra}


def _dataset_classifier(classifier_path: str, train: dict[str, np.ndarray]):
    """The evaluation classifier and its classes, which must be the training set's."""
    classifier, classes = load_classifier(classifier_path)
    if list(classes) != [int(c) for c in train["classes"]]:
        raise ValueError(
            f"classifier classes {classes} differ from the dataset's {train['classes']}"
        )
    return classifier, classes


@dataclass
class Classified:
    """What every readout starts from: the cell's inputs, its samples in model range and the
    class classifier's verdict on them."""

    dataset: str
    samples: dict[str, np.ndarray]
    train: dict[str, np.ndarray]
    x_gen: torch.Tensor
    classes: np.ndarray
    pred: np.ndarray
    probs: np.ndarray
    confidence: np.ndarray
    attribute_classifier_path: str | None
    #: a sample is recognised (counted by the robust readout) at this class confidence
    confidence_threshold: float = 0.9

    @property
    def recognised(self) -> np.ndarray:
        """Samples the class classifier recognises: the robust readout counts only these."""
        return self.confidence >= self.confidence_threshold


@dataclass
class Readout:
    """A family's bias readout of one cell: its per-sample columns (after ``sample_index`` and
    ``seed``), which samples count as the minority (bias-conflicting), the training set's
    minority share, and its own metric rows before and after the shared bias rows."""

    columns: dict[str, Any]
    is_minority: np.ndarray
    training_minority_share: float
    rows_before: list[dict[str, Any]] = field(default_factory=list)
    rows_after: list[dict[str, Any]] = field(default_factory=list)
    #: the attribute whose Fairness Discrepancy is reported: per-sample probabilities over
    #: its A classes [N, A] and the training set's distribution over them [A]
    attribute_probs: np.ndarray | None = None
    training_attribute: np.ndarray | None = None
    #: class-conditional models: each sample's conditioning class (FD per class, then the
    #: mean; ``training_attribute`` then one row per class)
    attribute_groups: np.ndarray | None = None


def depth_readout(c: Classified) -> Readout:
    """Unconditional models: the minority is the minority class (``classes[1]``); for CelebA
    also the ``Male x Blond_Hair`` groups (an attribute classifier of the groups)."""
    minor = int(c.classes[1])
    is_min = c.pred == minor
    columns = {
        "pred_class": c.pred.astype(np.int64),
        "is_minority": is_min,
        "confidence": c.confidence.astype(np.float64),
        "prob_minority": c.probs[:, 1].astype(np.float64),
    }
    rows = []
    if c.attribute_classifier_path is not None:
        rows = _group_rows(columns, c.x_gen, c.train, c.attribute_classifier_path)
    train_dist = np.array([np.mean(c.train["y"] == k) for k in c.classes])
    return Readout(
        columns,
        is_min,
        float(np.mean(c.train["y"] == minor)),
        rows_after=rows,
        attribute_probs=c.probs,
        training_attribute=train_dist,
    )


def _group_rows(
    columns: dict[str, Any],
    x_gen: torch.Tensor,
    train: dict[str, np.ndarray],
    group_classifier_path: str,
) -> list[dict[str, Any]]:
    """Classify the samples into attribute groups (adds ``pred_group`` and
    ``group_confidence`` to ``columns``); one generated and one training share per group."""
    if "group" not in train or "group_names" not in train:
        raise ValueError("a group classifier needs the training set's 'group' and 'group_names'")
    names = [str(g) for g in train["group_names"]]
    classifier, groups = load_classifier(group_classifier_path)
    if list(groups) != list(range(len(names))):
        raise ValueError(f"group classifier classes {list(groups)} do not fit the groups {names}")
    idx, probs = predict(classifier, x_gen)
    columns["pred_group"] = groups[idx].astype(np.int64)
    columns["group_confidence"] = probs.max(axis=1).astype(np.float64)
    n, n_train = len(idx), len(train["group"])
    rows = []
    for g, name in enumerate(names):
        rows.append(share_row("group_share", int((groups[idx] == g).sum()), n, group=name))
        value = float(np.mean(train["group"] == g)) if n_train else np.nan
        rows.append({"metric": "training_group_share", "group": name, "value": value, "n": n_train})
    return rows


def conditional_readout(c: Classified) -> Readout:
    """Class-conditional models ("How I Met Your Bias"): coloured MNIST (bias attribute =
    background colour, read by ``colour_mnist.attributes_of``) or BFFHQ (class = age; bias
    attribute = gender, read by the attribute classifier; a class's aligned gender is its own
    index). A sample is aligned when its bias attribute (left half for Multi-Color MNIST) is
    the own attribute of the class it was conditioned on; the minority are the others.

    Rows: ``rho_model`` (aligned share, exact 95% interval), ``rho_model_right``
    (Multi-Color), ``label_adherence`` (the colour-decorrelated class classifier agrees with
    the conditioning label), ``rho_model_adherent`` (rho_model among adherent samples), the
    training set's measured ``training_rho`` (and ``training_rho_right``); the robust
    readout ``rho_model_confident``: rho_model among the samples the class classifier
    recognises (confidence >= ``metrics.confidence_threshold``), so that noise is not counted."""
    from biaslab.datasets import attributes_of

    if "labels" not in c.samples:
        raise ValueError("samples: no conditioning labels (is the model class-conditional?)")
    train, n = c.train, len(c.pred)
    cond = c.classes[c.samples["labels"]]
    ca = conditional_attribute(
        c.samples["images"], c.dataset, c.classes, c.attribute_classifier_path, x=c.x_gen
    )
    attrs, main, values, bias_probs = ca.attrs, ca.main, ca.values, ca.probs
    if c.attribute_classifier_path:
        train_attr = train["bias"]
    else:  # the same labeller on the training images
        train_attr = attributes_of(train["x"], c.dataset, c.classes)[main]
    aligned = attrs[main] == cond
    columns = {
        "label": cond.astype(np.int64),
        "pred_class": c.pred.astype(np.int64),
        "confidence": c.confidence.astype(np.float64),
        **{attr: ids.astype(np.int64) for attr, ids in attrs.items()},
        "aligned": aligned,
        "is_minority": ~aligned,
    }
    adherent = c.pred == cond
    recognised = c.recognised
    rho_train = float(np.mean(train[main] == train["y"]))
    before = [
        share_row("rho_model", int(aligned.sum()), n),
        share_row("rho_model_confident", int((aligned & recognised).sum()), int(recognised.sum())),
        share_row("label_adherence", int(adherent.sum()), n),
        share_row("rho_model_adherent", int((aligned & adherent).sum()), int(adherent.sum())),
        {"metric": "training_rho", "value": rho_train, "n": len(train["y"])},
    ]
    after = []
    if "colour_right" in attrs:
        right = int((attrs["colour_right"] == cond).sum())
        before.insert(1, share_row("rho_model_right", right, n))
        rho_right = float(np.mean(train["colour_right"] == train["y"]))
        after.append({"metric": "training_rho_right", "value": rho_right, "n": len(train["y"])})
    # per class (the bias of a conditional model is the attribute given the class)
    train_cls = class_indices(train["y"], c.classes)
    train_dist = np.array(
        [[np.mean(train_attr[train_cls == k] == v) for v in values] for k in range(len(c.classes))]
    )
    return Readout(
        columns,
        ~aligned,
        1.0 - rho_train,
        before,
        after,
        bias_probs,
        train_dist,
        attribute_groups=np.asarray(c.samples["labels"], dtype=np.int64),
    )


def bias_rows(r: Readout, c: Classified, n_train: int) -> list[dict[str, Any]]:
    """The bias rows every family reports: % minority (all samples, and among the recognised
    ones, ``Classified.recognised``), the confident share, the training share, the
    amplification and the mean confidence."""
    is_min, n = r.is_minority, len(r.is_minority)
    confident, confidence = c.recognised, c.confidence
    n_confident = int(confident.sum())
    return [
        share_row("minority_share", int(is_min.sum()), n),
        share_row("minority_share_confident", int((is_min & confident).sum()), n_confident),
        share_row("confident_share", n_confident, n),
        {"metric": "training_minority_share", "value": r.training_minority_share, "n": n_train},
        {
            "metric": "amplification",
            "value": amplification(float(is_min.mean()), r.training_minority_share),
            "n": n,
        },
        {"metric": "mean_confidence", "value": float(confidence.mean()), "n": n},
    ]


def is_conditional(grid: Mapping[str, Any]) -> bool:
    k = grid.get("num_classes")
    return k is not None and not pd.isna(k) and int(k) > 0


def evaluate_cell(
    *,
    samples: dict[str, np.ndarray],
    train: dict[str, np.ndarray],
    classifier_path: str,
    grid: dict[str, Any],
    metrics: MetricsConfig | None = None,
    train_features: np.ndarray | None = None,
    attribute_classifier_path: str | None = None,
    real_images: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate one (model, sampler setting) cell: classify the samples, read the bias out
    (``conditional_readout`` for class-conditional models, ``grid["num_classes"] > 0``, else
    ``depth_readout``), measure diversity and memorization, and return the tidy predictions
    (one row per sample) and metrics (one row per value), both with every grid column.

    ``samples``: {"images": uint8 [N, C, H, W], "seeds": [N], and "labels" (conditioning
    class indices) for a conditional model}; ``train``: {"x": uint8 training images, "y":
    labels, "classes", and the family's attributes}. ``train_features``: the training set's
    kNN features (``knn_features``), else computed here. ``attribute_classifier_path``:
    the CelebA group classifier or the BFFHQ gender classifier. ``real_images``: held-out
    real images (uint8), the reference of ``fid_classifier`` / ``kid_classifier`` and the
    standard ``fid`` (no quality rows without them). An
    intervened cell's ``same_seed_similarity`` is ``same_seed_table`` (its own job)."""
    metrics = metrics or MetricsConfig()
    classifier, classes = _dataset_classifier(classifier_path, train)
    x_gen = to_model_range(samples["images"])
    idx, probs = predict(classifier, x_gen)
    c = Classified(
        str(grid["dataset"]),
        samples,
        train,
        x_gen,
        classes,
        classes[idx],
        probs,
        probs.max(axis=1),
        attribute_classifier_path,
        metrics.confidence_threshold,
    )
    r = (conditional_readout if is_conditional(grid) else depth_readout)(c)
    n = len(x_gen)
    predictions = pd.DataFrame(
        {
            **{k: [grid.get(k, np.nan)] * n for k in GRID_COLUMNS},
            "sample_index": np.arange(n),
            "seed": samples["seeds"],
            **r.columns,
        }
    )
    rows = r.rows_before + bias_rows(r, c, len(train["y"]))
    rows += r.rows_after
    rows += fairness_rows(r.attribute_probs, r.training_attribute, r.attribute_groups)
    rows += diversity_memorization_rows(
        x_gen, to_model_range(train["x"]), classifier, metrics, train_features
    )
    if real_images is not None:
        rows += quality_rows(x_gen, to_model_range(real_images), classifier, metrics)
    return predictions, _metrics_table(rows, grid)


def same_seed_table(
    samples: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    classifier_path: str,
    grid: dict[str, Any],
    metrics: MetricsConfig | None = None,
) -> pd.DataFrame:
    """The ``same_seed_similarity`` row of an intervened cell as a metrics table (every grid
    column): its own job, outside the sample/evaluate group (it reads two cells' samples)."""
    metrics = metrics or MetricsConfig()
    classifier, _classes = load_classifier(classifier_path)
    return _metrics_table(same_seed_rows(samples, reference, classifier, metrics), grid)


def diversity_memorization_rows(
    x_gen: torch.Tensor,
    x_train: torch.Tensor,
    classifier,
    metrics: MetricsConfig,
    train_features: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Mean pairwise LPIPS of the samples and kNN similarity to the training set (in the
    features ``train_features`` of the kNN backbone when given)."""
    n = len(x_gen)
    rows: list[dict[str, Any]] = []
    bb = load_backbone(
        metrics.backbone,
        weights_path=metrics.backbone_weights,
        resize=metrics.lpips_resize,
        classifier=classifier,
    )
    with torch.no_grad():
        diversity = mean_pairwise_lpips(bb.lpips_features(x_gen))
        rows.append({"metric": "diversity_lpips", "backbone": bb.name, "n": n, "value": diversity})
        if metrics.knn_backbone != "same":
            name, weights = metrics.knn_network()
            bb = load_backbone(
                name, weights_path=weights, resize=metrics.lpips_resize, classifier=classifier
            )
        e_gen = bb.embed(x_gen)
        if train_features is None:
            e_train = bb.embed(x_train)
        else:
            e_train = torch.as_tensor(train_features)
            if e_train.shape != (len(x_train), e_gen.shape[1]):
                raise ValueError(
                    f"train_features {tuple(e_train.shape)} do not fit {len(x_train)} training "
                    f"images and {bb.name} features of width {e_gen.shape[1]}"
                )
    knn_k = metrics.knn_k
    for k, v in knn_similarity(e_gen, e_train, knn_k, metric="cosine").items():
        rows.append({"metric": "knn_cosine", "backbone": bb.name, "k": k, "value": v, "n": n})
    for k, v in knn_similarity(x_gen.flatten(1), x_train.flatten(1), knn_k, "l2").items():
        rows.append({"metric": "knn_l2", "backbone": "pixel", "k": k, "value": v, "n": n})
    return rows


def _metrics_table(rows: list[dict[str, Any]], grid: dict[str, Any]) -> pd.DataFrame:
    metrics = pd.DataFrame(rows)
    for col in ("ci_low", "ci_high", "backbone", "k", "group"):
        if col not in metrics:
            metrics[col] = np.nan
    for col in ("ci_low", "ci_high"):
        metrics[col] = metrics[col].astype(np.float64)
    for col in ("backbone", "group"):
        metrics[col] = metrics[col].astype(object).where(metrics[col].notna(), None)
    metrics["k"] = metrics["k"].astype("Int64")
    for key in reversed(GRID_COLUMNS):  # every grid column, NaN where it does not apply
        metrics.insert(0, key, grid.get(key, np.nan))
    return metrics


def knn_features(
    images: np.ndarray,
    classifier_path: str,
    metrics: MetricsConfig | None = None,
    *,
    batch_size: int = 1024,
) -> tuple[np.ndarray, str]:
    """Features of real images in the kNN backbone (``MetricsConfig.knn_network``), computed
    once and shared by every cell trained on them; and the backbone's name."""
    metrics = metrics or MetricsConfig()
    classifier, _classes = load_classifier(classifier_path)
    name, weights = metrics.knn_network()
    bb = load_backbone(
        name, weights_path=weights, resize=metrics.lpips_resize, classifier=classifier
    )
    parts = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            parts.append(bb.embed(to_model_range(images[s : s + batch_size])).float())
    return torch.cat(parts).numpy(), bb.name


def feature_pool(data: dict[str, np.ndarray], scope: str) -> np.ndarray:
    """The images whose kNN features are cached: a training set's ``x`` (``scope="train"``),
    or a base set's held-in pool (``"base"``: ``pool_x`` for BFFHQ, else ``x_in``), which the
    training sets of every skew index through their ``base_index``."""
    if scope == "train":
        return data["x"]
    if scope != "base":
        raise ValueError(f"feature scope {scope!r}: 'base' or 'train'")
    return data["pool_x"] if "pool_x" in data else data["x_in"]


def training_set_features(
    train: dict[str, np.ndarray], features: dict[str, np.ndarray]
) -> np.ndarray:
    """The kNN features of ``train``'s images, from a cache file's arrays (``embeddings`` and
    ``scope``): as stored for a per-training-set cache, indexed by ``train["base_index"]`` for
    a cache of the base set."""
    emb = features["embeddings"]
    scope = str(features.get("scope", "train"))
    if scope == "train":
        return emb
    if "base_index" not in train:
        raise ValueError(
            "the kNN feature cache covers the base set, but the training set has no base_index "
            "(rebuild it with this version: it was written before the cache was shared)"
        )
    idx = np.asarray(train["base_index"], dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(emb)):
        raise ValueError(
            f"training set base_index reaches row {int(idx.max())}, but the base feature "
            f"cache has {len(emb)} rows: the cache and the training set come from different "
            "base sets"
        )
    return emb[idx]
