"""Compute budget of a workflow config: how many images each family trains on and how many
network evaluations its sampling grid costs, and the hours that follow from a measured
throughput (``benchmarks/bench_train.py``, ``benchmarks/bench_sampling.py``).

    python -m biaslab.plan.budget config/paper.yaml --train-rate 55 --sample-rate 900

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

from biaslab.plan.checks import with_defaults
from biaslab.plan.families import plan
from biaslab.sampling.registry import network_evaluations


def estimate(
    config: dict[str, Any],
    *,
    train_rate: float | None = None,
    sample_rate: float | None = None,
) -> list[dict[str, Any]]:
    """Per family of the plan (``biaslab.plan.families``; ``config`` as read from a file: the
    schema's defaults are filled first): models, training images, sampling cells and U-Net
    image-evaluations (``sampling.registry.network_evaluations``: guided cells count twice;
    DiffLens' intervened cells only on the models with an SAE, plus its capture loop), and hours at
    the given rates."""
    families = plan(with_defaults(config))
    batch = int(with_defaults(config)["training"]["batch_size"])
    rows = []
    for fam in families.values():
        models = len(fam.fractions) * len(fam.depths) * len(fam.seeds)
        cells = evals = 0
        for fraction in fam.fractions:
            for depth in fam.depths:
                rows_here = fam.rows_of(fraction, depth)  # intervened rows: SAE models only
                cells += len(fam.seeds) * len(rows_here)
                per_model = fam.n_samples * sum(network_evaluations(r) for r in rows_here)
                if fam.has_sae(fraction, depth):  # DiffLens' capture loop
                    dl = fam.difflens
                    per_model += dl["n_samples"] * network_evaluations(dl["reference"])
                evals += len(fam.seeds) * per_model
        row = {
            "family": fam.dataset,
            "models": models,
            "train_images": models * fam.train_steps * batch,
            "cells": cells,
            "sample_evals": evals,
        }
        if train_rate:
            row["train_hours"] = row["train_images"] / train_rate / 3600
        if sample_rate:
            row["sample_hours"] = row["sample_evals"] / sample_rate / 3600
        rows.append(row)
    rows += _pretrained(with_defaults(config), sample_rate)
    return rows


def _pretrained(config: dict[str, Any], sample_rate: float | None) -> list[dict[str, Any]]:
    """One row per pretrained model: no training; its cells (``model_rows``) times its
    prompt classes times ``n_samples`` images, each at ``network_evaluations`` U-Net calls
    (a text-to-image U-Net call at its latent size; the VAE decode and CLIP text encoding are
    not counted)."""
    from biaslab.plan.pretrained import model_rows, pretrained_plan

    out = []
    for m in pretrained_plan(config).values():
        rows_here = model_rows(config, m)
        images = m.n_samples * max(len(m.classes), 1)
        row = {
            "family": f"pretrained:{m.name}",
            "models": 1,
            "train_images": 0,
            "cells": len(rows_here),
            "sample_evals": images * sum(network_evaluations(r) for r in rows_here),
        }
        if sample_rate:
            row["sample_hours"] = row["sample_evals"] / sample_rate / 3600
        out.append(row)
    return out


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
        if any(key in r for r in rows):
            print(f"total {key}: {sum(r.get(key, 0.0) for r in rows):,.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
