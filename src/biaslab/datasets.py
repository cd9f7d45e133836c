"""One entry point per pipeline step for every dataset family, so the workflow scripts do not
branch on the dataset.

* ``mnist69`` (``biaslab.data``): two MNIST digits at a minority fraction, unconditional
  models ("Deeper Diffusion Models Amplify Bias");
* ``celeba`` (``biaslab.faces``): CelebA, class ``Male``, unconditional models (Table 2/3);
* ``biased_mnist`` / ``multicolour_mnist`` (``biaslab.colour_mnist``): coloured MNIST at an
  alignment ``rho``, class-conditional models ("How I Met Your Bias");
* ``bffhq`` (``biaslab.faces``): BFFHQ, class = age, bias = gender, class-conditional models at
  a share ``rho`` of gender-aligned images per age class.

For the conditional datasets the skew on the model path is the bias-conflicting share
``minority_fraction = 1 - rho``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .colour_mnist import DATASETS as COLOUR_DATASETS
from .colour_mnist import (
    ColourDataConfig,
    colour_manifest,
    make_colour_base,
    make_colour_train,
)
from .data import DataConfig, make_base, make_skewed, manifest

CONDITIONAL_DATASETS = (*COLOUR_DATASETS, "bffhq")
#: attribute classifiers beside the class classifier: (target, dataset)
ATTRIBUTE_TARGETS = {"bias": "bffhq", "group": "celeba"}


def is_colour(dataset: str) -> bool:
    return dataset in COLOUR_DATASETS


def _bffhq_base(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """BFFHQ pool (``parts``) split per (age, gender) group into held-in / held-out; the
    classifiers' sets are the largest gender-balanced (rho = 0.5) subsets of each part, so
    neither the age nor the gender classifier can read one attribute off the other.

    Keys: ``pool_x``, ``pool_y`` (age), ``pool_bias`` (gender): the held-in pool the training
    sets are drawn from; ``x_in``/``y_in``/``bias_in`` and ``x_out``/``y_out``/``bias_out``:
    the decorrelated classifier sets; ``classes`` [0, 1]."""
    from .data import split_heldout
    from .faces import BFFHQConfig, bffhq_rho_indices, load_bffhq

    pool = load_bffhq(
        BFFHQConfig(
            root=settings["root"],
            parts=tuple(settings["parts"]),
            resolution=int(settings["resolution"]),
        )
    )
    group = 2 * pool["target"] + pool["bias"]
    a = split_heldout(
        pool["x"], group, range(4), settings["heldout_fraction"], settings["split_seed"], "BFFHQ"
    )
    out = {
        "pool_x": a["x_in"],
        "pool_y": a["y_in"] // 2,
        "pool_bias": a["y_in"] % 2,
        "classes": np.array([0, 1], dtype=np.int64),
    }
    for part in ("in", "out"):
        t, b = a[f"y_{part}"] // 2, a[f"y_{part}"] % 2
        idx = bffhq_rho_indices(t, b, 0.5, seed=int(settings["split_seed"]))
        out[f"x_{part}"], out[f"y_{part}"], out[f"bias_{part}"] = (
            a[f"x_{part}"][idx],
            t[idx],
            b[idx],
        )
    return out


def _bffhq_train(
    base: dict[str, np.ndarray], settings: dict[str, Any], rho: float
) -> dict[str, np.ndarray]:
    from .faces import bffhq_rho_indices

    idx = bffhq_rho_indices(
        base["pool_y"],
        base["pool_bias"],
        rho,
        n_per_class=settings.get("n_per_class"),
        seed=int(settings["split_seed"]),
    )
    return {
        "x": base["pool_x"][idx],
        "y": base["pool_y"][idx],
        "bias": base["pool_bias"][idx],
        "classes": base["classes"],
        "base_index": np.asarray(idx, dtype=np.int64),
    }


def classifier_view(base: dict[str, np.ndarray], target: str) -> dict[str, np.ndarray]:
    """What an evaluation classifier trains on: the class (``target="class"``); for BFFHQ the
    bias attribute (``"bias"``: gender) of the decorrelated held-in / held-out sets; for CelebA
    the four ``Male x Blond_Hair`` groups (``"group"``)."""
    if target == "class":
        return base
    if target not in ATTRIBUTE_TARGETS or f"{target}_in" not in base:
        raise ValueError(
            f"classifier target {target!r}: only 'class', 'bias' for BFFHQ or 'group' for CelebA"
        )
    n = 2 if target == "bias" else len(base["group_names"])
    return {
        "x_in": base["x_in"],
        "y_in": base[f"{target}_in"],
        "x_out": base["x_out"],
        "y_out": base[f"{target}_out"],
        "classes": np.arange(n, dtype=np.int64),
    }


def same_seed_labels(settings: dict[str, Any]) -> dict[str, Any]:
    """How the same-seed figures (paper Figs. 5 and A) label the samples of a depth-family
    dataset: the predictions column, the label names, and the minority label(s) whose seeds
    Fig. A shows. CelebA: the four ``Male x Blond_Hair`` groups with "blond male" as the
    minority; MNIST: the two digits."""
    if settings["dataset"] == "celeba":
        from .faces import CELEBA_CLASSES

        names = [n.replace("_", " ") for n in CELEBA_CLASSES["male_blond"][1]]
        return {
            "column": "pred_group",
            "names": dict(enumerate(names)),
            "minority": [names.index("male blond")],
        }
    major, minor = int(settings["majority_class"]), int(settings["minority_class"])
    return {
        "column": "pred_class",
        "names": {major: str(major), minor: str(minor)},
        "minority": [minor],
    }


def rho_of(fraction: float) -> float:
    """rho_data of a coloured dataset from its bias-conflicting share."""
    return round(1.0 - float(fraction), 10)


def _colour_config(settings: dict[str, Any]) -> ColourDataConfig:
    s = dict(settings)
    s["classes"] = tuple(int(c) for c in s["classes"])
    return ColourDataConfig(**s)


def _data_grid(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": settings["dataset"],
        "source": settings.get("source", settings["dataset"]),
        "resolution": settings["resolution"],
    }


def build_base(settings: dict[str, Any]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The held-in / held-out base set of ``settings["dataset"]`` and its manifest."""
    grid = _data_grid(settings)
    if settings["dataset"] == "bffhq":
        base = _bffhq_base(settings)
    elif is_colour(settings["dataset"]):
        base = make_colour_base(_colour_config(settings))
    else:
        base = make_base(DataConfig(**settings))
    if settings["dataset"] not in CONDITIONAL_DATASETS:
        table = manifest(
            {"heldin": base["y_in"], "heldout": base["y_out"]}, base["classes"], **grid
        )
    else:
        table = pd.DataFrame(
            [
                {**grid, "split": split, "class": int(c), "count": int((y == c).sum())}
                for split, y in (("heldin", base["y_in"]), ("heldout", base["y_out"]))
                for c in base["classes"]
            ]
        )
    return base, table


def build_train(
    base: dict[str, np.ndarray], settings: dict[str, Any], fraction: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The training set at minority (bias-conflicting) fraction ``fraction`` and its manifest."""
    grid = {
        **_data_grid(settings),
        "minority_fraction": float(fraction),
    }
    seed = int(settings["split_seed"])
    if settings["dataset"] == "bffhq":
        rho = rho_of(fraction)
        train = _bffhq_train(base, settings, rho)
        return train, colour_manifest(train, **grid, rho_data=rho)
    if is_colour(settings["dataset"]):
        cfg = _colour_config(settings)
        rho = rho_of(fraction)
        train = make_colour_train(base, cfg, rho, seed=seed)
        return train, colour_manifest(train, **grid, rho_data=rho)
    train = make_skewed(base, fraction, n_train=settings["n_train"], seed=seed)
    return train, manifest({"train": train["y"]}, train["classes"], **grid)


def class_indices(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Digit labels -> indices into ``classes`` (the conditioning labels of a model)."""
    lookup = {int(c): i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[int(v)] for v in y], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"label {e.args[0]} is not among the classes {list(classes)}") from None
