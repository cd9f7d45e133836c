import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import Paramspace, min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from biaslab.config import (
    ConfigError,
    check_config,
    resolve_sampling_grid,
)  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}")


ENV = "../../environment.yml"
DATASET = config["data"]["dataset"]
FRACTIONS = [str(float(f)) for f in config["minority_fractions"]]
DEPTHS = [str(d) for d in config["model"]["depths"]]
SEEDS = [int(s) for s in config["training"]["seeds"]]
SAMPLING_GRID = resolve_sampling_grid(config["sampling"]["grid"])
sampler_space = Paramspace(
    pd.DataFrame(SAMPLING_GRID, columns=["sampler", "steps", "eta"]),
    filename_params="*",
    param_sep="~",
)
MODEL = "{dataset}/minority~{fraction}/depth~{depth}/seed~{seed}"
SAMPLER = sampler_space.wildcard_pattern


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    fraction=r"0\.[0-9]+",
    depth=r"2L|[2-6]",
    seed=r"[0-9]+",
    sampler=r"[a-z+]+",
    steps=r"[0-9]+",
    eta=r"[0-9.]+",


def model_paths():
    return expand(MODEL, dataset=DATASET, fraction=FRACTIONS, depth=DEPTHS, seed=SEEDS)


def eval_files(name):
    return expand(
        f"results/eval/{{model}}/{{cell}}/{name}",
        model=model_paths(),
        cell=list(sampler_space.instance_patterns),
    )


def grid_params(wildcards):
    """The grid columns of a cell, typed, for the tidy tables."""
    g = {
        "dataset": wildcards.dataset,
        "source": config["data"]["source"],
        "resolution": int(config["data"]["resolution"]),
        "minority_fraction": float(wildcards.fraction),
        "depth": str(wildcards.depth),
        "width": float(config["model"]["width"]),
        "train_seed": int(wildcards.seed),
        "train_steps": int(config["training"]["steps"]),
    }
    if "sampler" in wildcards.keys():
        g.update(
            sampler=str(wildcards.sampler),
            steps=int(wildcards.steps),
            eta=float(wildcards.eta),
            n_samples=int(config["sampling"]["n_samples"]),
            sample_seed=int(config["sampling"]["sample_seed"]),
        )
    return g


def train_params(wildcards):
    t = dict(config["training"])
    t.pop("seeds")
    return {
        **t,
        "depth": str(wildcards.depth),
        "width": float(config["model"]["width"]),
        "seed": int(wildcards.seed),
    }


def same_seed_cell():
    """The sampler cell drawn in the same-seed grids: the first row of the grid."""
    return next(iter(sampler_space.instance_patterns))


def all_targets():
    figs = [
        "fig4_minority_vs_depth",
        "fig_knn_vs_k",
        "fig_loss_curves",
        "fig3_toy",
    ]
    same_seed = expand(
        "fig5_same_seed/minority~{fraction}_seed~{seed}",
        fraction=FRACTIONS,
        seed=SEEDS,
    )
    tables = [
        "results/metrics.parquet",
        "results/predictions.parquet",
        "results/train_log.parquet",
        "results/tables/table3_knn.csv",
        "results/tables/summary.md",
    ]
    return tables + expand(
        "results/figures/{fig}.{ext}", fig=figs + same_seed, ext=["png", "pdf"]
    )
