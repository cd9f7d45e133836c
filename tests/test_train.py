"""Tests of biaslab.training.train and biaslab.base.io: crash-resume, non-finite loss, saving,
hashing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler, UNet2DModel

from biaslab.base.io import CHECKSUMS, atomic_path, save_torch
from biaslab.models.unets import build_unet
from biaslab.training.train import (
    KILL_AT_STEP_ENV,
    NonFiniteLossError,
    TrainConfig,
    checkpoint_dir_for,
    load_model,
    save_model,
    train_diffusion,
)

TINY = TrainConfig(
    depth="2", width=0.25, steps=12, batch_size=8, checkpoint_every=4, warmup_steps=3, seed=5
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int = 24, res: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, res, res), dtype=np.uint8)


# A child process: trains TINY on _images() with one thread, then saves the EMA weights and
# the log. The training config and images are rebuilt identically in every child.
_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from biaslab.training.train import TrainConfig, train_diffusion
    cfg = TrainConfig(**{cfg!r})
    images = np.random.default_rng(0).integers(0, 256, (24, 16, 16), dtype=np.uint8)
    unet, log = train_diffusion(images, cfg, checkpoint_dir=sys.argv[1], progress=False)
    torch.save({{"ema": unet.state_dict(), "log": log.to_dict("list")}}, sys.argv[2])
    """
)


