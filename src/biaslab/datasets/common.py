"""Helpers more than one dataset source uses: the seeded held-in / held-out split, the skew
counts, the manifests, digit resizing and face-image decoding.

The leaf of ``biaslab.datasets``: imports nothing from biaslab. torch, PIL and torchvision are
imported lazily, by the resizing and face-image helpers only: the Snakefile's parse imports
this package (the config checks), and parsing imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def resize_digits(images: np.ndarray, resolution: int) -> np.ndarray:
    """Pad 28x28 digits to 32x32 with zeros, then area-resize to ``resolution`` (uint8)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float()[:, None]
    if x.shape[-1] == 28:
        x = F.pad(x, (2, 2, 2, 2))
    if x.shape[-1] != resolution:
        mode = "area" if resolution < x.shape[-1] else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(resolution, resolution), mode=mode, **kw)
    return x.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()


def prepare_face(image, resolution: int, crop: int | None = None) -> np.ndarray:
    """PIL image -> uint8 [3, resolution, resolution]: RGB, center crop ``crop x crop`` (None:
    none), then resize with PIL's antialiased bilinear filter (torchvision's ``resize``)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    image = image.convert("RGB")
    if crop is not None:
        if min(image.size) < crop:
            raise ValueError(f"image of size {image.size} is smaller than the crop {crop}")
        image = TF.center_crop(image, [crop, crop])
    if image.size != (resolution, resolution):
        image = TF.resize(
            image, [resolution, resolution], InterpolationMode.BILINEAR, antialias=True
        )
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def open_image(path: Path, resolution: int, crop: int | None, key: str) -> np.ndarray:
    """Decode one face image file with :func:`prepare_face`; errors name ``key`` and ``path``."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{key}: image {path} not found")
    try:
        with Image.open(path) as im:
            im.load()
            return prepare_face(im, resolution, crop)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{key}: cannot read image {path} ({e}); re-copy the file") from e


def heldout_size(n: int, heldout_fraction: float, what: str) -> int:
    """How many of ``n`` images are held out: ``round(heldout_fraction * n)``; a split that
    leaves either side empty is an error naming ``what`` the ``n`` images are."""
    n_out = round(heldout_fraction * n)
    if not 0 < n_out < n:
        empty = "held-out" if n_out == 0 else "held-in"
        raise ValueError(
            f"heldout_fraction: {heldout_fraction} of the {n} {what} leaves the {empty} split empty"
        )
    return n_out


def split_heldout(
    x: np.ndarray,
    y: np.ndarray,
    classes,
    heldout_fraction: float,
    seed: int,
    what: str,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per class, a seeded permutation cut into held-out (``heldout_fraction``) and held-in.

    ``extra``: further per-image arrays (say, attribute groups) split the same way, returned as
    ``<name>_in`` / ``<name>_out``."""
    arrays = {"x": x, "y": y, **(extra or {})}
    out: dict[str, list[np.ndarray]] = {f"{k}_{p}": [] for k in arrays for p in ("in", "out")}
    rng = np.random.default_rng(seed)
    for c in classes:
        idx = np.flatnonzero(y == c)
        if idx.size == 0:
            raise ValueError(f"{what} has no images of class {c}")
        idx = rng.permutation(idx)
        n_out = heldout_size(idx.size, heldout_fraction, f"images of class {c} in {what}")
        for k, a in arrays.items():
            out[f"{k}_out"].append(a[idx[:n_out]])
            out[f"{k}_in"].append(a[idx[n_out:]])
    return {k: np.concatenate(v) for k, v in out.items()}


def skewed_counts(
    n_major: int, n_minor: int, fraction: float, n_train: int | None
) -> tuple[int, int]:
    """Counts (majority, minority) with minority share ``fraction``.

    With ``n_train`` None, the largest set the held-in pool allows.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"minority_fractions: {fraction} is not in (0, 1)")
    total = (
        n_train if n_train is not None else int(min(n_major / (1 - fraction), n_minor / fraction))
    )
    k_min = round(total * fraction)
    k_maj = total - k_min
    if k_maj > n_major or k_min > n_minor:
        raise ValueError(
            f"data.n_train: {total} images at minority fraction {fraction} need {k_maj} majority "
            f"and {k_min} minority images, but only {n_major} and {n_minor} are held in"
        )
    return k_maj, k_min


def rho_of(fraction: float) -> float:
    """rho_data of a conditional dataset from its bias-conflicting share."""
    return round(1.0 - float(fraction), 10)


