"""Device-hours of a workflow config from throughput measured here, on this machine.

    python benchmarks/measure_budget.py config/paper.yaml [--all-depths] [--steps 20]

For each dataset family of the config (the depth family, each conditional dataset) it runs
``bench_train.py`` with the config's batch size, precision, channels_last and compile at the
family's resolution and channels, and ``bench_sampling.py`` (DDIM) with a batch of
``sampling.batch_size``, on the middle depth of the family (``--all-depths``: every depth, each
weighted by its share of the models). The measured rates go into ``biaslab.plan.budget.estimate``
and the script prints training and sampling hours per family and in all, with the device they
were measured on: on a GPU node this gives the GPU-hours of the paper grid.

The config is read as Snakemake reads a ``--configfile``: that file alone, defaults from the
JSON schema. The benchmark U-Nets are unconditional (the conditional models add one
class embedding: the same cost to within the measurement noise) and train on random images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sampling  # noqa: E402
import bench_train  # noqa: E402

from biaslab.base.columns import depth_sort_key  # noqa: E402
from biaslab.plan.budget import estimate  # noqa: E402
from biaslab.plan.checks import with_defaults  # noqa: E402
from biaslab.plan.families import plan  # noqa: E402


def load_config(path: str | Path) -> dict:
    """``path`` as Snakemake reads a ``--configfile`` (that file only, not ``config.yaml``
    under it), checked and with the schema's defaults (``biaslab.plan.checks.with_defaults``)."""
    with open(path) as fh:
        return with_defaults(yaml.safe_load(fh) or {})


def families(config: dict) -> dict[str, dict]:
    """Per family of the plan (as ``biaslab.plan.budget`` names them): resolution, channels and
    depths."""
    return {
        name: {"resolution": f.resolution, "channels": f.channels, "depths": list(f.depths)}
        for name, f in plan(config).items()
    }


def _quiet(fn, argv: list[str]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = fn(argv)
    return result, out.getvalue()


def measure(config: dict, args: argparse.Namespace) -> list[dict]:
    training = config["training"]
    rows = []
    rates: dict[tuple, tuple[float, float]] = {}
    for name, fam in families(config).items():
        depths = sorted(fam["depths"], key=depth_sort_key)
        chosen = depths if args.all_depths else [depths[len(depths) // 2]]
        train_s = sample_s = 0.0  # seconds per training image / per U-Net evaluation
        for depth in chosen:
            key = (depth, fam["resolution"], fam["channels"])
            if key not in rates:
                train_argv = [
                    "--depth", depth,
                    "--resolution", str(fam["resolution"]),
                    "--channels", str(fam["channels"]),
                    "--batch", str(training["batch_size"]),
                    "--precision", training["precision"],
                    "--steps", str(args.steps),
                    "--repeats", "1",
                    "--threads", str(args.threads),
                ]  # fmt: skip
                options = [o for o in ("channels_last", "compile") if training[o]]
                train_argv += ["--" + o.replace("_", "-") for o in options]
                t, log = _quiet(bench_train.main, train_argv)
                variant = "+".join(options) or "biaslab"  # as bench_train names its variants
                s, _ = _quiet(
                    bench_sampling.main,
                    [
                        "--depth", depth,
                        "--resolution", str(fam["resolution"]),
                        "--channels", str(fam["channels"]),
                        "--n", str(args.sampling_batch or config["sampling"]["batch_size"]),
                        "--steps", str(args.sampling_steps),
                        "--repeats", "1",
                        "--threads", str(args.threads),
                    ],
                )  # fmt: skip
                rates[key] = (t[variant], s["ddim"]["biaslab"] * args.sampling_steps)
                print(
                    f"{name} depth {depth}, {fam['resolution']} px, {fam['channels']} ch: "
                    f"training {rates[key][0]:,.1f} images/s ({variant}), sampling "
                    f"{rates[key][1]:,.1f} U-Net image-evaluations/s",
                    flush=True,
                )
                if not rows:
                    print(f"  on: {log.splitlines()[0]}", flush=True)
            train_s += 1.0 / rates[key][0] / len(chosen)
            sample_s += 1.0 / rates[key][1] / len(chosen)
        (row,) = [
            r
            for r in estimate(config, train_rate=1.0 / train_s, sample_rate=1.0 / sample_s)
            if r["family"] == name
        ]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--all-depths", action="store_true", help="measure every depth")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per depth")
    ap.add_argument("--sampling-steps", type=int, default=10, help="DDIM steps timed")
    ap.add_argument("--sampling-batch", type=int, help="default: sampling.batch_size")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs only)")
    args = ap.parse_args(argv)
    config = load_config(args.config)
    rows = measure(config, args)
    print(f"\n{'family':<20}{'models':>8}{'train images':>15}{'train h':>10}{'cells':>8}"
          f"{'U-Net evals':>15}{'sample h':>10}")  # fmt: skip
    for r in rows:
        print(
            f"{r['family']:<20}{r['models']:>8,}{r['train_images']:>15,}{r['train_hours']:>10,.2f}"
            f"{r['cells']:>8,}{r['sample_evals']:>15,}{r['sample_hours']:>10,.2f}"
        )
    total_t = sum(r["train_hours"] for r in rows)
    total_s = sum(r["sample_hours"] for r in rows)
    print(f"total: {total_t:,.2f} training hours + {total_s:,.2f} sampling hours on this device")
    return rows


if __name__ == "__main__":
    main()
