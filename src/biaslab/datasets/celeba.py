"""CelebA (aligned and cropped release) from local files: Table 2, Fig. 5, Table 3; class
``Male``, unconditional models.

Nothing here downloads anything. The loader reads a local directory (the config key
``data.root``) and fails before any work with an error that names the missing or broken file
and the layout expected.

CelebA is read through ``torchvision.datasets.CelebA`` with ``download=False``. torchvision
expects, under ``<data.root>/celeba/``::

    img_align_celeba/000001.jpg ... 202599.jpg
    list_attr_celeba.txt              line 1: count; line 2: the 40 attribute names;
                                      then "<file> <40 values of 1 or -1>"
    list_eval_partition.txt           "<file> <0|1|2>"  (0 train, 1 valid, 2 test)
    identity_CelebA.txt               "<file> <identity>"
    list_bbox_celeba.txt              line 1: count; line 2: "image_id x_1 y_1 width height"
    list_landmarks_align_celeba.txt   line 1: count; line 2: 10 landmark names

(``img_align_celeba.zip`` may be deleted once extracted.) torchvision's own check compares the
MD5 of the five text files with the released ones and answers "Dataset not found or
corrupted" without saying which file; here every file is checked first, by name:
existence, then (``verify_md5``) the released MD5 from torchvision's file list, then the
structure of each text file (line counts and widths). Images are center-cropped to
``crop x crop`` (178, the width of the aligned images) and resized to ``resolution`` with PIL's
antialiased bilinear filter, as uint8 ``[N, 3, H, W]``.

Classes from attributes (``classes``):

* ``"male"``: 0 = female, 1 = male (attribute ``Male``; 41.68% of the images are male);
* ``"male_blond"``: 4 groups ``2 * Male + Blond_Hair``: 0 female not blond, 1 female blond,
  2 male not blond, 3 male blond.

In the pipeline CelebA is a depth-family dataset like ``mnist69``: its settings are a
``biaslab.datasets.mnist.DataConfig`` and its training sets the same nested skews
(``mnist.make_skewed``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biaslab.base.errors import ConfigError, as_config_error
from biaslab.datasets.common import open_image, split_heldout
from biaslab.datasets.mnist import (
    CONDITIONAL,
    DataConfig,
    base_manifest,
    train,
    train_manifest,
    two_classes,
)

__all__ = [
    "ATTRIBUTE_TARGET",
    "CELEBA_ANNOTATIONS",
    "CELEBA_CLASSES",
    "CELEBA_FILES",
    "CONDITIONAL",
    "CelebAConfig",
    "base",
    "base_manifest",
    "check_celeba_root",
    "load_celeba",
    "make_base",
    "same_seed_labels",
    "train",
    "train_manifest",
]

#: text files torchvision's CelebA reads, with their released MD5 (torchvision's file list)
CELEBA_ANNOTATIONS = {
    "list_attr_celeba.txt": "75e246fa4810816ffd6ee81facbd244c",
    "identity_CelebA.txt": "32bd1bd63d3c78cd57e08160ec5ed1e2",
    "list_bbox_celeba.txt": "00566efa6fedff7a56946cd1c10f1c16",
    "list_landmarks_align_celeba.txt": "cc24ecafdb5b50baae59b03474781f8c",
    "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
}
CELEBA_IMAGE_DIR = "img_align_celeba"
#: what torchvision's CelebA loader reads under ``<data.root>/celeba/``
CELEBA_FILES = (CELEBA_IMAGE_DIR, *CELEBA_ANNOTATIONS)
CELEBA_SPLITS = ("train", "valid", "test", "all")

#: class layouts: (attributes combined as binary digits, class names)
CELEBA_CLASSES = {
    "male": (("Male",), ("female", "male")),
    "male_blond": (
        ("Male", "Blond_Hair"),
        ("female_not_blond", "female_blond", "male_not_blond", "male_blond"),
    ),
}

# (has a count line + header line, number of values after the file name, allowed values)
_CELEBA_FORMAT = {
    "list_eval_partition.txt": (False, 1, {0, 1, 2}),
    "identity_CelebA.txt": (False, 1, None),
    "list_bbox_celeba.txt": (True, 4, None),
    "list_landmarks_align_celeba.txt": (True, 10, None),
    "list_attr_celeba.txt": (True, 40, {-1, 1}),
}

_CELEBA_LAYOUT = (
    "expected layout: <data.root>/celeba/{img_align_celeba/*.jpg, "
    + ", ".join(CELEBA_ANNOTATIONS)
    + "} (the aligned-and-cropped CelebA release, unpacked)"
)


@dataclass(frozen=True)
class CelebAConfig:
    root: str | None = None
    split: str = "train"
    classes: str = "male"
    resolution: int = 64
    crop: int = 178
    max_images: int | None = None
    subset_seed: int = 0
    verify_md5: bool = True


def _celeba_dir(root: str | Path | None) -> Path:
    if not root:
        raise ValueError("data.root: required for CelebA (the folder that holds celeba/)")
    return Path(root) / "celeba"


def _bad_value(token: str, allowed: set[int] | None) -> bool:
    """Whether ``token`` is not an integer (in ``allowed``, when given)."""
    try:
        value = int(token)
    except ValueError:
        return True
    return allowed is not None and value not in allowed


def _check_celeba_text(path: Path) -> list[str]:
    """Check one annotation file's structure; return its file names in order."""
    header, width, allowed = _CELEBA_FORMAT[path.name]
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"data.root: {path} is not a text file ({e}); re-copy it") from None
    start = 0
    count = None
    if header:
        if len(lines) < 2:
            raise ValueError(f"data.root: {path} is truncated (no count and header lines)")
        try:
            count = int(lines[0].strip())
        except ValueError:
            raise ValueError(
                f"data.root: {path} line 1 should be the image count, got {lines[0]!r}"
            ) from None
        names = lines[1].split()
        if len(names) not in (width, width + 1):  # the bbox header also names image_id
            raise ValueError(
                f"data.root: {path} line 2 should hold {width} column names, got {len(names)}"
            )
        start = 2
    files, tokens = [], set()
    for n, line in enumerate(lines[start:], start=start + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width + 1:
            raise ValueError(
                f"data.root: {path} line {n}: expected a file name and {width} values, got "
                f"{len(parts) - 1} (truncated or corrupt file?)"
            )
        tokens.update(parts[1:])
        files.append(parts[0])
    # each distinct value is parsed once (the attribute file has 8 million); a bad one is
    # looked up again to name its line
    bad = {t for t in tokens if _bad_value(t, allowed)}
    if bad:
        for n, line in enumerate(lines[start:], start=start + 1):
            wrong = [t for t in line.split()[1:] if t in bad]
            if not wrong:
                continue
            if any(_bad_value(t, None) for t in wrong):
                raise ValueError(f"data.root: {path} line {n}: non-integer value")
            raise ValueError(
                f"data.root: {path} line {n}: values must be in {sorted(allowed)}, got "
                f"{sorted({int(t) for t in wrong})}"
            )
    if count is not None and count != len(files):
        raise ValueError(
            f"data.root: {path} announces {count} images on line 1 but lists {len(files)} "
            "(truncated or corrupt file?)"
        )
    return files


#: annotation files in the order they are checked: those with a count line first
_CELEBA_CHECK_ORDER = (
    "list_attr_celeba.txt",
    "list_bbox_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "list_eval_partition.txt",
    "identity_CelebA.txt",
)
#: image files checked for zero bytes (one stat each): an evenly spaced sample of this many
CELEBA_STAT_SAMPLE = 1000


def _check_celeba_images(base: Path, names: list[str]) -> None:
    """Every image named by the annotation files is in ``img_align_celeba`` (one directory
    listing); an evenly spaced sample of :data:`CELEBA_STAT_SAMPLE` of them is not empty."""
    folder = base / CELEBA_IMAGE_DIR
    present = set(os.listdir(folder))
    missing = [n for n in names if n not in present]
    if missing:
        shown = ", ".join(str(folder / n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"data.root: {len(missing)} of the {len(names)} images listed in the annotation "
            f"files of {base} are not in {folder}: {shown}{more}; "
            f"{_CELEBA_LAYOUT}"
        )
    step = max(1, len(names) // CELEBA_STAT_SAMPLE)
    for n in names[::step]:
        if (folder / n).stat().st_size == 0:
            raise ValueError(f"data.root: image {folder / n} is empty (0 bytes); re-copy it")


def check_celeba_root(root: str | Path | None, *, verify_md5: bool = True) -> Path:
    """Check the CelebA files under ``<root>/celeba`` before torchvision reads them; return that
    folder. Raises FileNotFoundError naming every missing path (or the listed images missing
    from ``img_align_celeba``), ValueError naming a file that is empty, whose MD5
    (``verify_md5``) or structure is wrong (count line, widths, values), or whose image list
    disagrees with the one most of the five files list (row count, names, order); every listed
    image must be in ``img_align_celeba`` and a sample of them is checked for zero bytes."""
    base = _celeba_dir(root)
    wanted = [base / CELEBA_IMAGE_DIR] + [base / f for f in CELEBA_ANNOTATIONS]
    missing = [p for p in wanted if not (p.is_dir() if p.name == CELEBA_IMAGE_DIR else p.is_file())]
    if missing:
        raise FileNotFoundError(
            f"data.root={str(root)!r}: CelebA files not found: "
            + ", ".join(str(p) for p in missing)
            + f"; {_CELEBA_LAYOUT}. Nothing is downloaded at run time."
        )
    for name in CELEBA_ANNOTATIONS:
        if (base / name).stat().st_size == 0:
            raise ValueError(f"data.root: {base / name} is empty (0 bytes); re-copy it")
    if verify_md5:
        from torchvision.datasets.utils import calculate_md5

        for name, md5 in CELEBA_ANNOTATIONS.items():
            got = calculate_md5(str(base / name))
            if got != md5:
                raise ValueError(
                    f"data.root: {base / name} differs from the released file (md5 {got}, "
                    f"expected {md5}); re-copy it, or set data.verify_md5: false to use a "
                    "modified annotation file"
                )
    lists = {name: _check_celeba_text(base / name) for name in _CELEBA_CHECK_ORDER}
    # the image list most files agree on (a tie goes to list_attr_celeba.txt, the first)
    agree = {name: [o for o in lists if lists[o] == lists[name]] for name in lists}
    ref = max(lists, key=lambda name: len(agree[name]))
    order = lists[ref]
    others = ", ".join(agree[ref])
    for name, files in lists.items():
        if len(files) != len(order):
            raise ValueError(
                f"data.root: {base / name} lists {len(files)} images but {others} in {base} "
                f"list {len(order)} (truncated file, or files of different releases?)"
            )
        if files != order:
            k = next(i for i, (a, b) in enumerate(zip(files, order, strict=True)) if a != b)
            raise ValueError(
                f"data.root: {base / name} lists other images (or another order) than "
                f"{others} in {base}: row {k + 1} is {files[k]!r}, not {order[k]!r}"
            )
    _check_celeba_images(base, order)
    return base


def _torchvision_celeba(root: str | Path, split: str):
    """torchvision's CelebA, with its integrity check replaced by :func:`check_celeba_root`
    (which has already run and names the failing file)."""
    from torchvision.datasets import CelebA

    class _LocalCelebA(CelebA):
        def _check_integrity(self) -> bool:  # checked beforehand, file by file
            return True

    return _LocalCelebA(str(root), split=split, target_type="attr", download=False)


def load_celeba(cfg: CelebAConfig) -> dict[str, np.ndarray]:
    """CelebA images and classes, deterministic.

    Returns ``x`` uint8 [N, 3, r, r], ``y`` int64 class ids, ``class_names``, ``filenames``,
    ``attrs`` uint8 [N, 40] (0/1) and ``attr_names``. With ``max_images`` a subset of that many
    images of the split is drawn by ``subset_seed`` (kept in file order); otherwise the whole
    split.
    """
    if cfg.split not in CELEBA_SPLITS:
        raise ValueError(f"data.split: {cfg.split!r} is not one of {CELEBA_SPLITS}")
    if cfg.classes not in CELEBA_CLASSES:
        raise ValueError(f"data.classes: {cfg.classes!r} is not one of {sorted(CELEBA_CLASSES)}")
    if cfg.max_images is not None and cfg.max_images < 1:
        raise ValueError(f"data.max_images: must be positive, got {cfg.max_images}")
    base = check_celeba_root(cfg.root, verify_md5=cfg.verify_md5)
    ds = _torchvision_celeba(cfg.root, cfg.split)
    attr_names = [a for a in ds.attr_names if a]  # the real header line ends with a space
    attrs = ds.attr.numpy().astype(np.uint8)
    if attrs.shape[1] != len(attr_names):
        raise ValueError(f"data.root: {base / 'list_attr_celeba.txt'}: header/value mismatch")
    used, class_names = CELEBA_CLASSES[cfg.classes]
    for a in used:
        if a not in attr_names:
            raise ValueError(f"data.root: {base / 'list_attr_celeba.txt'} has no attribute {a!r}")
    y = np.zeros(len(attrs), dtype=np.int64)
    for a in used:
        y = 2 * y + attrs[:, attr_names.index(a)]
    idx = np.arange(len(attrs))
    if cfg.max_images is not None and cfg.max_images < idx.size:
        rng = np.random.default_rng(cfg.subset_seed)
        idx = np.sort(rng.permutation(idx.size)[: cfg.max_images])
    files = [ds.filename[i] for i in idx]
    x = np.empty((idx.size, 3, cfg.resolution, cfg.resolution), dtype=np.uint8)
    for k, f in enumerate(files):
        x[k] = open_image(base / CELEBA_IMAGE_DIR / f, cfg.resolution, cfg.crop, "data.root")
    return {
        "x": x,
        "y": y[idx],
        "class_names": np.array(class_names),
        "filenames": np.array(files),
        "attrs": attrs[idx],
        "attr_names": np.array(attr_names),
    }


# ------------------------------------------------------------------------- in the pipeline


def make_base(cfg: DataConfig) -> dict[str, np.ndarray]:
    """Both ``Male`` classes (0 female, 1 male), read by :func:`load_celeba` from ``root`` (all
    splits, center crop, ``resolution`` px), split per class into held-in / held-out by
    ``split_seed`` as for MNIST (``biaslab.datasets.mnist.make_base``); the four
    ``Male x Blond_Hair`` groups (``2 * Male + Blond_Hair``, names in ``group_names``) ride
    along as ``group_in`` / ``group_out`` for the group classifier of the same-seed figures
    (paper Figs. 1, 5, A).
    """
    classes = two_classes(cfg)
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
    arrays["classes"] = np.array(classes, dtype=np.int64)
    return arrays


# ------------------------------------------------- the source interface of biaslab.datasets
# (``train``, ``base_manifest``, ``train_manifest``: MNIST's, imported above)

#: the attribute classifier beside the class classifier: the four Male x Blond_Hair groups
ATTRIBUTE_TARGET = "group"
CHANNELS = 3


def base(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """The held-in / held-out base set of the ``data:`` settings."""
    return make_base(DataConfig(**settings))


def same_seed_labels(settings: dict[str, Any]) -> dict[str, Any]:
    """The same-seed figures' labelling of CelebA samples: the four ``Male x Blond_Hair``
    groups, "blond male" the minority."""
    names = [n.replace("_", " ") for n in CELEBA_CLASSES["male_blond"][1]]
    return {
        "column": "pred_group",
        "names": dict(enumerate(names)),
        "minority": [names.index("male blond")],
    }


# -- the family's card: what the plan checks and builds before any job --------------------
def check_config(config: Mapping[str, Any]) -> None:
    """The ``data`` settings of a CelebA depth family, without reading any file."""
    data = config["data"]
    if data["source"] != "celeba":
        raise ConfigError("data.source: must be 'celeba' for data.dataset celeba")
    if {data["majority_class"], data["minority_class"]} != {0, 1}:
        raise ConfigError(
            "data.majority_class / data.minority_class: CelebA classes are 0 (female) and "
            "1 (male); Table 2 uses majority_class: 0, minority_class: 1"
        )
    if not data.get("root"):
        raise ConfigError("data.root: required for CelebA (the folder that holds celeba/)")


def check_files(config: Mapping[str, Any]) -> None:
    """The CelebA folder (``check_celeba_root``)."""
    data = config["data"]
    as_config_error(check_celeba_root, data["root"], verify_md5=data["verify_md5"])
