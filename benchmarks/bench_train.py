"""Benchmark: training images/s of biaslab's loop against a plain diffusers-style loop.

    python benchmarks/bench_train.py [--depth 2] [--resolution 32] [--batch 64] [--steps 30]

Both train the same Table-A U-Net on the same random images, side by side in one process
(alternating, after a warm-up), and the script prints images/s of each and their ratio.

* reference ("plain"): the loop of diffusers' unconditional training example: a DataLoader
  over a TensorDataset (shuffle), fp32, ``torch.optim.AdamW`` with ``foreach=False``
  (one kernel per tensor), ``EMAModel(foreach=False)``, ``DDPMScheduler.add_noise``;
* ours: ``biaslab.training.train.train_diffusion``: the dataset resident on the device, all random
  draws from one generator, fused AdamW on CUDA, EMA with foreach, bf16 autocast (``--precision``);
  with ``--channels-last`` / ``--compile`` also the loop with ``training.channels_last`` /
  ``training.compile`` (and both), each timed in the same alternation.

On CUDA both use the GPU; on CPU both use ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from biaslab.models.unets import build_unet, default_device
from biaslab.training.train import TrainConfig, train_diffusion


def plain_loop(images: np.ndarray, cfg: TrainConfig, device: torch.device) -> float:
    """images/s of the reference loop over ``cfg.steps`` steps (after 3 warm-up steps)."""
    x = torch.from_numpy(images).float() / 127.5 - 1
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x), batch_size=cfg.batch_size, shuffle=True, drop_last=True
    )
    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg.depth, resolution=x.shape[-1], in_channels=x.shape[1]).to(device)
    sched = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, foreach=False)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, foreach=False)
    step, t0 = 0, None
    while step < cfg.steps + 3:
        for (batch,) in loader:
            if step == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            if step == cfg.steps + 3:
                break
            batch = batch.to(device)
            noise = torch.randn_like(batch)
            t = torch.randint(0, cfg.num_train_timesteps, (batch.shape[0],), device=device)
            loss = F.mse_loss(unet(sched.add_noise(batch, noise, t), t).sample, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            ema.step(unet.parameters())
            step += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return cfg.steps * cfg.batch_size / (time.perf_counter() - t0)


def ours(images: np.ndarray, cfg: TrainConfig, device: torch.device) -> float:
    with tempfile.TemporaryDirectory() as ckpt:
        _, log = train_diffusion(
            images,
            dataclasses.replace(cfg, steps=cfg.steps + 3),
            checkpoint_dir=ckpt,
            device=device,
            progress=False,
        )
    per_step = log["images_per_s"].to_numpy()[3:]
    return float(cfg.batch_size / np.mean(cfg.batch_size / per_step))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print and return the median images/s: ``plain``, ``biaslab`` and the variants asked
    for (``channels_last``, ``compile``, ``channels_last+compile``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--depth", default="2")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-images", type=int, default=1024)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=1)
    ap.add_argument("--channels-last", action="store_true", help="also time channels_last")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = default_device()
    images = np.random.default_rng(0).integers(
        0, 256, (args.n_images, args.channels, args.resolution, args.resolution), dtype=np.uint8
    )
    cfg = TrainConfig(
        depth=args.depth,
        steps=args.steps,
        batch_size=args.batch,
        checkpoint_every=10**9,
        warmup_steps=0,
        precision=args.precision,
    )
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(
        f"depth {args.depth}, {args.resolution} px, {args.channels} ch, batch {args.batch}, "
        f"{args.steps} timed "
        f"steps x {args.repeats} repeats, torch {torch.__version__}, {name}"
    )
    variants = {"biaslab": {}}
    if args.channels_last:
        variants["channels_last"] = {"channels_last": True}
    if args.compile:
        variants["compile"] = {"compile": True}
    if args.channels_last and args.compile:
        variants["channels_last+compile"] = {"channels_last": True, "compile": True}
    rates: dict[str, list[float]] = {"plain": [], **{name: [] for name in variants}}
    for _ in range(args.repeats):  # alternate so drifts in machine load hit every loop
        rates["plain"].append(plain_loop(images, cfg, device))
        for name, options in variants.items():
            rates[name].append(ours(images, dataclasses.replace(cfg, **options), device))
    result = {name: float(np.median(r)) for name, r in rates.items()}
    labels = {
        "plain": "plain diffusers-style loop (fp32, DataLoader, per-tensor AdamW)",
        "biaslab": f"biaslab loop ({args.precision}, resident data, fused/foreach)",
        "channels_last": "  + channels_last",
        "compile": "  + torch.compile",
        "channels_last+compile": "  + channels_last + torch.compile",
    }
    for name, rate in result.items():
        ratio = "" if name == "plain" else f"  {rate / result['plain']:.2f}x"
        print(f"{labels[name]:<66}{rate:9.1f} images/s{ratio}")
    return result


if __name__ == "__main__":
    main()