def rho_counts(
    n_aligned: np.ndarray, n_conflict: np.ndarray, rho: float, n_per_class: int | None
) -> tuple[int, int]:
    """Per-class counts (aligned, conflicting) with aligned share ``rho``, the same for every
    class; ``n_per_class`` None takes the largest that every class's pool allows."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho: {rho} is not in [0, 1]")
    if n_per_class is None:
        caps = []
        for a, c in zip(n_aligned, n_conflict, strict=True):
            cap_a = a / rho if rho > 0 else np.inf
            cap_c = c / (1 - rho) if rho < 1 else np.inf
            caps.append(min(cap_a, cap_c))
        n_per_class = int(min(caps))
    k_align = round(n_per_class * rho)
    k_conf = n_per_class - k_align
    for cls, (a, c) in enumerate(zip(n_aligned, n_conflict, strict=True)):
        if k_align > a or k_conf > c:
            raise ValueError(
                f"data.n_per_class: {n_per_class} images per class at rho {rho} need {k_align} "
                f"aligned and {k_conf} conflicting images of class {cls}, but the pool has "
                f"{a} and {c}"
            )
    if n_per_class < 1:
        raise ValueError(f"rho {rho}: the pool leaves no images per class")
    return k_align, k_conf


def rho_indices(
    target: np.ndarray,
    bias: np.ndarray,
    rho: float,
    *,
    n_per_class: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of a class-balanced subset in which a share ``rho`` of each target
    class is bias-aligned (``bias == target``). Fixed per-(class, aligned) permutations by
    ``seed`` are cut at the counts, so subsets at different rho share what they can."""
    target, bias = np.asarray(target), np.asarray(bias)
    classes = np.unique(target)
    rng = np.random.default_rng(seed)
    pools = []
    for c in classes:
        al = rng.permutation(np.flatnonzero((target == c) & (bias == c)))
        co = rng.permutation(np.flatnonzero((target == c) & (bias != c)))
        pools.append((al, co))
    k_al, k_co = rho_counts(
        np.array([a.size for a, _ in pools]), np.array([c.size for _, c in pools]), rho, n_per_class
    )
    return np.sort(np.concatenate([np.concatenate([a[:k_al], c[:k_co]]) for a, c in pools]))


def aligned_pool_base(
    x: np.ndarray, target: np.ndarray, bias: np.ndarray, settings: dict[str, Any], name: str
) -> dict[str, np.ndarray]:
    """A class-conditional family's base set from a pool of images with a binary class
    ``target`` and a binary bias attribute ``bias`` (aligned: ``bias == target``), split per
    (class, bias) group into held-in / held-out; the classifiers' sets are the largest
    bias-balanced (rho = 0.5) subsets of each part, so neither the class nor the attribute
    classifier can read one off the other.

    Keys: ``pool_x``, ``pool_y``, ``pool_bias``: the held-in pool the training sets are drawn
    from; ``x_in``/``y_in``/``bias_in`` and ``x_out``/``y_out``/``bias_out``: the decorrelated
    classifier sets; ``classes`` [0, 1]."""
    group = 2 * np.asarray(target) + np.asarray(bias)
    a = split_heldout(
        x, group, range(4), settings["heldout_fraction"], settings["split_seed"], name
    )
    out = {
        "pool_x": a["x_in"],
        "pool_y": a["y_in"] // 2,
        "pool_bias": a["y_in"] % 2,
        "classes": np.array([0, 1], dtype=np.int64),
    }
    for part in ("in", "out"):
        t, b = a[f"y_{part}"] // 2, a[f"y_{part}"] % 2
        idx = rho_indices(t, b, 0.5, seed=int(settings["split_seed"]))
        out[f"x_{part}"], out[f"y_{part}"], out[f"bias_{part}"] = (
            a[f"x_{part}"][idx],
            t[idx],
            b[idx],
        )
    return out


def aligned_pool_train(
    base: dict[str, np.ndarray], settings: dict[str, Any], rho: float
) -> dict[str, np.ndarray]:
    """The training set at aligned share ``rho``, drawn from the held-in pool of
    :func:`aligned_pool_base`; ``base_index`` = its rows of the pool."""
    idx = rho_indices(
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


def class_indices(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Digit labels -> indices into ``classes`` (the conditioning labels of a model)."""
    lookup = {int(c): i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[int(v)] for v in y], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"label {e.args[0]} is not among the classes {list(classes)}") from None


# ---------------------------------------------------------------------------------- manifests


def manifest(arrays_by_split: dict[str, np.ndarray], classes: np.ndarray, **grid) -> pd.DataFrame:
    """Counts per class and split of a two-class (majority, minority) dataset, tidy: one row
    per (split, class)."""
    rows = []
    major, minor = (int(c) for c in classes)
    for split, y in arrays_by_split.items():
        for c, role in ((major, "majority"), (minor, "minority")):
            count = int((y == c).sum())
            rows.append(
                {
                    **grid,
                    "split": split,
                    "class": c,
                    "role": role,
                    "count": count,
                    "share": count / max(len(y), 1),
                }
            )
    return pd.DataFrame(rows)


def class_counts_manifest(base: dict[str, np.ndarray], **grid) -> pd.DataFrame:
    """Counts per class of the held-in / held-out base set of a conditional dataset, tidy: one
    row per (split, class)."""
    return pd.DataFrame(
        [
            {**grid, "split": split, "class": int(c), "count": int((y == c).sum())}
            for split, y in (("heldin", base["y_in"]), ("heldout", base["y_out"]))
            for c in base["classes"]
        ]
    )


def colour_manifest(train: dict[str, np.ndarray], **grid) -> pd.DataFrame:
    """Counts per (class, bias attribute, aligned) of a conditional training set, tidy: the
    colour ids of coloured MNIST, or ``bias`` (BFFHQ gender); aligned = attribute == class."""
    rows = []
    attrs = [k for k in ("colour", "colour_left", "colour_right", "bias") if k in train]
    for attr in attrs:
        aligned = train[attr] == train["y"]
        for c in train["classes"]:
            m = train["y"] == c
            for flag in (True, False):
                count = int((m & (aligned == flag)).sum())
                rows.append(
                    {
                        **grid,
                        "attribute": attr,
                        "class": int(c),
                        "aligned": flag,
                        "count": count,
                        "share_of_class": count / max(int(m.sum()), 1),
                    }
                )
    return pd.DataFrame(rows)
