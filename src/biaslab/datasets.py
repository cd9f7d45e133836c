"""One entry point per pipeline step for every dataset family, so the workflow scripts do not
branch on the dataset.

* ``mnist69`` (``biaslab.data``): two MNIST digits at a minority fraction, unconditional
  models ("Deeper Diffusion Models Amplify Bias");
* ``biased_mnist`` / ``multicolour_mnist`` (``biaslab.colour_mnist``): coloured MNIST at an
  alignment ``rho``, class-conditional models ("How I Met Your Bias"). On the model path the
  skew is the bias-conflicting share ``minority_fraction = 1 - rho``.
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


def is_colour(dataset: str) -> bool:
    return dataset in COLOUR_DATASETS


def rho_of(fraction: float) -> float:
    """rho_data of a coloured dataset from its bias-conflicting share."""
    return round(1.0 - float(fraction), 10)


def _colour_config(settings: dict[str, Any]) -> ColourDataConfig:
    s = dict(settings)
    s["classes"] = tuple(int(c) for c in s["classes"])
    return ColourDataConfig(**s)


def build_base(settings: dict[str, Any]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The held-in / held-out base set of ``settings["dataset"]`` and its manifest."""
    grid = {k: settings[k] for k in ("dataset", "source", "resolution")}
    if is_colour(settings["dataset"]):
        base = make_colour_base(_colour_config(settings))
    else:
        base = make_base(DataConfig(**settings))
    if len(base["classes"]) == 2:
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
        **{k: settings[k] for k in ("dataset", "source", "resolution")},
        "minority_fraction": float(fraction),
    }
    seed = int(settings["split_seed"])
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
