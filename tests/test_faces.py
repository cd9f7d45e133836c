"""Tests of biaslab.datasets.celeba and .bffhq on tiny fixture folders written in the real
on-disk formats."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biaslab.datasets.bffhq import (
    BFFHQConfig,
    load_bffhq,
    parse_bffhq_name,
    scan_bffhq,
)
from biaslab.datasets.celeba import (
    CELEBA_ANNOTATIONS,
    CelebAConfig,
    check_celeba_root,
    load_celeba,
)
from biaslab.datasets.common import rho_indices

# The 40 CelebA attribute names in the order of list_attr_celeba.txt.
ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
assert len(ATTRS) == 40

# (male, blond, partition) for 12 images: 8 train, 2 valid, 2 test
CELEBA_ROWS = [
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 0),
    (1, 1, 0),
    (0, 0, 0),
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 0),
    (1, 0, 1),
    (0, 0, 1),
    (0, 1, 2),
    (1, 1, 2),
]


def _face(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth random RGB image (JPEG-friendly) of PIL size (w, h)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BILINEAR)


def make_celeba(root: Path, rows=CELEBA_ROWS) -> Path:
    """Write ``<root>/celeba`` in the released format: 178x218 JPEGs and the five text files
    (count line, header line, space-aligned columns, trailing space after the attr header)."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(rows))]
    rng = np.random.default_rng(0)
    attr_lines, part_lines, id_lines, bbox_lines, lm_lines = [], [], [], [], []
    for i, (name, (male, blond, part)) in enumerate(zip(names, rows, strict=True)):
        _face(i, (178, 218)).save(base / "img_align_celeba" / name, quality=90)
        values = rng.choice([-1, 1], size=40)
        values[ATTRS.index("Male")] = 1 if male else -1
        values[ATTRS.index("Blond_Hair")] = 1 if blond else -1
        attr_lines.append(name + "".join(f" {v:2d}" for v in values))
        part_lines.append(f"{name} {part}")
        id_lines.append(f"{name} {100 + i}")
        bbox_lines.append(f"{name}    95  71 226 313")
        lm_lines.append(f"{name} 69  109  106  113   77  142   73  152  108  154")
    n = len(rows)
    (base / "list_attr_celeba.txt").write_text(
        f"{n}\n" + " ".join(ATTRS) + " \n" + "\n".join(attr_lines) + "\n"
    )
    (base / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    (base / "identity_CelebA.txt").write_text("\n".join(id_lines) + "\n")
    (base / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "\n".join(bbox_lines) + "\n"
    )
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
        "rightmouth_x rightmouth_y\n" + "\n".join(lm_lines) + "\n"
    )
    return root


@pytest.fixture
def celeba_root(tmp_path):
    return make_celeba(tmp_path / "data")


def _cfg(root, **kw):
    return CelebAConfig(root=str(root), verify_md5=False, **kw)


# ------------------------------------------------------------------------------------ CelebA


def test_celeba_male_classes_counts_shapes(celeba_root):
    out = load_celeba(_cfg(celeba_root, resolution=16))
    assert out["x"].shape == (8, 3, 16, 16)
    assert out["x"].dtype == np.uint8
    np.testing.assert_array_equal(out["y"], [r[0] for r in CELEBA_ROWS[:8]])
    assert list(out["class_names"]) == ["female", "male"]
    assert list(out["filenames"]) == [f"{i:06d}.jpg" for i in range(1, 9)]
    assert out["attrs"].shape == (8, 40)
    assert list(out["attr_names"]) == ATTRS
    assert out["x"].std() > 5  # real pixels, not a blank array

    every = load_celeba(_cfg(celeba_root, split="all", resolution=16))
    assert every["x"].shape[0] == 12
    assert load_celeba(_cfg(celeba_root, split="test", resolution=16))["x"].shape[0] == 2


def test_celeba_male_blond_groups(celeba_root):
    out = load_celeba(_cfg(celeba_root, split="all", classes="male_blond", resolution=8))
    want = [2 * m + b for m, b, _ in CELEBA_ROWS]
    np.testing.assert_array_equal(out["y"], want)
    assert list(out["class_names"]) == [
        "female_not_blond",
        "female_blond",
        "male_not_blond",
        "male_blond",
    ]


def test_celeba_crop_resize_matches_pil(celeba_root):
    out = load_celeba(_cfg(celeba_root, resolution=64))
    im = Image.open(celeba_root / "celeba" / "img_align_celeba" / "000001.jpg").convert("RGB")
    im = im.crop((0, 20, 178, 198)).resize((64, 64), Image.BILINEAR)
    ref = np.asarray(im).transpose(2, 0, 1).astype(int)
    assert np.abs(out["x"][0].astype(int) - ref).max() <= 1


