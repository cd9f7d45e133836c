"""The attribute of generated images, as a family reads it: the bias attribute of a
class-conditional family (coloured MNIST's background colour, BFFHQ's gender), shared by its
readout (``evaluation.cell.conditional_readout``) and by DiffLens' capture; and the attribute labels
of DiffLens' captured images (``capture_labels``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biaslab.base.images import to_model_range
from biaslab.evaluation.classifier import load_classifier, predict


@dataclass(frozen=True)
class ConditionalAttribute:
    """The bias attribute of class-conditional samples: ``attrs`` the attribute ids per key
    (``colour``; ``colour_left`` / ``colour_right``; ``bias``), ``main`` the key the bias is
    read on, ``values`` the attribute values (the index space of ``probs``), ``probs`` [N, K]
    per-sample probabilities over ``values`` (one-hot for the colour labeller)."""

    attrs: dict[str, np.ndarray]
    main: str
    values: np.ndarray
    probs: np.ndarray

    @property
    def index(self) -> np.ndarray:
        """Each sample's attribute class index into ``values`` (the main attribute)."""
        return self.probs.argmax(axis=1).astype(np.int64)


def conditional_attribute(
    images: np.ndarray,
    dataset: str,
    classes,
    attribute_classifier_path: str | None = None,
    *,
    x: torch.Tensor | None = None,
) -> ConditionalAttribute:
    """The bias attribute of a conditional family's uint8 images, as its readout and DiffLens
    read it: the background colour of coloured MNIST over the colours of ``classes``
    (``colour_mnist.attributes_of``; Multi-Color MNIST's left half is the main one), or
    BFFHQ's gender by the attribute classifier at ``attribute_classifier_path`` (which must
    have two classes). ``x``: the images in model range, when the caller has them."""
    from biaslab.datasets import attributes_of

    if attribute_classifier_path:
        bias_clf, bias_classes = load_classifier(attribute_classifier_path)
        if len(bias_classes) != 2:
            raise ValueError(
                f"{attribute_classifier_path}: the attribute (gender) classifier has "
                f"{len(bias_classes)} classes ({list(bias_classes)}), not 2"
            )
        bias_idx, probs = predict(bias_clf, to_model_range(images) if x is None else x)
        attrs = {"bias": np.asarray(bias_classes)[bias_idx]}
        values = np.asarray(bias_classes)
    else:
        attrs = attributes_of(images, dataset, classes)
        values = np.asarray(classes)  # the labeller's classes: the colours of the classes
        probs = None
    main = next(k for k in ("colour", "colour_left", "bias") if k in attrs)
    if probs is None:
        probs = (attrs[main][:, None] == values[None, :]).astype(np.float64)
    return ConditionalAttribute(attrs, main, values, probs)


def capture_labels(
    images: np.ndarray,
    *,
    n_classes: int,
    classifier_path: str,
    conditional: Mapping[str, Any] | None = None,
    attribute_classifier_path: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attribute class index, probabilities and attribute values of each captured image:
    for the depth family the evaluation classifier's class (``attribute_labels``); for a
    class-conditional family (``conditional``: its ``dataset`` and ``classes``) the bias
    attribute its readout reads (``conditional_attribute``: coloured MNIST's
    background colour, BFFHQ's gender by the attribute classifier), which must have
    ``n_classes`` values."""
    if conditional is None:
        return attribute_labels(images, classifier_path, n_classes)
    ca = conditional_attribute(
        images, conditional["dataset"], conditional["classes"], attribute_classifier_path
    )
    if len(ca.values) != n_classes:
        raise ValueError(
            f"collect_activations: the {conditional['dataset']} bias attribute has "
            f"{len(ca.values)} values ({ca.values.tolist()}), DiffLens here needs {n_classes}"
        )
    return ca.index, np.asarray(ca.probs, dtype=np.float32), np.asarray(ca.values)


def attribute_labels(
    images: np.ndarray, classifier_path: str, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attribute class index and probabilities of each captured image from the evaluation
    classifier, which must have the ``n_classes`` attribute classes; and its classes."""
    classifier, classes = load_classifier(classifier_path)
    if len(classes) != n_classes:
        raise ValueError(
            f"{classifier_path}: the attribute classifier has {len(classes)} classes "
            f"({list(classes)}), DiffLens here needs {n_classes}"
        )
    labels, probs = predict(classifier, to_model_range(images))
    return labels.astype(np.int64), probs, np.asarray(classes)
