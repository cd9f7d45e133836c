"""BFFHQ from local files: class = age, bias = gender, class-conditional models at a share
``rho`` of gender-aligned images per age class.

Nothing here downloads anything. The loader reads a local directory (the config key
``data.root``) and fails before any work with an error that names the missing or broken file
and the layout expected.

BFFHQ (Lee et al. 2021, "Learning Debiased Representation via Disentangled Feature
Augmentation"): target = age, bias = gender. The released archive unpacks to::

    bffhq/<ratio>/align/<target>/<file>      training images whose gender agrees with the age
    bffhq/<ratio>/conflict/<target>/<file>   training images whose gender disagrees
    bffhq/valid/<file>
    bffhq/test/<file>

with ``<ratio>`` = ``0.5pct`` in the release, and file names ``<index>_<target>_<bias>.<ext>``
(the two integer labels are the last two ``_``-separated fields of the stem). The age target
is 0 = young, 1 = old; the gender label's meaning is as reported by the dataset authors
(aligned = young women and old men) and is not needed here: only ``target == bias``
(aligned) matters. Images are 128 x 128 in the release and are resized to ``resolution``
(64) with the same filter as CelebA (``common.prepare_face``). The loader pools the folders
named in ``parts`` (default: the 0.5pct training set, valid and test, as in the public code
of "How I Met Your Bias", which pools them to reach high aligned fractions rho), and
:func:`biaslab.datasets.common.rho_indices` subsamples the pool to a chosen rho = share of
aligned images in each age class. The loader checks what it can of this assumed layout: every
image name must parse, and inside ``align``/``conflict`` folders the labels must agree with the
folder names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biaslab.base.errors import ConfigError, as_config_error
from biaslab.datasets.common import (
    aligned_pool_base,
    aligned_pool_train,
    class_counts_manifest,
    colour_manifest,
    open_image,
    rho_of,
)

#: class-conditional models; the skew is the bias-conflicting share ``1 - rho``
CONDITIONAL = True
#: the attribute classifier beside the class classifier: gender, the bias
ATTRIBUTE_TARGET = "bias"
CHANNELS = 3

BFFHQ_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_BFFHQ_NAME = re.compile(r"^(?P<stem>.*)_(?P<target>\d+)_(?P<bias>\d+)$")
_BFFHQ_LAYOUT = (
    "expected layout: <data.root>/bffhq/<ratio>/{align,conflict}/<age>/<index>_<age>_<gender>"
    ".png for a training ratio folder such as 0.5pct, and <data.root>/bffhq/{valid,test}/"
    "<index>_<age>_<gender>.png (age 0 young / 1 old; <data.root> may also be the bffhq "
    "folder itself)"
)


@dataclass(frozen=True)
class BFFHQConfig:
    root: str | None = None
    parts: tuple[str, ...] = ("0.5pct", "valid", "test")
    resolution: int = 64


def parse_bffhq_name(path: str | Path) -> tuple[int, int]:
    """``(target, bias)`` from a name ``<anything>_<target>_<bias>.<ext>`` (labels 0 or 1)."""
    path = Path(path)
    m = _BFFHQ_NAME.match(path.stem)
    if m is None or path.suffix.lower() not in BFFHQ_IMAGE_SUFFIXES:
        raise ValueError(
            f"data.root: cannot parse BFFHQ labels from {path}: names must look like "
            f"<index>_<age>_<gender>{{{','.join(BFFHQ_IMAGE_SUFFIXES)}}}"
        )
    t, b = int(m["target"]), int(m["bias"])
    if t not in (0, 1) or b not in (0, 1):
        raise ValueError(f"data.root: {path}: labels must be 0 or 1, got target {t} bias {b}")
    return t, b


def _bffhq_dir(root: str | Path | None) -> Path:
    if not root:
        raise ValueError("data.root: required for BFFHQ (the folder that holds bffhq/)")
    root = Path(root)
    return root / "bffhq" if (root / "bffhq").is_dir() else root


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BFFHQ_IMAGE_SUFFIXES
    )


def scan_bffhq(root: str | Path | None, parts: tuple[str, ...] | list[str]) -> dict:
    """Paths and labels of the images in the named parts of ``<root>/bffhq`` (no decoding).

    A part with ``align``/``conflict`` subfolders is a training-ratio folder; otherwise the
    part's own image files are read. Returns ``paths``, ``target``, ``bias``, ``part`` arrays
    (sorted by part, then path).
    """
    base = _bffhq_dir(root)
    if not parts:
        raise ValueError("data.parts: name at least one BFFHQ folder (e.g. 0.5pct, valid, test)")
    missing = [base / p for p in parts if not (base / p).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"data.root={str(root)!r}: BFFHQ folders not found: "
            + ", ".join(str(p) for p in missing)
            + f"; {_BFFHQ_LAYOUT}. Nothing is downloaded at run time."
        )
    paths, target, bias, part_of = [], [], [], []
    for part in parts:
        folder = base / part
        nested = (folder / "align").is_dir() or (folder / "conflict").is_dir()
        if nested:
            for kind in ("align", "conflict"):
                if not (folder / kind).is_dir():
                    raise FileNotFoundError(
                        f"data.root: {folder / kind} not found; {_BFFHQ_LAYOUT}"
                    )
                for sub in sorted(p for p in (folder / kind).iterdir() if p.is_dir()):
                    for path in _images_in(sub):
                        t, b = parse_bffhq_name(path)
                        if sub.name != str(t) or (kind == "align") != (t == b):
                            raise ValueError(
                                f"data.root: {path}: labels (age {t}, gender {b}) disagree with "
                                f"its folder {kind}/{sub.name}; {_BFFHQ_LAYOUT}"
                            )
                        paths.append(path)
                        target.append(t)
                        bias.append(b)
                        part_of.append(part)
        else:
            for path in _images_in(folder):
                t, b = parse_bffhq_name(path)
                paths.append(path)
                target.append(t)
                bias.append(b)
                part_of.append(part)
        if not paths or part_of[-1] != part:
            raise FileNotFoundError(f"data.root: no BFFHQ images under {folder}; {_BFFHQ_LAYOUT}")
    return {
        "paths": np.array([str(p) for p in paths]),
        "target": np.array(target, dtype=np.int64),
        "bias": np.array(bias, dtype=np.int64),
        "part": np.array(part_of),
    }


def check_bffhq_root(
    root: str | Path | None, parts: tuple[str, ...] | list[str], *, key: str = "data.root"
) -> int:
    """Check the BFFHQ folders ``parts`` under ``<root>/bffhq`` before any image is decoded
    and return the number of images. On top of :func:`scan_bffhq` (every part folder exists
    and holds images, every image name parses, labels agree with the ``align``/``conflict``
    and age folders): no image file is empty (one stat each) and no image lies outside an
    age folder of a training-ratio folder. Errors name the file or folder and start with
    ``key``, the config key of ``root`` (``parts`` is its sibling key)."""
    try:
        scan = scan_bffhq(root, tuple(parts))
        base = _bffhq_dir(root)
        for part in parts:
            folder = base / part
            for kind in ("align", "conflict"):
                if (folder / kind).is_dir() and _images_in(folder / kind):
                    stray = _images_in(folder / kind)[0]
                    raise ValueError(
                        f"data.root: {stray}: image outside an age folder (expected "
                        f"{folder / kind}/<age>/); {_BFFHQ_LAYOUT}"
                    )
        for path in scan["paths"]:
            if Path(path).stat().st_size == 0:
                raise ValueError(f"data.root: image {path} is empty (0 bytes); re-copy it")
    except (OSError, ValueError) as e:
        # the messages name data.root / data.parts; in another section, its keys
        section = key.rsplit(".", 1)[0] + "."
        if section == "data." or not str(e).startswith("data."):
            raise
        raise type(e)(section + str(e).removeprefix("data.")) from None
    return len(scan["paths"])


def load_bffhq(cfg: BFFHQConfig, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """BFFHQ pool of ``cfg.parts``: ``x`` uint8 [N, 3, r, r], ``target`` (age), ``bias``
    (gender), ``aligned`` (target == bias), ``paths``, ``part``. With ``indices`` (into the
    pool of :func:`scan_bffhq`) only those images are decoded."""
    scan = scan_bffhq(cfg.root, tuple(cfg.parts))
    if indices is not None:
        indices = np.asarray(indices, dtype=np.int64)
        scan = {k: v[indices] for k, v in scan.items()}
    x = np.empty((len(scan["paths"]), 3, cfg.resolution, cfg.resolution), dtype=np.uint8)
    for k, p in enumerate(scan["paths"]):
        x[k] = open_image(Path(p), cfg.resolution, None, "data.root")
    return {"x": x, **scan, "aligned": scan["target"] == scan["bias"]}


# ------------------------------------------------ the pipeline's base and training sets


def make_bffhq_base(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """The BFFHQ pool (``parts``) as an aligned-pool base set (``common.aligned_pool_base``:
    held-in pool, gender-balanced classifier sets), class = age, bias = gender."""
    pool = load_bffhq(
        BFFHQConfig(
            root=settings["root"],
            parts=tuple(settings["parts"]),
            resolution=int(settings["resolution"]),
        )
    )
    return aligned_pool_base(pool["x"], pool["target"], pool["bias"], settings, "BFFHQ")


def make_bffhq_train(
    base: dict[str, np.ndarray], settings: dict[str, Any], rho: float
) -> dict[str, np.ndarray]:
    """The training set at aligned share ``rho`` (``common.aligned_pool_train``)."""
    return aligned_pool_train(base, settings, rho)


# ------------------------------------------------- the source interface of biaslab.datasets


def base(settings: dict[str, Any]) -> dict[str, np.ndarray]:
    return make_bffhq_base(settings)


def base_manifest(base: dict[str, np.ndarray], grid: dict[str, Any]) -> pd.DataFrame:
    return class_counts_manifest(base, **grid)


def train(
    base: dict[str, np.ndarray], settings: dict[str, Any], fraction: float
) -> dict[str, np.ndarray]:
    """The training set at bias-conflicting share ``fraction`` (rho = 1 - fraction)."""
    return make_bffhq_train(base, settings, rho_of(fraction))


def train_manifest(
    train: dict[str, np.ndarray], grid: dict[str, Any], fraction: float
) -> pd.DataFrame:
    return colour_manifest(train, **grid, rho_data=rho_of(fraction))


# -- the family's card: what the plan checks and builds before any job --------------------
def check_config(config: Mapping[str, Any]) -> None:
    if not config["conditional"]["bffhq"].get("root"):
        raise ConfigError("conditional.bffhq.root: required for BFFHQ (the folder with bffhq/)")


def check_files(config: Mapping[str, Any]) -> None:
    """The BFFHQ folders and file names (``check_bffhq_root``)."""
    b = config["conditional"]["bffhq"]
    as_config_error(check_bffhq_root, b["root"], b["parts"], key="conditional.bffhq.root")


def family_settings(config: Mapping[str, Any], dataset: str = "bffhq") -> dict[str, Any]:
    """Age-conditional BFFHQ models (class 0 young, 1 old; bias attribute gender, read by a
    gender classifier trained in the pipeline): the settings ``plan.families`` builds the
    family from."""
    bffhq = config["conditional"]["bffhq"]
    return dict(
        source="bffhq",
        resolution=int(bffhq["resolution"]),
        res_key="conditional.bffhq.resolution",
        classes=[0, 1],
        data={**bffhq, "split_seed": config["data"]["split_seed"]},
    )
