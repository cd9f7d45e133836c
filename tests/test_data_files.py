"""The parse-time checks of the data files (``mnist.check_idx_files``,
``celeba.check_celeba_root``, ``bffhq.check_bffhq_root``): small valid fixtures in the real
on-disk formats pass and load; each kind of damage is rejected by an error that names the
file."""

from __future__ import annotations

import re
import struct
from contextlib import contextmanager

import numpy as np
import pytest

from biaslab.datasets.bffhq import check_bffhq_root
from biaslab.datasets.celeba import CELEBA_ANNOTATIONS, check_celeba_root
from biaslab.datasets.mnist import MNIST_FILES, check_idx_files, load_mnist
from tests.helpers import (
    IDX_TEST_LABELS,
    IDX_TRAIN_LABELS,
    write_idx_fixture,
    write_idx_images,
    write_idx_labels,
)
from tests.test_faces import make_bffhq, make_celeba

# ------------------------------------------------------------------------------------- MNIST


@pytest.fixture
def raw(tmp_path):
    return write_idx_fixture(tmp_path)


@contextmanager
def _raises(exc, path, *patterns):
    """``exc`` whose message names ``path`` (as ``data.root: ...``) and matches every
    pattern."""
    with pytest.raises(exc) as e:
        yield
    msg = str(e.value)
    assert msg.startswith("data.root") and str(path) in msg, msg
    for pattern in patterns:
        assert re.search(pattern, msg), (pattern, msg)


def test_idx_fixture_passes_and_loads(raw):
    check_idx_files(raw)
    x, y = load_mnist(raw.parents[1])
    assert x.shape == (len(IDX_TRAIN_LABELS) + len(IDX_TEST_LABELS), 28, 28)
    assert y.tolist() == [*IDX_TRAIN_LABELS, *IDX_TEST_LABELS]
    assert set(y.tolist()) == set(range(10))


def test_labels_short_of_images(raw):
    path = raw / "train-labels-idx1-ubyte"
    write_idx_labels(path, IDX_TRAIN_LABELS[:-10])
    msg = f"{path}: 8 labels but train-images-idx3-ubyte has 18 images"
    with pytest.raises(ValueError, match=re.escape(msg)):
        check_idx_files(raw)
    with pytest.raises(ValueError, match=re.escape(msg)):  # the loader checks too
        load_mnist(raw.parents[1])


@pytest.mark.parametrize("name", MNIST_FILES)
def test_zero_byte_file(raw, name):
    (raw / name).write_bytes(b"")
    with _raises(ValueError, raw / name, "empty"):
        check_idx_files(raw)


@pytest.mark.parametrize("name", MNIST_FILES)
def test_wrong_magic(raw, name):
    path = raw / name
    data = bytearray(path.read_bytes())
    data[3] = 0x01 if data[3] == 0x03 else 0x03  # an images file's magic in a labels file...
    path.write_bytes(bytes(data))
    with _raises(ValueError, path, "magic number"):
        check_idx_files(raw)


def test_gzip_file_named(raw):
    import gzip

    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    with _raises(ValueError, path, "magic number", "gzip"):
        check_idx_files(raw)


@pytest.mark.parametrize("cut", [1, 784, 10_000])
def test_truncated_images_file(raw, cut):
    path = raw / "t10k-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    with _raises(ValueError, path, "bytes"):
        check_idx_files(raw)


def test_trailing_bytes(raw):
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with _raises(ValueError, path, "announces 18 labels"):
        check_idx_files(raw)


def test_label_out_of_range(raw):
    path = raw / "t10k-labels-idx1-ubyte"
    write_idx_labels(path, [*IDX_TEST_LABELS[:-1], 11])
    with _raises(ValueError, path, r"outside 0\.\.9", "label 11 at index 7"):
        check_idx_files(raw)


def test_wrong_image_dims(raw):
    path = raw / "train-images-idx3-ubyte"
    write_idx_images(path, np.zeros((len(IDX_TRAIN_LABELS), 32, 32), dtype=np.uint8))
    with _raises(ValueError, path, "32x32", "expected 28x28"):
        check_idx_files(raw)


def test_header_counts_disagree_with_size(raw):
    path = raw / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack(">i", 60000)  # the full count, the fixture's pixels
    path.write_bytes(bytes(data))
    with _raises(ValueError, path, "60000 images"):
        check_idx_files(raw)


def test_missing_file(raw):
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with _raises(FileNotFoundError, raw / "t10k-labels-idx1-ubyte"):
        check_idx_files(raw)


# ------------------------------------------------------------------------------------ CelebA


@pytest.fixture
def celeba(tmp_path):
    root = make_celeba(tmp_path / "data")
    return root, root / "celeba"


def test_celeba_fixture_passes(celeba):
    root, base = celeba
    assert check_celeba_root(root, verify_md5=False) == base


