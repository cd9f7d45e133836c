"""Compute budget of a workflow config: how many images each family trains on and how many
network evaluations its sampling grid costs, and the hours that follow from a measured
throughput (``benchmarks/bench_train.py``, ``benchmarks/bench_sampling.py``).

    python -m biaslab.budget config/paper.yaml --train-rate 55 --sample-rate 900

``--train-rate``: training images/s; ``--sample-rate``: image-evaluations/s of the U-Net in
sampling (images/s x steps of a ``bench_sampling`` run). One rate for every depth and
resolution is a coarse model: measure at the config's resolution and a middle depth, or call
``estimate`` per depth.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

#: U-Net evaluations per sample for ``steps`` (Heun: 2 steps - 1, the last step is Euler).
NFE = {
    "ddpm": lambda s: s,
    "ddim": lambda s: s,
    "euler": lambda s: s,
    "heun": lambda s: 2 * s - 1,
    "dpmpp": lambda s: s,
}


def _families(config: dict[str, Any]) -> list[dict[str, Any]]:
    data, model, training = config["data"], config["model"], config["training"]
    n_samples = config["sampling"].get("n_samples", 64)
    fams = [
        {
            "family": str(data.get("dataset", "mnist69")),
            "models": len(config["minority_fractions"])
            * len(model["depths"])
            * len(training.get("seeds", [0])),
            "train_steps": training["steps"],
            "grid": config["sampling"]["grid"],
            "n_samples": n_samples,
        }
    ]
    colour = config.get("conditional") or {}
    for ds in colour.get("datasets", []):
        depths = colour.get("depths") or model["depths"]
        fams.append(
            {
                "family": ds,
                "models": len(colour["rhos"]) * len(depths) * len(training.get("seeds", [0])),
                "train_steps": colour.get("training_steps") or training["steps"],
                "grid": colour["grid"],
                "n_samples": colour.get("n_samples") or n_samples,
            }
        )
    return fams


def estimate(
    config: dict[str, Any],
    *,
    train_rate: float | None = None,
    sample_rate: float | None = None,
) -> list[dict[str, Any]]:
    """Per family: models, training images, sampling cells and U-Net image-evaluations (guided
    cells count twice: conditional and unconditional halves), and hours at the given rates."""
    batch = config["training"]["batch_size"]
    rows = []
    for fam in _families(config):
        per_cell = [
            NFE[r["sampler"]](r["steps"]) * (2 if r.get("guidance", 0) else 1) for r in fam["grid"]
        ]
        row = {
            "family": fam["family"],
            "models": fam["models"],
            "train_images": fam["models"] * fam["train_steps"] * batch,
            "cells": fam["models"] * len(fam["grid"]),
            "sample_evals": fam["models"] * fam["n_samples"] * sum(per_cell),
        }
        if train_rate:
            row["train_hours"] = row["train_images"] / train_rate / 3600
        if sample_rate:
            row["sample_hours"] = row["sample_evals"] / sample_rate / 3600
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--train-rate", type=float, help="training images/s (bench_train)")
    ap.add_argument("--sample-rate", type=float, help="U-Net image-evaluations/s in sampling")
    args = ap.parse_args(argv)
    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    rows = estimate(config, train_rate=args.train_rate, sample_rate=args.sample_rate)
    for r in rows:
        parts = [
            f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}" if isinstance(v, int) else v
            for k, v in r.items()
        ]
        print(" | ".join(parts))
    for key in ("train_hours", "sample_hours"):
        if key in rows[0]:
            print(f"total {key}: {sum(r[key] for r in rows):,.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
