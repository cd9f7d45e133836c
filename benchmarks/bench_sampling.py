"""Sampling throughput: biaslab.sampling.generate against diffusers' DDPMPipeline and
DDIMPipeline, side by side in one process, on the same U-Net and schedule.

Both draw per-sample noise from one generator per sample, so with the same seeds the DDIM
(eta = 0) images must agree; the benchmark prints the largest pixel difference as a check.

    python benchmarks/bench_sampling.py --depth 2 --resolution 32 --n 64 --steps 25 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from biaslab.models.unets import build_unet, default_device
from biaslab.sampling.generate import SamplerConfig, generate
from biaslab.sampling.samplers import sample_seed
from biaslab.training.train import TrainConfig, make_noise_scheduler


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print and return images/s per sampler: ``{"ddim": {"biaslab": ..., "diffusers": ...},
    "ddpm": {...}}``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", default="2")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--n", type=int, default=64, help="images per run (one batch)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = default_device()
    unet = build_unet(args.depth, resolution=args.resolution, in_channels=args.channels)
    unet = unet.to(device).eval()
    sched_cfg = dict(make_noise_scheduler(TrainConfig()).config)
    seeds = [sample_seed(0, i) for i in range(args.n)]
    print(
        f"device {device}, depth {args.depth}, {args.resolution} px, {args.channels} ch, "
        f"batch {args.n}, {args.steps} steps, {args.threads} threads, median of {args.repeats}"
    )

    def ours(sampler: str, eta: float):
        cfg = SamplerConfig(
            sampler=sampler, steps=args.steps, eta=eta, n_samples=args.n, batch_size=args.n
        )
        return lambda: generate(unet, sched_cfg, cfg, progress=False)[0]

    def pipe(kind: str):
        # the timestep spacing of ours (SamplerConfig's default), as a keyword: from_config
        # drops the entries listed in the config's _use_default_values
        spacing = SamplerConfig(sampler=kind).timestep_spacing
        if kind == "ddim":
            sched = DDIMScheduler.from_config(sched_cfg, timestep_spacing=spacing)
            p = DDIMPipeline(unet=unet, scheduler=sched)
            kw = {"eta": 0.0}
        else:
            sched = DDPMScheduler.from_config(sched_cfg, timestep_spacing=spacing)
            p = DDPMPipeline(unet=unet, scheduler=sched)
            kw = {}
        p.set_progress_bar_config(disable=True)

        def run():
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            with torch.no_grad():
                return p(
                    batch_size=args.n,
                    generator=gens,
                    num_inference_steps=args.steps,
                    output_type="np",
                    **kw,
                ).images

        return run

    result = {}
    for kind, eta in (("ddim", 0.0), ("ddpm", 1.0)):
        t_ours, x_ours = timed(ours(kind, eta), args.repeats)
        t_pipe, x_pipe = timed(pipe(kind), args.repeats)
        result[kind] = {"biaslab": args.n / t_ours, "diffusers": args.n / t_pipe}
        line = (
            f"{kind}: biaslab {args.n / t_ours:.1f} images/s, diffusers {type(pipe).__name__} "
            f"{args.n / t_pipe:.1f} images/s, ratio {t_pipe / t_ours:.2f}x"
        )
        line = line.replace("function", f"{kind.upper()}Pipeline")
        if kind == "ddim":
            ours_f = x_ours.transpose(0, 2, 3, 1).astype(np.float64) / 255.0
            diff = np.abs(ours_f - np.asarray(x_pipe, dtype=np.float64)).max()
            line += f"; max |pixel difference| {diff:.4f} (uint8 step 0.0039)"
        print(line, flush=True)
    return result


if __name__ == "__main__":
    main()
