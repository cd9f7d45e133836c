"""Damaged artifacts: every kind (model, classifier, checkpoint, samples and training-set .npz,
metrics Parquet) truncated, with bytes flipped or 4 KiB zeroed in place (same size), gives an
error naming the file or a correct recovery, never a silently changed result. A full disk
says so. One end-to-end run: the workflow refuses to sample a damaged model."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers import UNet2DModel

import biaslab.base.io as bio
from biaslab.base.io import (
    CHECKSUMS,
    CorruptArtifactError,
    load_npz,
    load_torch,
    read_parquet,
    save_torch,
    write_bytes,
    write_npz,
    write_parquet,
)
from biaslab.evaluation.classifier import SmallCNN, load_classifier, save_classifier
from biaslab.models.unets import build_unet
from biaslab.training.train import TrainConfig, load_model, save_model, train_diffusion
from tests.helpers import ROOT, snakemake

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # torch's weights-only unpickler on a damaged pickle
    pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"),
]

SAFETENSORS = "unet/diffusion_pytorch_model.safetensors"


# --------------------------------------------------------------------------- damage


def _damaged(data: bytes, n_random: int = 150, edge: int = 256, seed: int = 0):
    """(name, bytes) variants of ``data``: truncations, single-bit flips at every byte of the
    first and last ``edge`` (headers, zip and Parquet footers) and at ``n_random`` random
    places, and 4 KiB zeroed at the start, middle and end, each keeping the size."""
    n = len(data)
    for cut in sorted({0, 1, 8, n // 3, n // 2, n - 64, n - 22, n - 1} - {n}):
        if 0 <= cut < n:
            yield f"truncated to {cut}", data[:cut]
    rng = np.random.default_rng(seed)
    places = set(range(min(n, edge))) | set(range(max(0, n - edge), n))
    places |= set(rng.integers(0, n, n_random).tolist())
    for pos in sorted(places):
        d = bytearray(data)
        d[pos] ^= 1 << int(rng.integers(8))
        yield f"bit flipped at {pos}", bytes(d)
    for start in {0, max(0, n // 2 - 2048), max(0, n - 4096)}:
        d = bytearray(data)
        d[start : start + 4096] = bytes(len(d[start : start + 4096]))
        if bytes(d) != data:
            yield f"4 KiB zeroed at {start}", bytes(d)


def _check_every_damage(path: Path, load, same, n_random: int = 150, edge: int = 256) -> int:
    """Damage ``path`` every way and load it: a ``CorruptArtifactError`` naming ``path``, or
    exactly the original content. The number of errors."""
    data = path.read_bytes()
    errors = 0
    for name, bad in _damaged(data, n_random, edge):
        path.write_bytes(bad)
        try:
            result = load(path)
        except CorruptArtifactError as e:
            assert str(path) in str(e), (name, str(e))
            assert "snakemake --force" in str(e) and "again" in str(e), str(e)
            errors += 1
        else:
            assert same(result), f"{name}: loaded a changed result"
    path.write_bytes(data)
    assert same(load(path))
    return errors


def _zero_4k_in_place(path: Path) -> None:
    """Zero 4 KiB in the middle of ``path``, keeping its size and time stamps."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(max(0, st.st_size // 2 - 2048))
        fh.write(bytes(min(4096, st.st_size)))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


# --------------------------------------------------------------------------- .npz and Parquet


def _arrays_equal(want: dict[str, np.ndarray]):
    def same(got):
        return got.keys() == want.keys() and all(
            got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]) for k in want
        )

    return same


@pytest.mark.parametrize("kind", ["training set", "samples"])
def test_damaged_npz_is_refused(tmp_path, kind):
    rng = np.random.default_rng(1)
    if kind == "training set":
        arrays = {
            "x": rng.integers(0, 256, (60, 16, 16), dtype=np.uint8),
            "y": rng.choice([6, 9], 60),
            "classes": np.array([6, 9]),
        }
    else:  # a conditional sampler's output: labels is optional, losing it must not pass
        arrays = {
            "images": rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8),
            "seeds": np.arange(12, dtype=np.int64),
            "labels": rng.integers(0, 3, 12),
        }
    path = tmp_path / "data.npz"
    write_npz(path, **arrays)
    assert _check_every_damage(path, load_npz, _arrays_equal(arrays)) > 100


