"""Biased MNIST (ReBias, Bahng et al. 2020) and Multi-Color MNIST, and their bias labeller.

Biased MNIST: a white digit on a background of one of ten palette colours. Digit class ``c``
owns palette colour ``c``; for each class a fraction ``rho`` of its images (rounded to whole
images) gets the own colour and the rest is spread evenly over the other colours in use.
With a subset of classes, the colours in use are the own colours of those classes, so a
conflicting image always carries the colour of another class of the set.

Multi-Color MNIST: the left and right halves of the background get two colours, each drawn as
above with its own ``rho`` (``rho_left``, ``rho_right``) and its own random stream, so the two
halves are independent given the class.

Composition (uint8 in, uint8 out): with ``a = digit / 255``,
``x = bg * (1 - a) + 255 * a``: the background where the digit is dark, white where it is
bright, blended in between.

Labeller (``bias_attribute``): the nearest palette entry (L2 in RGB) to the mean colour of the
*non-white* pixels, i.e. the pixels whose smallest channel is below ``NON_WHITE_BELOW`` (200).
Every palette colour has a channel <= 128, so pure background always counts, while the white
digit (255, 255, 255) and its bright anti-aliased edge (blend weight above ~0.45-0.6,
depending on the colour) do not. An image with no non-white pixel is labelled from the mean of
all its pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from biaslab.base.errors import ConfigError
from biaslab.datasets.common import (
    class_counts_manifest,
    colour_manifest,
    resize_digits,
    rho_of,
    split_heldout,
)
from biaslab.datasets.mnist import DataConfig, embedded_pool, load_source

COLOUR_NAMES: tuple[str, ...] = (
    "red",
    "green",
    "blue",
    "yellow",
    "magenta",
    "cyan",
    "orange",
    "rose",
    "violet",
    "grey",
)

#: RGB of colour ``k``, the own colour of digit ``k`` (ReBias palette).
PALETTE = np.array(
    [
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (225, 225, 0),
        (225, 0, 225),
        (0, 255, 255),
        (255, 128, 0),
        (255, 0, 128),
        (128, 0, 255),
        (128, 128, 128),
    ],
    dtype=np.uint8,
)

#: A pixel is "non-white" (background) when its smallest channel is below this.
NON_WHITE_BELOW = 200


def _classes(classes) -> np.ndarray:
    classes = np.arange(10) if classes is None else np.asarray(classes, dtype=np.int64)
    if classes.ndim != 1 or len(set(classes.tolist())) != len(classes):
        raise ValueError(f"classes: need distinct digits, got {classes}")
    if classes.min() < 0 or classes.max() > 9:
        raise ValueError(f"classes: digits must lie in 0..9, got {classes}")
    return classes


def assign_colours(
    labels: np.ndarray, *, rho: float, classes: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Background colour id per image: per class, ``round(rho * n_c)`` images (chosen at
    random) get the class's own colour; the others cycle through the remaining colours of
    ``classes`` in a random order (an even spread, counts differing by at most one)."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho: {rho} is not in [0, 1]")
    if len(classes) < 2 and rho < 1.0:
        raise ValueError("rho < 1 needs at least two classes (conflicting colours)")
    colour = np.full(len(labels), -1, dtype=np.int64)
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(rho * idx.size)
        colour[idx[:k]] = c
        others = rng.permutation(classes[classes != c])
        colour[idx[k:]] = others[np.arange(idx.size - k) % max(len(others), 1)]
    return colour


def compose(digits: np.ndarray, background: np.ndarray) -> np.ndarray:
    """White digits on coloured backgrounds: ``digits`` uint8 [N, H, W], ``background`` RGB
    uint8 [N, 3] (one colour) or [N, 3, H, W] (per pixel) -> uint8 [N, 3, H, W]."""
    a = digits.astype(np.float32)[:, None] / 255.0
    bg = background.astype(np.float32)
    if bg.ndim == 2:
        bg = bg[:, :, None, None]
    x = bg * (1.0 - a) + 255.0 * a
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _select(digits: np.ndarray, labels: np.ndarray, classes: np.ndarray):
    if digits.ndim != 3 or digits.dtype != np.uint8:
        raise ValueError(f"digits: need uint8 [N, H, W], got {digits.dtype} {digits.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.isin(labels, classes)
    return digits[keep], labels[keep]


def biased_mnist(
    digits: np.ndarray, labels: np.ndarray, *, rho: float, seed: int, classes=None
) -> dict[str, np.ndarray]:
    """Biased MNIST from uint8 digits [N, H, W] (e.g. ``common.resize_digits``
    output) and their
    digit labels; images of classes outside ``classes`` (default all ten) are dropped.

    Returns ``{"x": uint8 [M, 3, H, W], "y": digit [M], "colour": colour id [M],
    "classes": classes}``; deterministic given ``seed``.
    """
    classes = _classes(classes)
    digits, labels = _select(digits, labels, classes)
    colour = assign_colours(labels, rho=rho, classes=classes, rng=np.random.default_rng(seed))
    x = compose(digits, PALETTE[colour])
    return {"x": x, "y": labels, "colour": colour, "classes": classes}


def multicolour_mnist(
    digits: np.ndarray,
    labels: np.ndarray,
    *,
    rho_left: float,
    rho_right: float,
    seed: int,
    classes=None,
) -> dict[str, np.ndarray]:
    """Multi-Color MNIST: left half of the background (columns ``< W // 2``) in one colour,
    right half in another, each aligned with the class at its own rho.

    Returns ``{"x", "y", "colour_left", "colour_right", "classes"}``.
    """
    classes = _classes(classes)
    digits, labels = _select(digits, labels, classes)
    rng_left, rng_right = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    left = assign_colours(labels, rho=rho_left, classes=classes, rng=rng_left)
    right = assign_colours(labels, rho=rho_right, classes=classes, rng=rng_right)
    w = digits.shape[-1]
    bg = np.empty((len(digits), 3, *digits.shape[1:]), dtype=np.uint8)
    bg[..., : w // 2] = PALETTE[left][:, :, None, None]
    bg[..., w // 2 :] = PALETTE[right][:, :, None, None]
    return {
        "x": compose(digits, bg),
        "y": labels,
        "colour_left": left,
        "colour_right": right,
        "classes": classes,
    }


def bias_attribute(
    images: np.ndarray, *, half: str | None = None, colours=None, threshold: int = NON_WHITE_BELOW
) -> np.ndarray:
    """Colour id of each uint8 RGB image [N, 3, H, W]: nearest palette entry (L2) to the mean
    RGB of its non-white pixels (smallest channel ``< threshold``).

    ``half``: None (whole image), "left" (columns ``< W // 2``) or "right" (Multi-Color MNIST).
    ``colours``: restrict the answer to these palette ids (default all ten).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: need RGB [N, 3, H, W], got {images.shape}")
    w = images.shape[-1]
    if half == "left":
        images = images[..., : w // 2]
    elif half == "right":
        images = images[..., w // 2 :]
    elif half is not None:
        raise ValueError(f"half: {half!r} is not None, 'left' or 'right'")
    x = images.reshape(len(images), 3, -1).astype(np.float64)
    mask = x.min(axis=1) < threshold  # [N, P]
    count = mask.sum(axis=1)
    mean = np.where(
        (count > 0)[:, None],
        (x * mask[:, None]).sum(axis=2) / np.maximum(count, 1)[:, None],
        x.mean(axis=2),
    )
    ids = np.arange(10) if colours is None else np.asarray(colours, dtype=np.int64)
    d = ((mean[:, None, :] - PALETTE[ids].astype(np.float64)[None]) ** 2).sum(axis=2)
    return ids[d.argmin(axis=1)]


def _border_mean(images: np.ndarray, half: str | None, ring: int | None) -> np.ndarray:
    """The mean RGB in [0, 1] of each uint8 RGB image's border ring ([N, 3]; ``ring`` px wide,
    default ``W // 8``: no digit reaches it, the 28 px digits are padded to 32 and keep a
    margin), or of one half of it (``half``: None, "left" or "right")."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: need RGB [N, 3, H, W], got {images.shape}")
    h, w = images.shape[-2:]
    r = max(1, w // 8) if ring is None else int(ring)
    mask = np.zeros((h, w), dtype=bool)
    mask[:r], mask[-r:], mask[:, :r], mask[:, -r:] = True, True, True, True
    if half == "left":
        mask[:, w // 2 :] = False
    elif half == "right":
        mask[:, : w // 2] = False
    elif half is not None:
        raise ValueError(f"half: {half!r} is not None, 'left' or 'right'")
    return images.astype(np.float64)[:, :, mask].mean(axis=2) / 255.0


def own_colour_weight(
    images: np.ndarray, colours, own: np.ndarray, *, half: str | None = None, ring=None
) -> np.ndarray:
    """The weight of each image's own palette colour in its background blend, read on the line
    from the mean of the *other* colours to the own one: the background mean ``m`` (border
    ring, ``_border_mean``) written as ``a * c_own + (1 - a) * mean(c_other)`` by least
    squares, ``a`` clipped to [0, 1]. ``colours``: the palette ids of the classes; ``own``:
    per image, the index into ``colours`` of its own colour. Returns float [N].

    This is the blend a model of the data draws: ``assign_colours`` spreads a class's
    conflicting images evenly over the other colours, so the class mean's background is
    ``rho * c_own + (1 - rho) * mean(c_other)`` for any number of colours, where the convex
    decomposition over all K colours is not unique beyond 3 of them (10 colours in RGB).
    Unlike ``bias_attribute`` (the nearest colour, which is the majority colour of a class
    mean whatever its proportion), this reads the blend the probe needs. With 2 colours the
    two readings agree; an unlearned colour (the plain mean of all K) gives ``1 / K``."""
    mean = _border_mean(images, half, ring)
    basis = PALETTE[np.asarray(colours, dtype=np.int64)].astype(np.float64) / 255.0  # [K, 3]
    own = np.asarray(own, dtype=np.int64)
    if own.shape != (len(mean),):
        raise ValueError(f"own: {own.shape} indices for {len(mean)} images")
    k = len(basis)
    rest = (basis.sum(axis=0)[None, :] - basis[own]) / (k - 1)  # [N, 3]
    d = basis[own] - rest
    a = ((mean - rest) * d).sum(axis=1) / (d * d).sum(axis=1)
    return np.clip(a, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Datasets for the pipeline: held-in / held-out split, decorrelated classifier data, skews
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColourDataConfig:
    """A coloured-MNIST dataset drawn from the same digits as ``mnist.DataConfig``."""

    dataset: str = "biased_mnist"  # or "multicolour_mnist"
    source: str = "embedded"
    root: str | None = None
    download: bool = False
    resolution: int = 32
    heldout_fraction: float = 0.2
    split_seed: int = 0
    classes: tuple[int, ...] = tuple(range(10))
    rho_right: float = 0.9
    n_train: int | None = None

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"colour dataset {self.dataset!r} not in {DATASETS}")
        _classes(self.classes)


DATASETS = ("biased_mnist", "multicolour_mnist")


def _colourise(
    digits: np.ndarray,
    y: np.ndarray,
    cfg: ColourDataConfig,
    *,
    rho: float,
    seed: int,
    rho_right: float | None = None,
) -> dict[str, np.ndarray]:
    """Colour ``digits`` at ``rho`` (Multi-Color: left half; right half at ``rho_right``,
    default ``cfg.rho_right``)."""
    if cfg.dataset == "biased_mnist":
        return biased_mnist(digits, y, rho=rho, seed=seed, classes=cfg.classes)
    right = cfg.rho_right if rho_right is None else rho_right
    return multicolour_mnist(
        digits, y, rho_left=rho, rho_right=right, seed=seed, classes=cfg.classes
    )


def make_colour_base(cfg: ColourDataConfig) -> dict[str, np.ndarray]:
    """The digits of ``cfg.classes``, resized and split per class into held-in / held-out
    (``split_seed``), plus a colour-*decorrelated* copy for the evaluation classifier: every
    colour equally likely for every class (rho = 1/K, both halves for Multi-Color), so the
    classifier cannot read the digit from the background.

    Keys: ``digits_in`` (grey uint8 [N, H, W], the pool the skewed sets colour), ``y_in``,
    ``x_in`` / ``x_out`` (decorrelated RGB uint8 [N, 3, H, W]), ``y_out``, ``classes``.
    """
    x, y = load_source(DataConfig(source=cfg.source, root=cfg.root, download=cfg.download))
    classes = _classes(cfg.classes)
    a = split_heldout(
        x, y, classes, cfg.heldout_fraction, cfg.split_seed, f"data.source {cfg.source!r}"
    )
    digits_in = resize_digits(a["x_in"], cfg.resolution)
    digits_out = resize_digits(a["x_out"], cfg.resolution)
    uniform = 1.0 / len(classes)
    seeds = np.random.SeedSequence([cfg.split_seed, 1]).generate_state(2)
    kw = {"rho": uniform, "rho_right": uniform}
    return {
        "digits_in": digits_in,
        "y_in": a["y_in"],
        "x_in": _colourise(digits_in, a["y_in"], cfg, seed=int(seeds[0]), **kw)["x"],
        "x_out": _colourise(digits_out, a["y_out"], cfg, seed=int(seeds[1]), **kw)["x"],
        "y_out": a["y_out"],
        "classes": classes,
    }


def make_colour_train(
    base: dict[str, np.ndarray], cfg: ColourDataConfig, rho: float, *, seed: int
) -> dict[str, np.ndarray]:
    """The training set at alignment ``rho``: the held-in digits (or a class-balanced subset
    of ``cfg.n_train``, the same digits at every rho), coloured by ``biased_mnist`` /
    ``multicolour_mnist`` with seed ``seed``. Keys ``x``, ``y``, ``classes`` and the colour
    ids (``colour`` or ``colour_left`` / ``colour_right``)."""
    y = base["y_in"]
    idx = np.arange(len(y))
    if cfg.n_train is not None:
        classes = base["classes"]
        per_class = cfg.n_train // len(classes)
        rng = np.random.default_rng(seed)
        picks = []
        for c in classes:
            pool = rng.permutation(np.flatnonzero(y == c))
            if pool.size < per_class:
                raise ValueError(
                    f"conditional.n_train: {cfg.n_train} images need {per_class} of digit {c}, "
                    f"but only {pool.size} are held in"
                )
            picks.append(pool[:per_class])
        idx = np.sort(np.concatenate(picks))
    out = _colourise(base["digits_in"][idx], y[idx], cfg, rho=rho, seed=seed)
    out.pop("classes")
    return {**out, "classes": base["classes"]}


def own_weights_of(images: np.ndarray, dataset: str, classes, own: np.ndarray) -> dict:
    """Each image's own-colour weight in its background blend (``own_colour_weight``; ``own``
    the index of its class in ``classes``), keyed as ``attributes_of``: [N] per key."""
    if dataset == "biased_mnist":
        return {"colour": own_colour_weight(images, classes, own)}
    if dataset == "multicolour_mnist":
        return {
            "colour_left": own_colour_weight(images, classes, own, half="left"),
            "colour_right": own_colour_weight(images, classes, own, half="right"),
        }
    raise ValueError(f"colour dataset {dataset!r} not in {DATASETS}")


def attributes_of(images: np.ndarray, dataset: str, classes) -> dict[str, np.ndarray]:
    """The bias attribute(s) of RGB images, restricted to the colours of ``classes``:
    ``{"colour": ids}`` (Biased MNIST) or ``{"colour_left", "colour_right"}``."""
    if dataset == "biased_mnist":
        return {"colour": bias_attribute(images, colours=classes)}
    if dataset == "multicolour_mnist":
        return {
            "colour_left": bias_attribute(images, half="left", colours=classes),
            "colour_right": bias_attribute(images, half="right", colours=classes),
        }
    raise ValueError(f"colour dataset {dataset!r} not in {DATASETS}")


# ------------------------------------------------- the source interface of biaslab.datasets

#: class-conditional models; the skew is the bias-conflicting share ``1 - rho``
CONDITIONAL = True
CHANNELS = 3
#: the kNN features are cached per training set: each rho recolours the digits anew, so the
#: training sets are not subsets of one base set
FEATURES_SCOPE = "train"


def _colour_config(settings: dict[str, Any]) -> ColourDataConfig:
    s = dict(settings)
    s["classes"] = tuple(int(c) for c in s["classes"])
    return ColourDataConfig(**s)


def base(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    return make_colour_base(_colour_config(settings))


def base_manifest(base: dict[str, np.ndarray], grid: dict[str, Any]) -> pd.DataFrame:
    return class_counts_manifest(base, **grid)


def train(
    base: dict[str, np.ndarray], settings: dict[str, Any], fraction: float
) -> dict[str, np.ndarray]:
    """The training set at bias-conflicting share ``fraction`` (rho = 1 - fraction)."""
    seed = int(settings["split_seed"])
    cfg = _colour_config(settings)
    return make_colour_train(base, cfg, rho_of(fraction), seed=seed)


def train_manifest(
    train: dict[str, np.ndarray], grid: dict[str, Any], fraction: float
) -> pd.DataFrame:
    return colour_manifest(train, **grid, rho_data=rho_of(fraction))


# -- the family's card: what the plan checks and builds before any job --------------------
#: Keys of ``data`` a coloured-MNIST family shares with the depth family (the same digits).
_SHARED_DIGIT_KEYS = ("source", "root", "download", "resolution", "heldout_fraction", "split_seed")


def family_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The family of class-conditional Biased MNIST (one background colour per class) or
    Multi-Color MNIST (two halves, ``rho_right`` on the right), from the depth family's
    digits: the settings ``plan.families`` builds it from."""
    data, cond = config["data"], config["conditional"]
    if data["source"] not in ("embedded", "mnist"):
        raise ConfigError(
            "conditional.datasets: coloured MNIST needs MNIST digits "
            "(data.source embedded or mnist)"
        )
    multi = dataset == "multicolour_mnist"
    if data["source"] == "embedded":
        check_colour_sets(config, len(cond["classes"]))
    return dict(
        source=str(data["source"]),
        resolution=int(data["resolution"]),
        res_key="data.resolution",
        classes=list(cond["classes"]),
        data={
            **{k: data[k] for k in _SHARED_DIGIT_KEYS},
            "classes": list(cond["classes"]),
            "rho_right": float(cond["rho_right"]),
            "n_train": cond["n_train"],
        },
        rho_right=float(cond["rho_right"]) if multi else None,
    )


def check_colour_sets(config: Mapping[str, Any], k: int) -> None:
    """Coloured MNIST on the embedded digits: every class of every training set has digits,
    enough of them held in, and at least one bias-conflicting (off-colour) image at each rho;
    ``metrics.knn_k`` fits the training set."""
    cond = config["conditional"]
    pool = embedded_pool(config["data"])
    per_class = pool if cond["n_train"] is None else cond["n_train"] // k
    if not 1 <= per_class <= pool:
        raise ConfigError(
            f"conditional.n_train: {cond['n_train']} images over {k} classes give {per_class} "
            f"per class; between 1 and the {pool} held-in digits per class are possible"
        )
    for rho in cond["rhos"]:
        if per_class - round(rho * per_class) < 1:
            raise ConfigError(
                f"conditional.rhos / conditional.n_train: at rho {rho} no class of "
                f"{per_class} images keeps a bias-conflicting one"
            )
    if max(config["metrics"]["knn_k"]) > per_class * k:
        raise ConfigError(
            f"metrics.knn_k: k = {max(config['metrics']['knn_k'])} exceeds the "
            f"{per_class * k} coloured training images"
        )
