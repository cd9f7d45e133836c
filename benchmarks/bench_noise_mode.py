"""DDIM's noise mode (issue 21, item 6): rules for the predicted x0, side by side in one process.

Some seeds end as pixel noise under DDIM with x0 clipped and eps re-derived from the clipped
x0 (the rule before). A U-Net predicts eps of about unit norm whatever the draw, so a seed
whose noise has a sample std of 1.05 to 1.10 gets eps ~ 0.9 x at t = 999, and DDIM's ``x0 =
(x - sqrt(1 - abar) eps) / sqrt(abar)`` is its own noise times ~14 (1 / sqrt(abar_999) = 157).
Clipped, that is sign(x); the re-derived eps is ~x, and later steps add the clipped noise back
as signal. Rules (each diffusers ``DDIMScheduler.step``, configured as named; "1st A, B": the
first step A, the later ones B):

* ``clip+rederive``: clip x0 to [-1, 1], eps re-derived from it (``use_clipped_model_output``;
  GLIDE; the rule before);
* ``clip``: clip x0, keep the network's eps (diffusers' default, as ``DDIMPipeline`` steps;
  ``DDIMPipeline`` itself is run too, on the same seeds);
* ``none``: no clipping (``clip_sample=False``);
* ``dyn``, ``dyn+rederive``: Imagen's dynamic thresholding (Saharia et al. 2022;
  ``thresholding=True``: per-sample 99.5th percentile s of |x0|, s >= 1, clip to [-s, s],
  divide by s; ``sample_max_value`` unbounded), the network's eps or the re-derived one;
* ``1st clip, clip+rederive``, ``1st dyn, clip+rederive``, ``1st dyn, dyn+rederive``: the
  first step keeps the network's eps (x0 clipped or thresholded), the later ones re-derive it;
* ``library``: ``biaslab.sampling.samplers.sample_ddim`` as it is now (``1st dyn, clip+rederive``).

Epsilon models (unconditional ``mnist69`` of the results folder): n samples (sample_seed 0,
as the pipeline), DDIM 25 steps trailing at eta 0 and eta 1, Heun (13 levels, 25 evaluations)
and DPM++(2M) (25 steps): per-sample total variation TV (mean |vertical| + mean |horizontal|
neighbour difference of the uint8 image scaled to [0, 1]; training digits 0.18, pixel noise
0.6 to 1.1), the number in the noise mode (TV > 0.5) and above 0.35, TV quantiles, ``bg``
(mean over the samples outside the noise mode of the median pixel: the background; training
digits 0), ``conf`` (the evaluation classifier's mean confidence, when the results hold it).

Guidance check (class-conditional ``biased_mnist`` models, EDM objective): rho_model (share
of samples whose background colour, ``colour_mnist.attributes_of``, is the conditioning
class's own colour, as ``evaluation.cell.conditional_readout`` counts it), 100 samples, DDIM at 10
and 40 steps per rule against Heun at 6 (the grid's) and 18 steps (converged), w = 0, 1, 3.

    python benchmarks/bench_noise_mode.py /tmp/base/results --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler

import biaslab.sampling.generate as sampling_generate
import biaslab.sampling.samplers as samplers
from biaslab.base.images import to_model_range
from biaslab.base.io import load_npz
from biaslab.datasets.colour_mnist import attributes_of
from biaslab.evaluation.classifier import load_classifier, predict
from biaslab.models.objectives import sampler_schedule
from biaslab.sampling.generate import SamplerConfig, generate, sample_seeds
from biaslab.training.train import load_model

#: TV above this is the noise mode
NOISE_TV = 0.5
CLIP = {"clip_sample": True}
NONE = {"clip_sample": False}
DYN = {"thresholding": True, "sample_max_value": float("inf")}
#: rule -> ((first step's DDIMScheduler overrides, re-derive eps), (later steps' ...))
RULES: dict[str, tuple[tuple[dict, bool], tuple[dict, bool]]] = {
    "clip+rederive": ((CLIP, True), (CLIP, True)),
    "clip": ((CLIP, False), (CLIP, False)),
    "none": ((NONE, False), (NONE, False)),
    "dyn": ((DYN, False), (DYN, False)),
    "dyn+rederive": ((DYN, True), (DYN, True)),
    "1st clip, clip+rederive": ((CLIP, False), (CLIP, True)),
    "1st dyn, dyn+rederive": ((DYN, False), (DYN, True)),
    "1st dyn, clip+rederive": ((DYN, False), (CLIP, True)),
}


def ddim_rule(name: str):
    """A sampler with ``sample_ddim``'s signature that steps diffusers' DDIMScheduler under
    rule ``name`` (``RULES``)."""
    (first, first_rederive), (later, later_rederive) = RULES[name]

    def sample(
        denoiser,
        noise,
        scheduler_config,
        *,
        steps,
        generators,
        eta=0.0,
        timestep_spacing="trailing",
    ):
        s0, s1 = (
            DDIMScheduler.from_config(scheduler_config, timestep_spacing=timestep_spacing, **kw)
            for kw in (first, later)
        )
        s0.set_timesteps(steps)
        s1.set_timesteps(steps)
        x = noise * s1.init_noise_sigma
        for i, t in enumerate(s1.timesteps):
            eps = denoiser(x, torch.full((x.shape[0],), int(t), dtype=torch.long))
            sched, rederive = (s0, first_rederive) if i == 0 else (s1, later_rederive)
            x = sched.step(
                eps, t, x, eta=eta, generator=generators, use_clipped_model_output=rederive
            ).prev_sample
        return x

    return sample


@contextlib.contextmanager
def ddim_as(fn):
    """``generate``'s ddim sampler is ``fn`` inside (None: the library's ``sample_ddim``)."""
    old = samplers.SAMPLE_FUNCTIONS["ddim"]
    samplers.SAMPLE_FUNCTIONS["ddim"] = fn or old
    try:
        yield
    finally:
        samplers.SAMPLE_FUNCTIONS["ddim"] = old


def total_variation(images: np.ndarray) -> np.ndarray:
    """Per-sample TV of uint8 [N, C, H, W] scaled to [0, 1]: mean |dy| + mean |dx|."""
    x = images.astype(np.float64) / 255.0
    dy = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
    dx = np.abs(np.diff(x, axis=3)).mean(axis=(1, 2, 3))
    return dy + dx


def draw(unet, sched_config, rule: str | None, **cfg) -> np.ndarray:
    """uint8 samples of ``generate`` with its ddim sampler under ``rule`` (None: library)."""
    with ddim_as(ddim_rule(rule) if rule else None), torch.no_grad():
        return generate(unet, sched_config, SamplerConfig(**cfg), progress=False)[0]


def ddim_pipeline(unet, sched_config, *, steps: int, eta: float, n: int) -> np.ndarray:
    """diffusers' ``DDIMPipeline`` on the same seeds (one generator per sample), uint8."""
    sched = DDIMScheduler.from_config(sampler_schedule(sched_config), timestep_spacing="trailing")
    pipe = DDIMPipeline(unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    seeds = sample_seeds(SamplerConfig(n_samples=n))
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    with torch.no_grad():
        out = pipe(
            batch_size=n, generator=gens, num_inference_steps=steps, eta=eta, output_type="np"
        ).images
    return np.round(out * 255).astype(np.uint8).transpose(0, 3, 1, 2)


def tv_stats(images: np.ndarray, classifier=None) -> dict[str, float]:
    tv = total_variation(images)
    q05, q50, q95 = np.quantile(tv, [0.05, 0.5, 0.95])
    bg = np.median(images.reshape(len(images), -1) / 255.0, axis=1)[tv <= NOISE_TV]
    stats = {
        "noise": int((tv > NOISE_TV).sum()),
        ">0.35": int((tv > 0.35).sum()),
        "median": q50,
        "q05": q05,
        "q95": q95,
        "max": float(tv.max()),
        "bg": float(bg.mean()),
        "top": ",".join(str(i) for i in np.argsort(-tv)[:4]),
    }
    if classifier is not None:
        stats["conf"] = float(predict(classifier, to_model_range(images))[1].max(axis=1).mean())
    return stats


def tv_line(label: str, s: dict) -> str:
    conf = f"  conf {s['conf']:.3f}" if "conf" in s else ""
    return (
        f"  {label:<34} noise {s['noise']:>2}  >0.35 {s['>0.35']:>2}  median {s['median']:.3f}"
        f"  q05 {s['q05']:.3f}  q95 {s['q95']:.3f}  max {s['max']:.3f}  bg {s['bg']:.3f}"
        f"{conf}  top {s['top']}"
    )


def epsilon_models(results: Path, rules: list[str | None], n: int) -> dict:
    models = sorted(results.glob("models/mnist69/minority~*/depth~*/seed~*/model"))
    print(f"== epsilon models: {n} samples, sample_seed 0; noise mode: TV > {NOISE_TV}")
    path = results / "classifier/mnist69/class_classifier.pt"
    clf = load_classifier(path, device="cpu")[0] if path.is_file() else None
    table = {}
    for m in models:
        name = "/".join(p.split("~")[1] for p in m.parts[-4:-2])
        unet, sched = load_model(m)
        print(f"-- {m.relative_to(results / 'models')}")
        base = {"n_samples": n, "batch_size": n, "sample_seed": 0}
        for eta in (0.0, 1.0):
            for rule in rules:
                label = f"ddim25 eta{eta:g} {rule or 'library'}"
                imgs = draw(unet, sched.config, rule, sampler="ddim", steps=25, eta=eta, **base)
                table[label, name] = s = tv_stats(imgs, clf)
                print(tv_line(label, s), flush=True)
            label = f"ddim25 eta{eta:g} DDIMPipeline"
            table[label, name] = s = tv_stats(
                ddim_pipeline(unet, sched.config, steps=25, eta=eta, n=n), clf
            )
            print(tv_line(label, s), flush=True)
        for label, kw in (
            ("heun 13 (25 NFE)", {"sampler": "heun", "steps": 13}),
            ("dpmpp 25", {"sampler": "dpmpp", "steps": 25}),
        ):
            table[label, name] = s = tv_stats(draw(unet, sched.config, None, **kw, **base), clf)
            print(tv_line(label, s), flush=True)
    return table


def summary(table: dict) -> None:
    """Noise-mode count / median TV per rule (rows) and model (columns)."""
    labels = list(dict.fromkeys(k[0] for k in table))
    models = list(dict.fromkeys(k[1] for k in table))
    print("== summary: samples in the noise mode / median TV (models: minority/depth)")
    print(f"  {'':<36}" + "".join(f"{m:>14}" for m in models))
    for label in labels:
        cells = [table[label, m] for m in models]
        print(f"  {label:<36}" + "".join(f"{c['noise']:>7} {c['median']:.3f}" for c in cells))


def rho_model(images: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> float:
    """Share of samples whose background colour is the conditioning class's own colour."""
    colour = attributes_of(images, "biased_mnist", classes)["colour"]
    return float(np.mean(colour == classes[labels]))


def guidance_check(
    results: Path, rules: list[str | None], n: int, ddim_steps: list[int], ws: list[float]
) -> None:
    models = sorted(results.glob("models/biased_mnist/minority~*/depth~*/seed~*/model"))
    print(
        f"== guidance check: rho_model, {n} samples, DDIM eta 0 vs Heun (6 steps: the grid's; "
        "18: converged)"
    )
    for m in models:
        frac = m.parts[-4]
        classes = load_npz(results / "data/biased_mnist" / frac / "train.npz")["classes"]
        unet, sched = load_model(m)
        labels = np.arange(n) % sampling_generate.num_classes(unet)
        print(f"-- {m.relative_to(results / 'models')}   " + "  ".join(f"w={w:g}" for w in ws))
        base = {"n_samples": n, "batch_size": n, "sample_seed": 0}
        rows = [
            (f"ddim{steps} {r or 'library'}", r, {"sampler": "ddim", "steps": steps})
            for steps in ddim_steps
            for r in rules
        ]
        rows += [(f"heun{k}", None, {"sampler": "heun", "steps": k}) for k in (6, 18)]
        for label, rule, kw in rows:
            rho = [
                rho_model(draw(unet, sched.config, rule, guidance=w, **kw, **base), labels, classes)
                for w in ws
            ]
            print(f"  {label:<34} " + "  ".join(f"{r:.2f}" for r in rho), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a pipeline's results folder")
    ap.add_argument("--n", type=int, default=64, help="samples per epsilon-model cell")
    ap.add_argument("--cond-n", type=int, default=100, help="samples per guidance cell")
    ap.add_argument("--rules", nargs="*", default=[*RULES, "library"])
    ap.add_argument("--guidance-rules", nargs="*", default=None, help="default: --rules")
    ap.add_argument("--guidance-steps", type=int, nargs="*", default=[10, 40])
    ap.add_argument("--guidance", type=float, nargs="*", default=[0.0, 1.0, 3.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-guidance", action="store_true")
    ap.add_argument("--skip-epsilon", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rules = [None if r == "library" else r for r in args.rules]
    if not args.skip_epsilon:
        summary(epsilon_models(args.results, rules, args.n))
    if not args.skip_guidance:
        g_rules = rules if args.guidance_rules is None else args.guidance_rules
        g_rules = [None if r == "library" else r for r in g_rules]
        guidance_check(args.results, g_rules, args.cond_n, args.guidance_steps, args.guidance)


if __name__ == "__main__":
    main()
