"""Per-cell evaluation: bias (% minority), diversity (LPIPS) and memorization (kNN).

One call per (model, sampler setting) cell produces two tidy tables that carry every grid
column: one row per sample (predicted class, confidence) and one row per metric value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .backbones import load_backbone
from .classifier import load_classifier, predict
from .images import to_model_range
from .grid import GRID_COLUMNS, depth_sort_key
from .metrics import clopper_pearson, knn_similarity, mean_pairwise_lpips


def _share_row(metric: str, k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"metric": metric, "value": k / n if n else np.nan, "ci_low": lo, "ci_high": hi, "n": n}


def _dataset_classifier(classifier_path: str, train: dict[str, np.ndarray]):
    """The evaluation classifier and its classes, which must be the training set's."""
    classifier, classes = load_classifier(classifier_path)
    if list(classes) != [int(c) for c in train["classes"]]:
        raise ValueError(
            f"classifier classes {classes} differ from the dataset's {train['classes']}"
        )
    return classifier, classes


def evaluate_cell(
    *,
    samples: dict[str, np.ndarray],
    train: dict[str, np.ndarray],
    classifier_path: str,
    grid: dict[str, Any],
    backbone: str = "classifier",
    backbone_weights: str | None = None,
    lpips_resize: int = 64,
    knn_backbone: str = "same",
    knn_backbone_weights: str | None = None,
    knn_k: Sequence[int] = (1, 2, 5, 10),
    confidence_threshold: float = 0.9,
    train_embeddings: np.ndarray | None = None,
    group_classifier_path: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate one cell. ``train_embeddings``: the training set's kNN features from
    ``train_embeddings`` (computed once per base or training set), else computed here.
    ``samples``: {"images": uint8 [N, C, H, W], "seeds": [N]};
    ``train``: {"x": uint8 training images, "y": digit labels, "classes": [major, minor]},
    and with ``group_classifier_path`` (CelebA) also "group" and "group_names": then every
    sample gets a ``pred_group`` and the metrics a ``group_share`` row per group.
    """
    classifier, classes = _dataset_classifier(classifier_path, train)
    minor = int(classes[1])
    x_gen = to_model_range(samples["images"])
    x_train = to_model_range(train["x"])
    n = len(x_gen)

    idx, probs = predict(classifier, x_gen)
    pred_class = classes[idx]
    confidence = probs.max(axis=1)
    predictions = pd.DataFrame(
        {
            **{k: [grid.get(k, np.nan)] * n for k in GRID_COLUMNS},
            "sample_index": np.arange(n),
            "seed": samples["seeds"],
            "pred_class": pred_class.astype(np.int64),
            "is_minority": pred_class == minor,
            "confidence": confidence.astype(np.float64),
            "prob_minority": probs[:, 1].astype(np.float64),
        }
    )

    is_min = pred_class == minor
    confident = confidence >= confidence_threshold
    train_share = float(np.mean(train["y"] == minor))
    rows = [
        _share_row("minority_share", int(is_min.sum()), n),
        _share_row(
            "minority_share_confident", int((is_min & confident).sum()), int(confident.sum())
        ),
        _share_row("confident_share", int(confident.sum()), n),
        {"metric": "training_minority_share", "value": train_share, "n": len(train["y"])},
        {"metric": "amplification", "value": float(is_min.mean()) - train_share, "n": n},
        {"metric": "mean_confidence", "value": float(confidence.mean()), "n": n},
    ]
    if group_classifier_path is not None:
        rows += _group_rows(predictions, x_gen, train, group_classifier_path)

    rows += _diversity_memorization_rows(
        x_gen,
        x_train,
        classifier,
        backbone=backbone,
        backbone_weights=backbone_weights,
        lpips_resize=lpips_resize,
        knn_backbone=knn_backbone,
        knn_backbone_weights=knn_backbone_weights,
        knn_k=knn_k,
        train_embeddings=train_embeddings,
    )
    return predictions, _metrics_table(rows, grid)


def _group_rows(
    predictions: pd.DataFrame,
    x_gen: torch.Tensor,
    train: dict[str, np.ndarray],
    group_classifier_path: str,
) -> list[dict[str, Any]]:
    """Classify the samples into attribute groups (adds ``pred_group`` and
    ``group_confidence`` to ``predictions``); one generated and one training share per group."""
    if "group" not in train or "group_names" not in train:
        raise ValueError("a group classifier needs the training set's 'group' and 'group_names'")
    names = [str(g) for g in train["group_names"]]
    classifier, groups = load_classifier(group_classifier_path)
    if list(groups) != list(range(len(names))):
        raise ValueError(f"group classifier classes {list(groups)} do not fit the groups {names}")
    idx, probs = predict(classifier, x_gen)
    predictions["pred_group"] = groups[idx].astype(np.int64)
    predictions["group_confidence"] = probs.max(axis=1).astype(np.float64)
    n, n_train = len(idx), len(train["group"])
    rows = []
    for g, name in enumerate(names):
        rows.append({**_share_row("group_share", int((groups[idx] == g).sum()), n), "group": name})
        share = float(np.mean(train["group"] == g)) if n_train else np.nan
        rows.append({"metric": "training_group_share", "group": name, "value": share, "n": n_train})
    return rows


def _diversity_memorization_rows(
    x_gen: torch.Tensor,
    x_train: torch.Tensor,
    classifier,
    *,
    backbone: str,
    backbone_weights: str | None,
    lpips_resize: int,
    knn_backbone: str,
    knn_backbone_weights: str | None,
    knn_k: Sequence[int],
    train_embeddings: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Mean pairwise LPIPS of the samples and kNN similarity to the training set (in the
    features ``train_embeddings`` of the kNN backbone when given)."""
    n = len(x_gen)
    rows: list[dict[str, Any]] = []
    bb = load_backbone(
        backbone, weights_path=backbone_weights, resize=lpips_resize, classifier=classifier
    )
    with torch.no_grad():
        rows.append(
            {
                "metric": "diversity_lpips",
                "backbone": bb.name,
                "n": n,
                "value": mean_pairwise_lpips(bb.lpips_features(x_gen)),
            }
        )
        if knn_backbone != "same":
            bb = load_backbone(
                knn_backbone,
                weights_path=knn_backbone_weights,
                resize=lpips_resize,
                classifier=classifier,
            )
        e_gen = bb.embed(x_gen)
        if train_embeddings is None:
            e_train = bb.embed(x_train)
        else:
            e_train = torch.as_tensor(train_embeddings)
            if e_train.shape != (len(x_train), e_gen.shape[1]):
                raise ValueError(
                    f"train_embeddings {tuple(e_train.shape)} do not fit {len(x_train)} training "
                    f"images and {bb.name} features of width {e_gen.shape[1]}"
                )
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


def evaluate_conditional_cell(
    *,
    samples: dict[str, np.ndarray],
    train: dict[str, np.ndarray],
    classifier_path: str,
    grid: dict[str, Any],
    backbone: str = "classifier",
    backbone_weights: str | None = None,
    lpips_resize: int = 64,
    knn_backbone: str = "same",
    knn_backbone_weights: str | None = None,
    knn_k: Sequence[int] = (1, 2, 5, 10),
    confidence_threshold: float = 0.9,
    bias_classifier_path: str | None = None,
    train_embeddings: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate one cell of a class-conditional model ("How I Met Your Bias"): coloured MNIST
    (bias attribute = background colour, read by ``colour_mnist.attributes_of``) or BFFHQ
    (class = age; bias attribute = gender, read by the gender classifier at
    ``bias_classifier_path``; a class's aligned gender is its own index).

    ``samples``: {"images": uint8 RGB [N, 3, H, W], "seeds", "labels": conditioning class
    indices}; ``train``: {"x", "y" (classes), "classes", and the bias attribute: "colour",
    "colour_left"/"colour_right" or "bias"}.

    Rows: ``rho_model`` (share of samples whose background colour - left half for Multi-Color
    MNIST - is the own colour of the digit they were conditioned on) with its exact 95%
    interval, ``rho_model_right`` (Multi-Color), ``label_adherence`` (the colour-decorrelated
    digit classifier agrees with the conditioning label), ``rho_model_adherent`` (rho_model
    among adherent samples), the training set's measured ``training_rho`` (and
    ``training_rho_right``), and, for comparison with the depth family, ``minority_share`` = the
    bias-conflicting share ``1 - rho_model``, ``training_minority_share`` = ``1 - training_rho``
    and ``amplification`` = their difference (negative: bias amplified); then diversity and
    kNN memorization as for every cell.
    """
    from .colour_mnist import attributes_of
    from .metrics import label_adherence, rho_model

    classifier, classes = _dataset_classifier(classifier_path, train)
    if "labels" not in samples:
        raise ValueError("samples: no conditioning labels (is the model class-conditional?)")
    dataset = str(grid["dataset"])
    x_gen = to_model_range(samples["images"])
    x_train = to_model_range(train["x"])
    n = len(x_gen)
    cond = classes[samples["labels"]]
    idx, probs = predict(classifier, x_gen)
    pred = classes[idx]
    confidence = probs.max(axis=1)
    if bias_classifier_path:
        bias_clf, bias_classes = load_classifier(bias_classifier_path)
        attrs = {"bias": bias_classes[predict(bias_clf, x_gen)[0]]}
    else:
        attrs = attributes_of(samples["images"], dataset, classes)
    main = next(k for k in ("colour", "colour_left", "bias") if k in attrs)
    aligned = attrs[main] == cond
    predictions = pd.DataFrame(
        {
            **{k: [grid.get(k, np.nan)] * n for k in GRID_COLUMNS},
            "sample_index": np.arange(n),
            "seed": samples["seeds"],
            "label": cond.astype(np.int64),
            "pred_class": pred.astype(np.int64),
            "confidence": confidence.astype(np.float64),
            **{attr: ids.astype(np.int64) for attr, ids in attrs.items()},
            "aligned": aligned,
            "is_minority": ~aligned,
        }
    )

    def share_row(metric: str, s: dict[str, Any]) -> dict[str, Any]:
        return {"metric": metric, **{k: s[k] for k in ("value", "ci_low", "ci_high", "n")}}

    adherent = pred == cond
    confident = confidence >= confidence_threshold
    rho_train = float(np.mean(train[main] == train["y"]))
    rows = [
        share_row("rho_model", rho_model(attrs[main], cond)),
        share_row("label_adherence", label_adherence(pred, cond)),
        share_row("rho_model_adherent", rho_model(attrs[main][adherent], cond[adherent])),
        {"metric": "training_rho", "value": rho_train, "n": len(train["y"])},
        _share_row("minority_share", int((~aligned).sum()), n),
        _share_row(
            "minority_share_confident", int((~aligned & confident).sum()), int(confident.sum())
        ),
        _share_row("confident_share", int(confident.sum()), n),
        {"metric": "training_minority_share", "value": 1.0 - rho_train, "n": len(train["y"])},
        {"metric": "amplification", "value": rho_train - float(aligned.mean()), "n": n},
        {"metric": "mean_confidence", "value": float(confidence.mean()), "n": n},
    ]
    if "colour_right" in attrs:
        rows.insert(1, share_row("rho_model_right", rho_model(attrs["colour_right"], cond)))
        rows.append(
            {
                "metric": "training_rho_right",
                "value": float(np.mean(train["colour_right"] == train["y"])),
                "n": len(train["y"]),
            }
        )
    rows += _diversity_memorization_rows(
        x_gen,
        x_train,
        classifier,
        backbone=backbone,
        backbone_weights=backbone_weights,
        lpips_resize=lpips_resize,
        knn_backbone=knn_backbone,
        knn_backbone_weights=knn_backbone_weights,
        knn_k=knn_k,
        train_embeddings=train_embeddings,
    )
    return predictions, _metrics_table(rows, grid)


def train_embeddings(
    train: dict[str, np.ndarray],
    classifier_path: str,
    *,
    backbone: str = "classifier",
    backbone_weights: str | None = None,
    lpips_resize: int = 64,
    knn_backbone: str = "same",
    knn_backbone_weights: str | None = None,
    batch_size: int = 1024,
    **_: Any,
) -> tuple[np.ndarray, str]:
    """Features of a training set in the kNN backbone (``knn_backbone``, or ``backbone`` when
    "same"), computed once and shared by every cell trained on it; and the backbone's name."""
    classifier, _classes = load_classifier(classifier_path)
    name, weights = (
        (backbone, backbone_weights)
        if knn_backbone == "same"
        else (knn_backbone, knn_backbone_weights)
    )
    bb = load_backbone(name, weights_path=weights, resize=lpips_resize, classifier=classifier)
    parts = []
    with torch.no_grad():
        for s in range(0, len(train["x"]), batch_size):
            parts.append(bb.embed(to_model_range(train["x"][s : s + batch_size])).float())
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


def evaluate_any(**kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``evaluate_conditional_cell`` for class-conditional cells, ``evaluate_cell`` otherwise."""
    from .datasets import CONDITIONAL_DATASETS

    if str(kwargs["grid"]["dataset"]) in CONDITIONAL_DATASETS:
        kwargs.pop("group_classifier_path", None)
        return evaluate_conditional_cell(**kwargs)
    kwargs.pop("bias_classifier_path", None)
    return evaluate_cell(**kwargs)


_SORT_COLUMNS = (
    "minority_fraction",
    "train_seed",
    "sampler",
    "steps",
    "eta",
    "s_churn",
    "guidance",
    "bypass",
    "bypass_schedule",
)


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, sampler setting): % minority [95% CI], training %, amplification
    (percentage points), confident share, diversity; for coloured-MNIST cells also rho_model
    [95% CI], the measured training rho and label adherence."""
    keys = [c for c in GRID_COLUMNS if c in metrics.columns]
    out = []
    for key, g in metrics.groupby(keys, sort=False, dropna=False):
        m = {r.metric: r for r in g[g["k"].isna()].itertuples()}
        row = dict(zip(keys, key, strict=True))
        ms = m["minority_share"]
        row["% minority [95% CI]"] = (
            f"{100 * ms.value:.1f} [{100 * ms.ci_low:.1f}, {100 * ms.ci_high:.1f}]"
        )
        row["training %"] = round(100 * m["training_minority_share"].value, 1)
        row["amplification (pp)"] = round(100 * m["amplification"].value, 1)
        row["confident %"] = round(100 * m["confident_share"].value, 1)
        row["diversity"] = round(m["diversity_lpips"].value, 4)
        if "rho_model" in m:  # class-conditional coloured-MNIST cells
            r = m["rho_model"]
            row["rho_model [95% CI]"] = f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
            row["training rho"] = round(m["training_rho"].value, 3)
            row["label adherence %"] = round(100 * m["label_adherence"].value, 1)
        out.append(row)
    table = pd.DataFrame(out)
    drop = [c for c in keys if table[c].nunique(dropna=False) <= 1 and c not in ("depth",)]
    table = table.drop(columns=drop)
    sort_cols = [c for c in table.columns if c in ("dataset", *_SORT_COLUMNS)]

    def sort_key(i: int) -> tuple:
        row = table.iloc[i]
        # (is-missing, value) pairs: NaN-free comparisons across dataset families
        vals = tuple((pd.isna(row[c]), "" if pd.isna(row[c]) else row[c]) for c in sort_cols)
        return vals, depth_sort_key(row["depth"])

    order = sorted(range(len(table)), key=sort_key)
    return table.iloc[order].reset_index(drop=True)