def test_npz_member_dropped_by_the_zip_directory_is_refused(tmp_path):
    """A longer comment length in the first central-directory entry swallows the entries after
    it: numpy then silently lists fewer members; ``load_npz`` refuses the file."""
    path = tmp_path / "s.npz"
    write_npz(path, images=np.zeros((2, 4), np.uint8), labels=np.arange(2))
    data = bytearray(path.read_bytes())
    data[data.index(b"PK\x01\x02") + 33] = 1  # comment length: +256 bytes
    path.write_bytes(bytes(data))
    with np.load(path) as z:
        assert z.files == ["images"]  # labels and the hash are gone, without an error
    with pytest.raises(CorruptArtifactError, match=re.escape(str(path))):
        load_npz(path)


def test_npz_with_a_rewritten_member_is_refused(tmp_path):
    """A valid zip (every CRC-32 right) whose member changed after the hash was taken."""
    import zipfile

    path = tmp_path / "train.npz"
    write_npz(path, x=np.zeros((3, 4), np.uint8), y=np.arange(3))
    other = tmp_path / "other.npz"
    np.savez(other, y=np.arange(1, 4))
    with zipfile.ZipFile(other) as z:
        y_member = z.read("y.npy")
    rewritten = tmp_path / "rewritten.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(rewritten, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, y_member if info.filename == "y.npy" else src.read(info))
    with np.load(rewritten) as z:
        assert z["y"].tolist() == [1, 2, 3]
    with pytest.raises(CorruptArtifactError, match="content changed") as exc:
        load_npz(rewritten)
    assert str(rewritten) in str(exc.value)


def test_npz_without_content_hash_is_refused(tmp_path):
    path = tmp_path / "old.npz"
    np.savez_compressed(path, x=np.arange(3))
    with pytest.raises(CorruptArtifactError, match="older version of biaslab") as exc:
        load_npz(path)
    assert str(path) in str(exc.value)
    assert isinstance(exc.value, ValueError)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.npz"))):
        load_npz(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="reserved"):
        write_npz(tmp_path / "x.npz", __sha256__=np.arange(2))


def test_npz_round_trip_keeps_keys_dtypes_and_scalars(tmp_path):
    arrays = {"images": np.ones((2, 2), np.uint8), "scope": np.array("train"), "f": np.zeros(3)}
    write_npz(tmp_path / "a.npz", **arrays)
    assert _arrays_equal(arrays)(load_npz(tmp_path / "a.npz"))
    with np.load(tmp_path / "a.npz") as z:  # still a plain .npz; the hash is one member more
        assert set(z.files) == {*arrays, "__sha256__"}


@pytest.fixture
def metrics():
    return pd.DataFrame(
        {
            "metric": ["minority_share", "knn_l2", "diversity_lpips"] * 4,
            "depth": ["2", "3", "4"] * 4,
            "value": np.linspace(0, 1, 12),
            "ci_low": [np.nan] * 6 + list(np.linspace(0, 0.5, 6)),
            "k": np.arange(12),
            "confident": [True, False] * 6,
        }
    )


def test_damaged_metrics_parquet_is_refused(tmp_path, metrics):
    path = tmp_path / "metrics.parquet"
    write_parquet(metrics, path)
    want = pd.read_parquet(path)
    pd.testing.assert_frame_equal(read_parquet(path), want)

    def same(got):
        return got.equals(want) and list(got.dtypes) == list(want.dtypes)

    assert _check_every_damage(path, read_parquet, same, n_random=400) > 100


def test_parquet_without_content_hash_is_refused(tmp_path, metrics):
    path = tmp_path / "old.parquet"
    metrics.to_parquet(path, index=False)
    with pytest.raises(CorruptArtifactError, match="older version of biaslab") as exc:
        read_parquet(path)
    assert str(path) in str(exc.value)
    # a renamed column is a changed result too, though the data pages are intact
    write_parquet(metrics, path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"ci_low", b"ci_lox"))
    with pytest.raises(CorruptArtifactError, match="content changed"):
        read_parquet(path)


# --------------------------------------------------------------------------- classifier


def _state_equal(want: dict[str, torch.Tensor]):
    def same(got):
        return got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)

    return same