def test_celeba_subset_deterministic(celeba_root):
    a = load_celeba(_cfg(celeba_root, resolution=8, max_images=5))
    b = load_celeba(_cfg(celeba_root, resolution=8, max_images=5))
    c = load_celeba(_cfg(celeba_root, resolution=8, max_images=5, subset_seed=1))
    assert a["x"].shape[0] == 5
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["filenames"], b["filenames"])
    assert list(a["filenames"]) == sorted(a["filenames"])
    assert list(a["filenames"]) != list(c["filenames"])
    full = load_celeba(_cfg(celeba_root, resolution=8))
    rows = [list(full["filenames"]).index(f) for f in a["filenames"]]
    np.testing.assert_array_equal(a["x"], full["x"][rows])
    np.testing.assert_array_equal(a["y"], full["y"][rows])


def test_celeba_missing_files_named(tmp_path, celeba_root):
    with pytest.raises(FileNotFoundError, match=r"data\.root") as e:
        load_celeba(_cfg(tmp_path / "empty"))
    assert "img_align_celeba" in str(e.value)
    assert "list_attr_celeba.txt" in str(e.value)

    (celeba_root / "celeba" / "list_bbox_celeba.txt").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_celeba(_cfg(celeba_root))
    msg = str(e.value)
    assert str(celeba_root / "celeba" / "list_bbox_celeba.txt") in msg
    assert "list_attr_celeba.txt," not in msg.split("expected layout")[0]

    with pytest.raises(ValueError, match=r"data\.root: required"):
        load_celeba(CelebAConfig(root=None))


def test_celeba_truncated_attr_file(celeba_root):
    path = celeba_root / "celeba" / "list_attr_celeba.txt"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # cut inside the last row
    with pytest.raises(ValueError, match="line 14") as e:
        load_celeba(_cfg(celeba_root))
    assert str(path) in str(e.value)

    lines = text.splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")  # drop two whole rows
    with pytest.raises(ValueError, match="announces 12 images") as e:
        load_celeba(_cfg(celeba_root))
    assert str(path) in str(e.value)


def test_celeba_partition_mismatch(celeba_root):
    path = celeba_root / "celeba" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:-1], "000012.jpg 7"]) + "\n")
    with pytest.raises(ValueError, match=r"values must be in \[0, 1, 2\]"):
        load_celeba(_cfg(celeba_root))
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} lists 11 images but")):
        load_celeba(_cfg(celeba_root))
    path.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match="other images") as e:
        load_celeba(_cfg(celeba_root))
    assert str(e.value).startswith(f"data.root: {path} ")


def test_celeba_md5_check(celeba_root):
    with pytest.raises(ValueError, match="differs from the released file") as e:
        check_celeba_root(celeba_root, verify_md5=True)
    assert "data.verify_md5" in str(e.value)
    assert any(name in str(e.value) for name in CELEBA_ANNOTATIONS)


def test_celeba_unreadable_image(celeba_root):
    img = celeba_root / "celeba" / "img_align_celeba" / "000003.jpg"
    img.write_bytes(img.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(ValueError, match="cannot read image") as e:
        load_celeba(_cfg(celeba_root, resolution=8))
    assert str(img) in str(e.value)
    img.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=re.escape(str(img))):
        load_celeba(_cfg(celeba_root, resolution=8))
    img.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(img))):
        load_celeba(_cfg(celeba_root, resolution=8))


def test_celeba_bad_options(celeba_root):
    with pytest.raises(ValueError, match=r"data\.split"):
        load_celeba(_cfg(celeba_root, split="val"))
    with pytest.raises(ValueError, match=r"data\.classes"):
        load_celeba(_cfg(celeba_root, classes="age"))


# ------------------------------------------------------------------------------------- BFFHQ

# training ratio folder: (target, bias) -> count; align = target == bias
BFFHQ_TRAIN = {(0, 0): 6, (1, 1): 6, (0, 1): 2, (1, 0): 1}
BFFHQ_FLAT = {"valid": {(0, 0): 1, (1, 1): 1, (0, 1): 1, (1, 0): 1}, "test": {(0, 1): 2, (1, 0): 2}}


def make_bffhq(root: Path, train=None, flat=None, size: int = 128) -> Path:
    """``<root>/bffhq/0.5pct/{align,conflict}/<age>/<i>_<age>_<gender>.png`` + valid/ + test/,
    ``size`` px PNGs; counts per (age, gender) from ``train`` / ``flat`` (default the module's)."""
    train = BFFHQ_TRAIN if train is None else train
    flat = BFFHQ_FLAT if flat is None else flat
    base = root / "bffhq"
    i = 0
    for (t, b), n in train.items():
        folder = base / "0.5pct" / ("align" if t == b else "conflict") / str(t)
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            _face(i, (size, size)).save(folder / f"{i}_{t}_{b}.png")
            i += 1
    for part, groups in flat.items():
        (base / part).mkdir(parents=True)
        for (t, b), n in groups.items():
            for _ in range(n):
                _face(i, (size, size)).save(base / part / f"{i}_{t}_{b}.png")
                i += 1
    return root


