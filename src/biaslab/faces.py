"""Face datasets from local files: CelebA (Table 2, Fig. 5, Table 3) and BFFHQ.

Nothing here downloads anything. Both loaders read a local directory (the config key
``data.root``) and fail before any work with an error that names the missing or broken file
and the layout expected.

**CelebA** (aligned and cropped release) is read through ``torchvision.datasets.CelebA`` with
``download=False``. torchvision expects, under ``<data.root>/celeba/``::

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

**BFFHQ** (Lee et al. 2021, "Learning Debiased Representation via Disentangled Feature
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
(64) with the same filter as CelebA. The loader pools the folders named in ``parts`` (default:
the 0.5pct training set, valid and test, as in the public code of "How I Met Your Bias", which
pools them to reach high aligned fractions rho), and :func:`bffhq_rho_indices` subsamples the
pool to a chosen rho = share of aligned images in each age class. The loader checks what it
can of this assumed layout: every image name must parse, and inside ``align``/``conflict``
folders the labels must agree with the folder names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BFFHQ_IMAGE_SUFFIXES",
    "CELEBA_ANNOTATIONS",
    "CELEBA_CLASSES",
    "BFFHQConfig",
    "CelebAConfig",
    "bffhq_rho_counts",
    "bffhq_rho_indices",
    "check_celeba_root",
    "load_bffhq",
    "load_celeba",
    "parse_bffhq_name",
    "prepare_face",
    "scan_bffhq",
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


def _open_image(path: Path, resolution: int, crop: int | None, key: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{key}: image {path} not found")
    try:
        with Image.open(path) as im:
            im.load()
            return prepare_face(im, resolution, crop)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{key}: cannot read image {path} ({e}); re-copy the file") from e


# ------------------------------------------------------------------------------------ CelebA


def _celeba_dir(root: str | Path | None) -> Path:
    if not root:
        raise ValueError("data.root: required for CelebA (the folder that holds celeba/)")
    return Path(root) / "celeba"


def _check_celeba_text(path: Path) -> list[str]:
    """Check one annotation file's structure; return its file names in order."""
    header, width, allowed = _CELEBA_FORMAT[path.name]
    lines = path.read_text().splitlines()
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
    files = []
    for n, line in enumerate(lines[start:], start=start + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width + 1:
            raise ValueError(
                f"data.root: {path} line {n}: expected a file name and {width} values, got "
                f"{len(parts) - 1} (truncated or corrupt file?)"
            )
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            raise ValueError(f"data.root: {path} line {n}: non-integer value") from None
        if allowed is not None and not set(values) <= allowed:
            raise ValueError(
                f"data.root: {path} line {n}: values must be in {sorted(allowed)}, got "
                f"{sorted(set(values) - allowed)}"
            )
        files.append(parts[0])
    if count is not None and count != len(files):
        raise ValueError(
            f"data.root: {path} announces {count} images on line 1 but lists {len(files)} "
            "(truncated or corrupt file?)"
        )
    return files


def check_celeba_root(root: str | Path | None, *, verify_md5: bool = True) -> Path:
    """Check the CelebA files under ``<root>/celeba`` before torchvision reads them; return that
    folder. Raises FileNotFoundError naming every missing path, ValueError naming a file whose
    MD5 (``verify_md5``) or structure is wrong, or whose image list disagrees with
    ``list_eval_partition.txt``."""
    base = _celeba_dir(root)
    wanted = [base / CELEBA_IMAGE_DIR] + [base / f for f in CELEBA_ANNOTATIONS]
    missing = [p for p in wanted if not (p.is_dir() if p.name == CELEBA_IMAGE_DIR else p.is_file())]
    if missing:
        raise FileNotFoundError(
            f"data.root={str(root)!r}: CelebA files not found: "
            + ", ".join(str(p) for p in missing)
            + f"; {_CELEBA_LAYOUT}. Nothing is downloaded at run time."
        )
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
    order = None
    for name in _CELEBA_FORMAT:
        files = _check_celeba_text(base / name)
        if order is None:
            order = files
        elif files != order:
            raise ValueError(
                f"data.root: {base / name} lists other images (or another order) than "
                f"{base / 'list_eval_partition.txt'} ({len(files)} vs {len(order)} rows)"
            )
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
        x[k] = _open_image(base / CELEBA_IMAGE_DIR / f, cfg.resolution, cfg.crop, "data.root")
    return {
        "x": x,
        "y": y[idx],
        "class_names": np.array(class_names),
        "filenames": np.array(files),
        "attrs": attrs[idx],
        "attr_names": np.array(attr_names),
    }


# ------------------------------------------------------------------------------------- BFFHQ

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
        x[k] = _open_image(Path(p), cfg.resolution, None, "data.root")
    return {"x": x, **scan, "aligned": scan["target"] == scan["bias"]}


def bffhq_rho_counts(
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


def bffhq_rho_indices(
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
    k_al, k_co = bffhq_rho_counts(
        np.array([a.size for a, _ in pools]), np.array([c.size for _, c in pools]), rho, n_per_class
    )
    return np.sort(np.concatenate([np.concatenate([a[:k_al], c[:k_co]]) for a, c in pools]))