def _run_child(ckpt_dir: Path, out: Path, kill_at: int | None = None, cfg: TrainConfig = TINY):
    import dataclasses

    env = {k: v for k, v in os.environ.items() if k != KILL_AT_STEP_ENV}
    if kill_at is not None:
        env[KILL_AT_STEP_ENV] = str(kill_at)
    code = _CHILD.format(cfg=dataclasses.asdict(cfg))
    return subprocess.run(
        [sys.executable, "-c", code, str(ckpt_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --------------------------------------------------------------------------- crash-resume


@pytest.mark.parametrize("objective", ["epsilon", "edm"])
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, objective):
    import dataclasses

    cfg = dataclasses.replace(TINY, objective=objective)
    resumed_dir, fresh_dir = tmp_path / "resumed", tmp_path / "fresh"

    killed = _run_child(resumed_dir, tmp_path / "never.pt", kill_at=6, cfg=cfg)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "never.pt").exists()
    assert sorted(p.name for p in resumed_dir.iterdir()) == ["last.pt"]  # no .tmp leftovers
    ckpt = torch.load(resumed_dir / "last.pt", weights_only=False)
    assert ckpt["step"] == 4
    assert [r["step"] for r in ckpt["log"]] == [1, 2, 3, 4]

    resumed = _run_child(resumed_dir, tmp_path / "resumed.pt", cfg=cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert "at step 4" in resumed.stderr

    fresh = _run_child(fresh_dir, tmp_path / "fresh.pt", cfg=cfg)
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr

    a = torch.load(tmp_path / "resumed.pt", weights_only=False)
    b = torch.load(tmp_path / "fresh.pt", weights_only=False)
    assert a["log"]["step"] == list(range(1, 13))
    assert a["log"]["step"] == b["log"]["step"]
    assert a["log"]["loss"] == b["log"]["loss"]
    assert a["log"]["lr"] == b["log"]["lr"]
    # Steps 1-4 of the resumed log are the killed run's (read back, not recomputed).
    assert a["log"]["images_per_s"][:4] == [r["images_per_s"] for r in ckpt["log"]]
    assert a["ema"].keys() == b["ema"].keys()
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    # The raw (non-EMA) weights in the final checkpoints agree too.
    ca = torch.load(resumed_dir / "last.pt", weights_only=False)
    cb = torch.load(fresh_dir / "last.pt", weights_only=False)
    assert ca["step"] == cb["step"] == 12
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    # And the EMA is not just the raw model (the EMA actually averaged).
    assert any(not torch.equal(a["ema"][k], ca["model"][k]) for k in ca["model"])


def test_rerun_of_finished_training_returns_same_model(tmp_path):
    cfg = TrainConfig(depth="2", width=0.25, steps=3, batch_size=4, checkpoint_every=10)
    images = _images(8)
    first, log1 = train_diffusion(images, cfg, checkpoint_dir=tmp_path, progress=False)
    second, log2 = train_diffusion(images, cfg, checkpoint_dir=tmp_path, progress=False)
    assert log1["loss"].tolist() == log2["loss"].tolist()
    assert len(log2) == 3
    for (k, v), (_, w) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_checkpoint_with_other_config_is_refused(tmp_path):
    images = _images(8)
    cfg = TrainConfig(depth="2", width=0.25, steps=2, batch_size=4, checkpoint_every=1)
    train_diffusion(images, cfg, checkpoint_dir=tmp_path, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    other = TrainConfig(depth="2", width=0.25, steps=2, batch_size=4, checkpoint_every=1, lr=1e-3)
    with pytest.raises(RuntimeError, match="different training config") as exc:
        train_diffusion(images, other, checkpoint_dir=tmp_path, progress=False)
    assert str(tmp_path / "last.pt") in str(exc.value)
    assert (tmp_path / "last.pt").read_bytes() == before  # left alone


def test_train_log_and_shapes(tmp_path):
    cfg = TrainConfig(depth="2", width=0.25, steps=4, batch_size=4, warmup_steps=2)
    images = np.random.default_rng(1).integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    unet, log = train_diffusion(images, cfg, checkpoint_dir=tmp_path, progress=False)
    assert unet.config.in_channels == 3
    assert unet.config.sample_size == 16
    assert not unet.training
    assert list(log.columns) == ["step", "loss", "lr", "images_per_s"]
    assert log["step"].tolist() == [1, 2, 3, 4]
    assert np.isfinite(log["loss"]).all()
    # Linear warm-up over 2 steps, then constant (the lr used at each step is logged).
    np.testing.assert_allclose(log["lr"], [0.0, 1e-4, 2e-4, 2e-4])
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 4


# --------------------------------------------------------------------------- non-finite loss


def test_nan_input_raises_non_finite_loss(tmp_path):
    images = _images(8).astype(np.float32)
    images[:] = np.nan
    cfg = TrainConfig(depth="2", width=0.25, steps=3, batch_size=4)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 1 "):
        train_diffusion(images, cfg, checkpoint_dir=tmp_path, progress=False)
    assert not (tmp_path / "last.pt").exists()
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_absurd_lr_raises_non_finite_loss(tmp_path):
    cfg = TrainConfig(
        depth="2", width=0.25, steps=30, batch_size=4, lr=1e30, warmup_steps=0, grad_clip=0.0
    )
    with pytest.raises(NonFiniteLossError, match=r"at step ([2-9]|[12]\d|30) .*lr 1e\+30"):
        train_diffusion(_images(8), cfg, checkpoint_dir=tmp_path, progress=False)


def test_unknown_precision_is_refused(tmp_path):
    cfg = TrainConfig(depth="2", width=0.25, steps=1, batch_size=2, precision="fp16")
    with pytest.raises(ValueError, match=r"training\.precision"):
        train_diffusion(_images(4), cfg, checkpoint_dir=tmp_path, progress=False)


def test_train_config_from_dict():
    cfg = TrainConfig.from_dict({"depth": "4", "steps": 10})
    assert cfg == TrainConfig(depth="4", steps=10)
    with pytest.raises(ValueError, match=r"training: unknown keys \['stpes'\]"):
        TrainConfig.from_dict({"stpes": 10})


# --------------------------------------------------------------------------- checkpoint dirs


def test_checkpoint_dir_for(tmp_path):
    images = _images(8)
    base = checkpoint_dir_for(tmp_path, TINY, images)
    assert base.parent == tmp_path
    assert checkpoint_dir_for(tmp_path, TINY, images.copy()) == base
    assert checkpoint_dir_for(tmp_path, TrainConfig(**{**TINY.__dict__}), images) == base
    changed = images.copy()
    changed[3, 5, 7] ^= 1
    others = {
        checkpoint_dir_for(tmp_path, TrainConfig(**{**TINY.__dict__, "lr": 1e-3}), images),
        checkpoint_dir_for(tmp_path, TrainConfig(**{**TINY.__dict__, "seed": 6}), images),
        checkpoint_dir_for(tmp_path, TrainConfig(**{**TINY.__dict__, "depth": "3"}), images),
        checkpoint_dir_for(tmp_path, TrainConfig(**{**TINY.__dict__, "steps": 13}), images),
        checkpoint_dir_for(tmp_path, TINY, changed),
        checkpoint_dir_for(tmp_path, TINY, images[:-1]),
    }
    assert base not in others
    assert len(others) == 6
    # Non-contiguous views hash by content.
    fortran = np.asfortranarray(images)
    assert checkpoint_dir_for(tmp_path, TINY, fortran) == base


# --------------------------------------------------------------------------- save / load


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return build_unet("2", resolution=16, width=0.25).eval()


def test_save_model_layout_and_round_trip(tmp_path, tiny_unet):
    out = tmp_path / "models" / "d2"
    save_model(tiny_unet, TINY, out, extra={"data": {"fraction": 0.1}})
    files = {p.name for p in out.iterdir()}
    assert files == {
        "unet",
        "scheduler",
        "model_index.json",  # a diffusers pipeline folder (tests/test_interop.py)
        "objective.json",
        "train_config.yaml",
        CHECKSUMS,
    }
    assert not [p for p in out.parent.iterdir() if p.name != "d2"]  # no temporary siblings
    assert not list(out.rglob("*.tmp*"))

    reloaded = UNet2DModel.from_pretrained(out / "unet")
    sd_a, sd_b = tiny_unet.state_dict(), reloaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k

    resolved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert resolved["training"]["depth"] == "2"
    assert resolved["training"]["width"] == 0.25
    assert resolved["training"]["steps"] == 12
    assert resolved["data"] == {"fraction": 0.1}

    unet, sched = load_model(out)
    assert isinstance(sched, DDPMScheduler)
    assert not unet.training
    assert sched.config.num_train_timesteps == TINY.num_train_timesteps
    assert sched.config.beta_schedule == "linear"
    assert sched.config.prediction_type == "epsilon"
    assert sched.config["objective"] == {"objective": "epsilon"}  # from objective.json
    for k, v in unet.state_dict().items():
        assert torch.equal(v, sd_a[k]), k
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            unet(x, torch.tensor([3, 500])).sample, tiny_unet(x, torch.tensor([3, 500])).sample
        )


def test_save_model_overwrites_existing(tmp_path, tiny_unet):
    out = tmp_path / "m"
    save_model(tiny_unet, TINY, out)
    (out / "stale.txt").write_text("old")
    other = TrainConfig(**{**TINY.__dict__, "steps": 99})
    save_model(tiny_unet, other, out)
    assert not (out / "stale.txt").exists()
    assert yaml.safe_load((out / "train_config.yaml").read_text())["training"]["steps"] == 99


def test_save_model_failure_leaves_nothing(tmp_path, tiny_unet, monkeypatch):
    import biaslab.training.train as train_mod

    def boom(cfg):
        raise RuntimeError("disk full")

    monkeypatch.setattr(train_mod, "make_noise_scheduler", boom)
    out = tmp_path / "m"
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(tiny_unet, TINY, out)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp != target
        tmp.write_text("one")
        assert not target.exists()
    assert target.read_text() == "one"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]

    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_text("two")
        raise KeyError("crash")
    assert target.read_text() == "one"  # untouched
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_atomic_path_directory(tmp_path):
    target = tmp_path / "d"
    with pytest.raises(ValueError), atomic_path(target, directory=True) as tmp:
        (tmp / "x").write_text("x")
        raise ValueError
    assert list(tmp_path.iterdir()) == []

    with atomic_path(target, directory=True) as tmp:
        (tmp / "x").write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    assert (target / "x").read_text() == "x"

    with pytest.raises(ValueError), atomic_path(target, directory=True) as tmp:
        (tmp / "y").write_text("y")
        raise ValueError
    assert [p.name for p in target.iterdir()] == ["x"]  # the old directory is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_save_torch_round_trip(tmp_path):
    save_torch({"a": torch.arange(3)}, tmp_path / "x.pt")
    assert torch.equal(torch.load(tmp_path / "x.pt")["a"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_atomic_path_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "d", directory=True) as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


# --------------------------------------------------------------------------- preemption


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_stop_signal_checkpoints_exits_nonzero_and_resume_matches(tmp_path, sig):
    """SLURM's --signal / preemption: the job checkpoints, fails, and the retry resumes."""
    import dataclasses

    # 200 steps (about 9 s here): the signal follows the first checkpoint within 50 ms
    cfg = dataclasses.replace(TINY, steps=200, checkpoint_every=10)
    code = _CHILD.format(cfg=dataclasses.asdict(cfg))
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_STEP_ENV}
    ckpt_dir = tmp_path / "preempted"
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(ckpt_dir), str(tmp_path / "never.pt")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not (ckpt_dir / "last.pt").exists():
        assert child.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    child.send_signal(sig)
    _, err = child.communicate(timeout=240)
    assert child.returncode != 0
    assert f"received {signal.Signals(sig).name}" in err and "Preempted" in err
    step = torch.load(ckpt_dir / "last.pt", weights_only=False)["step"]
    assert 10 <= step < 200
    assert not (tmp_path / "never.pt").exists()

    def finish(ckpt: Path, out: Path) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(ckpt), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return torch.load(out, weights_only=False)

    resumed = finish(ckpt_dir, tmp_path / "resumed.pt")
    fresh = finish(tmp_path / "fresh", tmp_path / "fresh.pt")
    assert resumed["log"]["loss"] == fresh["log"]["loss"]
    for k in fresh["ema"]:
        assert torch.equal(resumed["ema"][k], fresh["ema"][k]), k


@pytest.mark.parametrize("option", ["channels_last", "compile"])
def test_channels_last_and_compile_train_the_same_model(tmp_path, option, monkeypatch):
    """The GPU throughput options change the memory layout / the kernels, not the maths: the
    same losses and EMA weights as the plain loop (to float rounding), resumable as ever.
    ``torch.compile`` runs with the ``aot_eager`` backend here: the same graph capture and
    compiled autograd as on a GPU, without inductor's C++ build (minutes on 2 cores)."""
    import dataclasses
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))

    images = _images()
    cfg = dataclasses.replace(TINY, steps=6)
    ref, ref_log = train_diffusion(images, cfg, checkpoint_dir=tmp_path / "ref", progress=False)
    fast_cfg = dataclasses.replace(cfg, **{option: True})
    fast, log = train_diffusion(images, fast_cfg, checkpoint_dir=tmp_path / "f", progress=False)
    np.testing.assert_allclose(log["loss"], ref_log["loss"], rtol=1e-3, atol=1e-5)
    # Adam moves every weight by about lr per step whatever its gradient's size, so float
    # rounding can flip a near-zero gradient's sign: at most 2 lr per step apart
    atol = 2 * cfg.lr * cfg.steps
    for (k, a), (_, b) in zip(ref.state_dict().items(), fast.state_dict().items(), strict=True):
        assert b.is_contiguous(), k  # returned in the standard layout
        torch.testing.assert_close(b, a, rtol=0, atol=atol, msg=k)
    save_model(fast, fast_cfg, tmp_path / "model")  # safetensors takes contiguous tensors only
    loaded, _ = load_model(tmp_path / "model")
    torch.testing.assert_close(loaded.state_dict(), fast.state_dict())
    # a checkpoint of the fast loop resumes (here: is complete) under the same config
    again, _ = train_diffusion(images, fast_cfg, checkpoint_dir=tmp_path / "f", progress=False)
    torch.testing.assert_close(again.state_dict(), fast.state_dict())