def test_damaged_classifier_is_refused(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(1, 2)
    path = tmp_path / "class_classifier.pt"
    save_classifier(model, np.array([6, 9]), path)
    want = model.state_dict()

    def load(p):
        m, classes = load_classifier(p, "cpu")
        return m.state_dict(), classes.tolist()

    def same(got):
        return _state_equal(want)(got[0]) and got[1] == [6, 9]

    assert _check_every_damage(path, load, same) > 100
    _zero_4k_in_place(path)
    with pytest.raises(CorruptArtifactError, match=r"remake it \(rule train_classifier\)") as exc:
        load_classifier(path, "cpu")
    assert str(path) in str(exc.value) and "content changed" in str(exc.value)


def test_classifier_without_content_hash_is_refused(tmp_path):
    path = tmp_path / "old.pt"
    model = SmallCNN(1, 2)
    torch.save({"state_dict": model.state_dict(), "in_channels": 1, "classes": [6, 9]}, path)
    with pytest.raises(CorruptArtifactError, match="older version") as exc:
        load_classifier(path, "cpu")
    assert str(path) in str(exc.value) and "rule train_classifier" in str(exc.value)


# --------------------------------------------------------------------------- model folder


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    unet = build_unet("2", resolution=16, width=0.25).eval()
    out = tmp_path / "model"
    save_model(unet, TrainConfig(depth="2", width=0.25), out)
    return out


def test_model_checksums_list_every_file(model_dir):
    listing = yaml.safe_load((model_dir / CHECKSUMS).read_text())
    files = sorted(
        p.relative_to(model_dir).as_posix()
        for p in model_dir.rglob("*")
        if p.is_file() and p.name != CHECKSUMS
    )
    assert sorted(listing["files"]) == files
    assert SAFETENSORS in files and "train_config.yaml" in files
    assert listing["files"][SAFETENSORS] == bio.sha256_file(model_dir / SAFETENSORS)
    UNet2DModel.from_pretrained(model_dir / "unet")  # still a plain diffusers folder
    (model_dir / ".snakemake_timestamp").touch()  # Snakemake's marker is not listed
    load_model(model_dir)


@pytest.mark.parametrize(
    "name", [SAFETENSORS, "unet/config.json", "scheduler/scheduler_config.json"]
)
def test_damaged_model_file_is_refused(model_dir, name):
    path = model_dir / name
    want = load_model(model_dir)[0].state_dict()
    data = path.read_bytes()
    n_errors = _check_every_damage(
        path, lambda _p: load_model(model_dir)[0].state_dict(), _state_equal(want), n_random=40
    )
    assert n_errors > 40
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptArtifactError) as exc:
        load_model(model_dir)
    message = str(exc.value)
    assert message.startswith(f"{path}: its content changed"), message
    assert message.endswith(
        f"remake it (rule train_diffusion) with `snakemake --force {model_dir}` (and your usual "
        "options), then run `snakemake` again to update what depends on it"
    ), message


def test_zeroed_4k_in_model_weights_keeping_size_and_mtime_is_refused(model_dir):
    _zero_4k_in_place(model_dir / SAFETENSORS)
    with pytest.raises(CorruptArtifactError, match=re.escape(str(model_dir / SAFETENSORS))):
        load_model(model_dir)


def test_model_without_or_with_damaged_checksums_is_refused(model_dir):
    listing = model_dir / CHECKSUMS
    data = listing.read_bytes()
    i = data.index(b'"files"') + 20
    listing.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :])
    with pytest.raises(CorruptArtifactError, match=re.escape(str(listing))):
        load_model(model_dir)
    listing.unlink()
    with pytest.raises(CorruptArtifactError, match="older version of biaslab, or damaged") as e:
        load_model(model_dir)
    assert str(listing) in str(e.value) and "rule train_diffusion" in str(e.value)
    with pytest.raises(FileNotFoundError):
        load_model(model_dir.parent / "no-such-model")


def test_model_file_missing_is_refused(model_dir):
    (model_dir / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(CorruptArtifactError, match=r"scheduler_config\.json: missing"):
        load_model(model_dir)


# --------------------------------------------------------------------------- checkpoints

CKPT = TrainConfig(depth="2", width=0.25, steps=6, batch_size=4, checkpoint_every=2, seed=3)


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, 16, 16), dtype=np.uint8)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, one_thread):
    """The reference: CKPT trained in one go, its checkpoint files and the final weights."""
    ckpt = tmp_path_factory.mktemp("ckpt")
    unet, log = train_diffusion(_images(), CKPT, checkpoint_dir=ckpt, progress=False)
    return ckpt, unet.state_dict(), log["loss"].tolist()