@pytest.mark.parametrize("name", list(CELEBA_ANNOTATIONS))
@pytest.mark.parametrize("verify_md5", [False, True])
def test_celeba_zero_byte_annotation(celeba, name, verify_md5):
    root, base = celeba
    (base / name).write_bytes(b"")
    with _raises(ValueError, base / name, "empty"):
        check_celeba_root(root, verify_md5=verify_md5)


@pytest.mark.parametrize("name", list(CELEBA_ANNOTATIONS))
def test_celeba_truncated_annotation(celeba, name):
    """Cut after a whole row (a shorter list) or inside a row: the cut file is named."""
    root, base = celeba
    path = base / name
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))
    with _raises(ValueError, path):
        check_celeba_root(root, verify_md5=False)
    path.write_text(text[: len(text) - 6])
    with _raises(ValueError, path):
        check_celeba_root(root, verify_md5=False)


def test_celeba_attr_rows_differ_from_partition(celeba):
    """An attribute file of another length, its count line consistent: named, with the row
    counts, against the files that agree with each other."""
    root, base = celeba
    path = base / "list_attr_celeba.txt"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("10\n" + "".join(lines[1:12]))
    with _raises(ValueError, path, "lists 10 images but", "list_eval_partition.txt", "list 12"):
        check_celeba_root(root, verify_md5=False)


def test_celeba_missing_images(celeba):
    root, base = celeba
    folder = base / "img_align_celeba"
    (folder / "000007.jpg").unlink()
    with _raises(FileNotFoundError, folder / "000007.jpg", "1 of the 12 images"):
        check_celeba_root(root, verify_md5=False)
    for i in range(1, 13):
        (folder / f"{i:06d}.jpg").unlink(missing_ok=True)
    with _raises(FileNotFoundError, folder / "000005.jpg", "12 of the 12 images", "and 7 more"):
        check_celeba_root(root, verify_md5=False)


def test_celeba_zero_byte_image(celeba):
    root, base = celeba
    path = base / "img_align_celeba" / "000004.jpg"
    path.write_bytes(b"")
    with _raises(ValueError, path, "empty"):
        check_celeba_root(root, verify_md5=False)


def test_celeba_binary_annotation(celeba):
    root, base = celeba
    path = base / "identity_CelebA.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with _raises(ValueError, path, "not a text file"):
        check_celeba_root(root, verify_md5=False)


# ------------------------------------------------------------------------------------- BFFHQ

PARTS = ("0.5pct", "valid", "test")


@pytest.fixture
def bffhq(tmp_path):
    root = make_bffhq(tmp_path / "data", size=8)
    return root, root / "bffhq"


def test_bffhq_fixture_passes(bffhq):
    root, base = bffhq
    assert check_bffhq_root(root, PARTS) == 15 + 4 + 4
    assert check_bffhq_root(base, ["valid"]) == 4


def test_bffhq_zero_byte_image(bffhq):
    root, base = bffhq
    path = next((base / "test").glob("*.png"))
    path.write_bytes(b"")
    with _raises(ValueError, path, "empty"):
        check_bffhq_root(root, PARTS)


def test_bffhq_part_without_images(bffhq):
    root, base = bffhq
    for p in (base / "valid").iterdir():
        p.unlink()
    with _raises(FileNotFoundError, base / "valid", "no BFFHQ images"):
        check_bffhq_root(root, PARTS)
    with _raises(FileNotFoundError, base / "nowhere", "not found"):
        check_bffhq_root(root, ["nowhere"])


def test_bffhq_bad_names(bffhq):
    root, base = bffhq
    path = next((base / "valid").glob("*.png"))
    bad = path.with_name("portrait.png")
    path.rename(bad)
    with _raises(ValueError, bad, "cannot parse"):
        check_bffhq_root(root, PARTS)
    bad.rename(path.with_name("7_2_0.png"))
    with _raises(ValueError, path.with_name("7_2_0.png"), "0 or 1"):
        check_bffhq_root(root, PARTS)


def test_bffhq_labels_disagree_with_folder(bffhq):
    root, base = bffhq
    path = next((base / "0.5pct" / "align" / "0").glob("*_0_0.png"))
    moved = base / "0.5pct" / "conflict" / "0" / path.name
    path.rename(moved)
    with _raises(ValueError, moved, "disagree with its folder conflict/0"):
        check_bffhq_root(root, PARTS)
    stray = base / "0.5pct" / "align" / moved.name
    moved.rename(stray)
    with _raises(ValueError, stray, "outside an age folder"):
        check_bffhq_root(root, PARTS)


def test_bffhq_errors_name_the_config_key(bffhq):
    root, base = bffhq
    path = next((base / "test").glob("*.png"))
    path.write_bytes(b"")
    key = "conditional.bffhq.root"
    with pytest.raises(ValueError) as e:
        check_bffhq_root(root, PARTS, key=key)
    assert str(e.value).startswith(f"conditional.bffhq.root: image {path} is empty")
    with pytest.raises(ValueError, match=r"^conditional\.bffhq\.parts"):
        check_bffhq_root(root, [], key=key)
