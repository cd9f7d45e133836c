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
from .data import to_model_range
from .grid import GRID_COLUMNS, depth_sort_key
from .metrics import clopper_pearson, knn_similarity, mean_pairwise_lpips


def _share_row(metric: str, k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"metric": metric, "value": k / n if n else np.nan, "ci_low": lo, "ci_high": hi, "n": n}


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate one cell. ``samples``: {"images": uint8 [N, C, H, W], "seeds": [N]};
    ``train``: {"x": uint8 training images, "y": digit labels, "classes": [major, minor]}.
    """
    classifier, classes = load_classifier(classifier_path)
    if list(classes) != [int(c) for c in train["classes"]]:
        raise ValueError(
            f"classifier classes {classes} differ from the dataset's {train['classes']}"
        )
    minor = int(classes[1])
    x_gen = to_model_range(samples["images"])
    x_train = to_model_range(train["x"])
    n = len(x_gen)

    idx, probs = predict(classifier, x_gen)
    pred_class = classes[idx]
    confidence = probs.max(axis=1)
    predictions = pd.DataFrame(
        {
            **{k: [grid[k]] * n for k in GRID_COLUMNS if k in grid},
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
        e_gen, e_train = bb.embed(x_gen), bb.embed(x_train)
    for k, v in knn_similarity(e_gen, e_train, knn_k, metric="cosine").items():
        rows.append({"metric": "knn_cosine", "backbone": bb.name, "k": k, "value": v, "n": n})
    for k, v in knn_similarity(x_gen.flatten(1), x_train.flatten(1), knn_k, "l2").items():
        rows.append({"metric": "knn_l2", "backbone": "pixel", "k": k, "value": v, "n": n})

    metrics = pd.DataFrame(rows)
    for col in ("ci_low", "ci_high"):
        metrics[col] = metrics[col].astype(np.float64)
    metrics["backbone"] = (
        metrics["backbone"].astype(object).where(metrics["backbone"].notna(), None)
    )
    metrics["k"] = metrics["k"].astype("Int64")
    for key in reversed(GRID_COLUMNS):
        if key in grid:
            metrics.insert(0, key, grid[key])
    return predictions, metrics


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, sampler setting): % minority [95% CI], training %, amplification
    (percentage points), confident share, diversity."""
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
        out.append(row)
    table = pd.DataFrame(out)
    drop = [c for c in keys if table[c].nunique() <= 1 and c not in ("depth",)]
    table = table.drop(columns=drop)
    order = sorted(
        range(len(table)),
        key=lambda i: (
            tuple(
                table.iloc[i][c]
                for c in table.columns
                if c in ("minority_fraction", "train_seed", "sampler", "steps", "eta")
            ),
            depth_sort_key(table.iloc[i]["depth"]),
        ),
    )
    return table.iloc[order].reset_index(drop=True)