@pytest.fixture
def bffhq_root(tmp_path):
    return make_bffhq(tmp_path / "data")


def test_parse_bffhq_name():
    assert parse_bffhq_name("bffhq/test/12345_1_0.png") == (1, 0)
    assert parse_bffhq_name("a_b_0_1.JPG") == (0, 1)
    for bad in ("12_1.png", "12_1_0.txt", "12_2_0.png", "x_a_0.png"):
        with pytest.raises(ValueError, match=r"data\.root"):
            parse_bffhq_name(bad)


def test_bffhq_scan_and_load(bffhq_root):
    scan = scan_bffhq(bffhq_root, ("0.5pct", "valid", "test"))
    n_train = sum(BFFHQ_TRAIN.values())
    assert len(scan["paths"]) == n_train + 4 + 4
    assert (scan["part"] == "0.5pct").sum() == n_train
    for (t, b), n in BFFHQ_TRAIN.items():
        sel = (scan["part"] == "0.5pct") & (scan["target"] == t) & (scan["bias"] == b)
        assert sel.sum() == n
    # the bffhq folder itself works as the root too
    again = scan_bffhq(bffhq_root / "bffhq", ("0.5pct", "valid", "test"))
    np.testing.assert_array_equal(again["paths"], scan["paths"])

    out = load_bffhq(BFFHQConfig(root=str(bffhq_root), parts=("valid", "test"), resolution=64))
    assert out["x"].shape == (8, 3, 64, 64)
    assert out["x"].dtype == np.uint8
    np.testing.assert_array_equal(out["aligned"], out["target"] == out["bias"])
    assert out["aligned"].sum() == 2
    ref = np.asarray(Image.open(out["paths"][0]).resize((64, 64), Image.BILINEAR))
    assert np.abs(out["x"][0].transpose(1, 2, 0).astype(int) - ref).max() <= 1
    # decoding a chosen subset gives the same rows
    sub = load_bffhq(
        BFFHQConfig(root=str(bffhq_root), parts=("valid", "test"), resolution=64), [5, 1]
    )
    np.testing.assert_array_equal(sub["x"], out["x"][[5, 1]])


def test_rho_indices(bffhq_root):
    scan = scan_bffhq(bffhq_root, ("0.5pct", "valid", "test"))
    t, b = scan["target"], scan["bias"]
    # pool per class: age 0: 7 aligned, 5 conflicting; age 1: 7 aligned, 4 conflicting
    for rho, n in ((0.5, 8), (0.8, 8)):
        idx = rho_indices(t, b, rho, n_per_class=n, seed=0)
        assert idx.size == 2 * n
        for c in (0, 1):
            sel = t[idx] == c
            assert sel.sum() == n
            assert (b[idx][sel] == c).sum() == round(n * rho)
        np.testing.assert_array_equal(idx, rho_indices(t, b, rho, n_per_class=n, seed=0))
    # largest class-balanced set at rho 0.9: limited by 7 aligned -> 7 per class
    idx = rho_indices(t, b, 0.9)
    assert idx.size == 2 * 7
    assert (t[idx] == b[idx]).sum() == 2 * 6
    with pytest.raises(ValueError, match=r"data\.n_per_class"):
        rho_indices(t, b, 0.5, n_per_class=12)
    with pytest.raises(ValueError, match="rho"):
        rho_indices(t, b, 1.5)


def test_bffhq_errors(tmp_path, bffhq_root):
    with pytest.raises(FileNotFoundError, match=r"data\.root") as e:
        scan_bffhq(tmp_path / "nowhere", ("0.5pct",))
    assert "0.5pct" in str(e.value) and "align,conflict" in str(e.value)
    with pytest.raises(FileNotFoundError, match=re.escape(str(bffhq_root / "bffhq" / "5pct"))):
        scan_bffhq(bffhq_root, ("5pct", "valid"))

    # a conflicting image filed under align/ contradicts the assumed layout
    bad = bffhq_root / "bffhq" / "0.5pct" / "align" / "0" / "999_0_1.png"
    _face(0, (128, 128)).save(bad)
    with pytest.raises(ValueError, match="disagree with its folder align/0") as e:
        scan_bffhq(bffhq_root, ("0.5pct",))
    assert str(bad) in str(e.value)
    bad.unlink()

    odd = bffhq_root / "bffhq" / "valid" / "oops.png"
    _face(0, (128, 128)).save(odd)
    with pytest.raises(ValueError, match="cannot parse BFFHQ labels"):
        scan_bffhq(bffhq_root, ("valid",))
    odd.unlink()

    broken = sorted((bffhq_root / "bffhq" / "test").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(ValueError, match="cannot read image") as e:
        load_bffhq(BFFHQConfig(root=str(bffhq_root), parts=("test",)))
    assert str(broken) in str(e.value)