def _copy_checkpoints(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["last.pt", "prev.pt"]
    return dst


def test_checkpoint_keeps_the_previous_one(uninterrupted):
    ckpt, _, _ = uninterrupted
    assert load_torch(ckpt / "last.pt")["step"] == 6
    assert load_torch(ckpt / "prev.pt")["step"] == 4


def test_damaged_checkpoint_file_is_detected(uninterrupted, tmp_path):
    path = _copy_checkpoints(uninterrupted[0], tmp_path / "c") / "last.pt"
    want = load_torch(path)

    def same(got):
        return got["step"] == want["step"] and _state_equal(want["model"])(got["model"])

    # torch's weights-only unpickler is slow (60 ms a load here): fewer places than for the
    # classifier, a file of the same format
    assert _check_every_damage(path, load_torch, same, n_random=30, edge=32) > 50


@pytest.mark.parametrize("damage", ["truncate", "zero 4 KiB", "missing"])
def test_damaged_last_checkpoint_falls_back_to_prev(uninterrupted, tmp_path, capsys, damage):
    """ "missing": a crash between renaming last.pt to prev.pt and the new one to last.pt."""
    ref_ckpt, ref_weights, ref_loss = uninterrupted
    ckpt = _copy_checkpoints(ref_ckpt, tmp_path / "c")
    last = ckpt / "last.pt"
    if damage == "truncate":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "zero 4 KiB":
        _zero_4k_in_place(last)
    else:
        last.unlink()
    unet, got_log = train_diffusion(_images(), CKPT, checkpoint_dir=ckpt, progress=False)
    err = capsys.readouterr().err
    assert (f"warning: ignoring damaged checkpoint {last}" in err) == (damage != "missing")
    assert (ckpt / "last.pt.corrupt").exists() == (damage != "missing")
    assert f"resuming from {ckpt / 'prev.pt'} at step 4" in err
    assert got_log["loss"].tolist() == ref_loss
    assert _state_equal(ref_weights)(unet.state_dict())  # bit-identical to one go
    assert load_torch(ckpt / "last.pt")["step"] == 6
    assert load_torch(ckpt / "prev.pt")["step"] == 4


def test_both_checkpoints_damaged_starts_over(uninterrupted, tmp_path, capsys):
    ref_ckpt, ref_weights, ref_loss = uninterrupted
    ckpt = _copy_checkpoints(ref_ckpt, tmp_path / "c")
    (ckpt / "last.pt").write_bytes(b"")
    _zero_4k_in_place(ckpt / "prev.pt")
    unet, log = train_diffusion(_images(), CKPT, checkpoint_dir=ckpt, progress=False)
    err = capsys.readouterr().err
    assert f"ignoring damaged checkpoint {ckpt / 'last.pt'}" in err
    assert f"ignoring damaged checkpoint {ckpt / 'prev.pt'}" in err
    assert "training starts over" in err and "resuming" not in err
    assert log["loss"].tolist() == ref_loss
    assert _state_equal(ref_weights)(unet.state_dict())


def test_checkpoint_of_another_config_is_still_an_error(uninterrupted, tmp_path):
    ckpt = _copy_checkpoints(uninterrupted[0], tmp_path / "c")
    (ckpt / "last.pt").write_bytes(b"garbage")
    other = TrainConfig(**{**CKPT.__dict__, "lr": 1e-3})
    with pytest.raises(RuntimeError, match="different training config") as exc:
        train_diffusion(_images(), other, checkpoint_dir=ckpt, progress=False)
    assert str(ckpt / "prev.pt") in str(exc.value)


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def disk_full_after(monkeypatch):
    """Make io's low-level write fail with ENOSPC once ``budget`` bytes are written."""
    real = bio._write_all

    def arm(budget: int):
        left = [budget]

        def write(fd, data):
            view = memoryview(data).cast("B")
            n = min(left[0], view.nbytes)
            left[0] -= n
            real(fd, view[:n])
            if n < view.nbytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(bio, "_write_all", write)

    return arm


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


WRITERS = {
    "npz": ("s.npz", lambda p: write_npz(p, images=np.random.default_rng(0).random(5000))),
    "parquet": ("m.parquet", lambda p: write_parquet(pd.DataFrame({"a": np.arange(5000)}), p)),
    "torch": ("c.pt", lambda p: save_torch({"w": torch.rand(5000)}, p)),
    "bytes": ("b.txt", lambda p: write_bytes(p, b"x" * 5000)),
    "model": (
        "model",
        lambda p: save_model(build_unet("2", resolution=16, width=0.25), TrainConfig(), p),
    ),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("budget", [0, 100])
def test_full_disk_says_so_and_leaves_the_old_file(tmp_path, disk_full_after, kind, budget):
    name, write = WRITERS[kind]
    path = tmp_path / name
    write(path)
    before = _tree(tmp_path)
    disk_full_after(budget)
    with pytest.raises(OSError) as exc:
        write(path)
    assert exc.value.errno == errno.ENOSPC
    assert "No space left on device" in str(exc.value) and str(path) in str(exc.value)
    assert _tree(tmp_path) == before  # the old file as it was, no temporary files


def test_full_disk_checkpoint_keeps_both_checkpoints(uninterrupted, tmp_path, disk_full_after):
    ckpt = _copy_checkpoints(uninterrupted[0], tmp_path / "c")
    # a longer run resumes from step 6 and fails writing its checkpoint at step 8
    longer = TrainConfig(**{**CKPT.__dict__, "steps": 8})
    state = load_torch(ckpt / "last.pt")
    save_torch({**state, "config": longer.as_dict()}, ckpt / "last.pt")
    before = _tree(ckpt)
    disk_full_after(4096)
    with pytest.raises(OSError, match="No space left on device") as exc:
        train_diffusion(_images(), longer, checkpoint_dir=ckpt, progress=False)
    assert str(ckpt / "last.pt") in str(exc.value)
    assert _tree(ckpt) == before


def test_disk_full_is_recognised_however_it_is_wrapped():
    inner = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise inner
        except OSError:
            # torch's zip writer: the OSError is only the implicit context
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # noqa: B904
    except RuntimeError as wrapped:
        assert bio._is_disk_full(wrapped)
    text = "Error while serializing: I/O error: No space left on device (os error 28)"
    assert bio._is_disk_full(Exception(text))
    assert not bio._is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not bio._is_disk_full(RuntimeError("unexpected pos 704 vs 598"))


# --------------------------------------------------------------------------- workflow


def _bytes(paths):
    return {p.name: p.read_bytes() for p in paths}


@pytest.mark.slow
def test_workflow_refuses_a_damaged_model_and_the_documented_repair_works(tmp_path):
    """The tiny config cut to one model and one sampler cell, evaluated. (1) Delete its
    samples (their metrics exist: Snakemake alone has "nothing to be done"): the documented
    repair, ``snakemake --force <file> && snakemake``, restores byte-identical samples and
    metrics. (2) Zero 4 KiB of the model's weights (same size and time stamp, so Snakemake
    sees nothing), force the sampling again: the job fails naming the file and the command
    that remakes it; that command and a rerun restore byte-identical results."""
    config = yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text())
    config["model"]["depths"] = ["2"]
    config["sampling"]["grid"] = config["sampling"]["grid"][:1]
    del config["difflens"]
    config["claims"] = []
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(config))
    args = ("--cores", "2", "--configfile", "one.yaml")
    until = ("--until", "sample_evaluate_mnist69")  # the model's sampling and evaluation job
    snakemake(*args, *until, cwd=tmp_path, timeout=600, check=True)
    [samples] = (tmp_path / "results" / "samples").rglob("samples.npz")
    [metrics] = (tmp_path / "results" / "eval").rglob("metrics.parquet")
    [weights] = (tmp_path / "results" / "models").rglob("diffusion_pytorch_model.safetensors")
    before = _bytes([samples, metrics])
    target = str(samples.relative_to(tmp_path))

    def repair(path):  # docs/guide/reliability.md, "Verified on load, and how to recover"
        snakemake(*args, "--force", path, cwd=tmp_path, timeout=600, check=True)
        snakemake(*args, *until, cwd=tmp_path, timeout=600, check=True)

    samples.unlink()
    repair(target)
    assert _bytes([samples, metrics]) == before

    _zero_4k_in_place(weights)
    proc = snakemake(target, *args, "--forcerun", until[1], cwd=tmp_path, timeout=600)
    assert proc.returncode != 0
    [log] = (tmp_path / "logs" / "sample_evaluate").rglob("*.log")
    error = "biaslab.base.io.CorruptArtifactError: "
    message = [line for line in log.read_text().splitlines() if line.startswith(error)]
    model = weights.relative_to(tmp_path).parents[1]
    assert message == [
        f"{error}{weights.relative_to(tmp_path)}: its content "
        f"changed after it was written (the sha256 recorded in {model / CHECKSUMS} differs); "
        f"remake it (rule train_diffusion) with `snakemake --force {model}` (and your usual "
        "options), then run `snakemake` again to update what depends on it"
    ]
    assert str(weights.relative_to(tmp_path)) in proc.stdout + proc.stderr
    assert not samples.exists()  # Snakemake removed the failed job's output
    repair(str(model))
    assert _bytes([samples, metrics]) == before
