"""One entry point per pipeline step for every dataset family, so the workflow scripts do not
branch on the dataset.

* ``mnist69`` (:mod:`.mnist`): two MNIST digits at a minority fraction, unconditional models
  ("Deeper Diffusion Models Amplify Bias");
* ``celeba`` (:mod:`.celeba`): CelebA, class ``Male``, unconditional models (Table 2/3);
* ``biased_mnist`` / ``multicolour_mnist`` (:mod:`.colour_mnist`): coloured MNIST at an
  alignment ``rho``, class-conditional models ("How I Met Your Bias");
* ``bffhq`` (:mod:`.bffhq`): BFFHQ, class = age, bias = gender, class-conditional models at
  a share ``rho`` of gender-aligned images per age class.

For the conditional datasets the skew on the model path is the bias-conflicting share
``minority_fraction = 1 - rho``.

Each source module offers the same interface, looked up in :data:`SOURCES`:

* ``CONDITIONAL``: whether its models are class-conditional;
* ``base(settings)``: the held-in / held-out base set;
* ``base_manifest(base, grid)``: its counts table;
* ``train(base, settings, fraction)``: the training set at minority (bias-conflicting)
  fraction ``fraction``;
* ``train_manifest(train, grid, fraction)``: its counts table;
* optionally ``ATTRIBUTE_TARGET`` (the attribute classifier beside the class classifier) and
  ``same_seed_labels(settings)`` (the labelling of the same-seed figures);
* the family's card, read by the plan before any job: ``family_settings(config, dataset)``
  (class-conditional families: source, resolution, classes, data settings), and optionally
  ``check_config(config)`` / ``check_files(config)`` (its settings and files, raising
  ``ConfigError`` naming the key), ``check_training_sets(config, fractions)`` (depth
  families) and ``attributes_of`` / ``own_weights_of`` (a labeller of its bias attribute).

Adding a dataset: one module with that interface, one entry in :data:`SOURCES` and its schema
section. Shared helpers live in :mod:`.common`, the subpackage's leaf.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from biaslab.datasets import bffhq, celeba, colour_mnist, mnist
from biaslab.datasets.common import class_indices, rho_of

__all__ = [
    "ATTRIBUTE_TARGETS",
    "CONDITIONAL_DATASETS",
    "SOURCES",
    "attributes_of",
    "build_base",
    "build_train",
    "class_indices",
    "classifier_view",
    "facts",
    "own_weights_of",
    "rho_of",
    "same_seed_labels",
]

#: dataset name -> its source module
SOURCES: dict[str, ModuleType] = {
    "mnist69": mnist,
    **dict.fromkeys(colour_mnist.DATASETS, colour_mnist),
    "bffhq": bffhq,
    "celeba": celeba,
}

CONDITIONAL_DATASETS = tuple(name for name, src in SOURCES.items() if src.CONDITIONAL)
#: attribute classifiers beside the class classifier: (target, dataset)
ATTRIBUTE_TARGETS = {
    src.ATTRIBUTE_TARGET: name for name, src in SOURCES.items() if hasattr(src, "ATTRIBUTE_TARGET")
}


def _source(dataset: str) -> ModuleType:
    """The source module of ``dataset``; names outside :data:`SOURCES` go to the MNIST builder,
    whose ``DataConfig`` / ``load_source`` then answer."""
    return SOURCES.get(dataset, mnist)


def facts(dataset: str) -> dict[str, Any]:
    """What the plan needs to know of a dataset's source: image channels, where its kNN
    features are cached ("base": the base set, which every skew indexes into; "train": per
    training set) and its attribute classifiers beside the class classifier."""
    src = SOURCES[dataset]
    target = getattr(src, "ATTRIBUTE_TARGET", None)
    return {
        "channels": int(src.CHANNELS),
        "features_scope": getattr(src, "FEATURES_SCOPE", "base"),
        "attribute_targets": (target,) if target else (),
    }


def attributes_of(images: np.ndarray, dataset: str, classes) -> dict[str, np.ndarray]:
    """The bias attribute(s) of a family's images by its own labeller (its card's
    ``attributes_of``: coloured MNIST's background colours); families whose bias is read by an
    attribute classifier (``ATTRIBUTE_TARGET``) have none."""
    return SOURCES[dataset].attributes_of(images, dataset, classes)


def own_weights_of(images: np.ndarray, dataset: str, classes, own: np.ndarray) -> dict:
    """Each image's weight of its own attribute value (its card's ``own_weights_of``), keyed
    as ``attributes_of``: what the probe reads of a colour blend."""
    return SOURCES[dataset].own_weights_of(images, dataset, classes, own)


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
    minority; MNIST (and any dataset without a labelling of its own): the two digits."""
    src = _source(settings["dataset"])
    return getattr(src, "same_seed_labels", mnist.same_seed_labels)(settings)


def _data_grid(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": settings["dataset"],
        "source": settings.get("source", settings["dataset"]),
        "resolution": settings["resolution"],
    }


def build_base(settings: dict[str, Any]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The held-in / held-out base set of ``settings["dataset"]`` and its manifest."""
    grid = _data_grid(settings)
    src = _source(settings["dataset"])
    base = src.base(settings)
    return base, src.base_manifest(base, grid)


def build_train(
    base: dict[str, np.ndarray], settings: dict[str, Any], fraction: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The training set at minority (bias-conflicting) fraction ``fraction`` and its manifest."""
    grid = {
        **_data_grid(settings),
        "minority_fraction": float(fraction),
    }
    src = _source(settings["dataset"])
    train = src.train(base, settings, fraction)
    return train, src.train_manifest(train, grid, fraction)
