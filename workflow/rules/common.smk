import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import Paramspace, min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from biaslab.config import (
    ConfigError,
    check_config,
    conditional_classes,
    conditional_depths,
    conditional_resolution,
    resolve_sampling_grid,
)  # noqa: E402
from biaslab.datasets import (  # noqa: E402
    ATTRIBUTE_TARGETS,
    is_colour,
    same_seed_labels,
)
from biaslab.grid import KNOB_COLUMNS, fraction_label  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}")


ENV = "../../environment.yml"
DATASET = config["data"]["dataset"]
COND = config["conditional"]
SEEDS = [int(s) for s in config["training"]["seeds"]]


def knob_space(grid):
    """A Paramspace over the sampler knobs (one path component and column per knob)."""
    return Paramspace(
        pd.DataFrame(grid, columns=list(KNOB_COLUMNS)),
        filename_params="*",
        param_sep="~",
    )


# Each dataset family: its skews (as path labels), depths and sampler grid. The depth family
# (unconditional models) is data.dataset; the coloured-MNIST datasets are class-conditional
# and their skew is the bias-conflicting share 1 - rho.
FAMILIES = {
    DATASET: {
        "fractions": [fraction_label(f) for f in config["minority_fractions"]],
        "depths": [str(d) for d in config["model"]["depths"]],
        "space": knob_space(resolve_sampling_grid(config["sampling"]["grid"])),
        "conditional": False,
    }
}
for _ds in COND["datasets"]:
    FAMILIES[_ds] = {
        "fractions": [fraction_label(1 - r) for r in COND["rhos"]],
        "depths": conditional_depths(config),
        "space": knob_space(
            resolve_sampling_grid(
                COND["grid"], conditional=True, key="conditional.grid"
            )
        ),
        "conditional": True,
    }
FRACTIONS = FAMILIES[DATASET]["fractions"]
DEPTHS = FAMILIES[DATASET]["depths"]
MODEL = "{dataset}/minority~{fraction}/depth~{depth}/seed~{seed}"
SAMPLER = FAMILIES[DATASET]["space"].wildcard_pattern


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    fraction=r"0\.[0-9]+",
    depth=r"2L|[2-6]",
    seed=r"[0-9]+",
    sampler=r"[a-z+]+",
    steps=r"[0-9]+",
    eta=r"[0-9.]+",
    s_churn=r"[0-9.]+",
    guidance=r"[0-9.]+",
    bypass=r"[0-9.]+",
    bypass_schedule=r"[a-z]+",


def model_paths(datasets=None):
    return [
        path
        for ds in datasets or FAMILIES
        for path in expand(
            MODEL,
            dataset=ds,
            fraction=FAMILIES[ds]["fractions"],
            depth=FAMILIES[ds]["depths"],
            seed=SEEDS,
        )
    ]


def eval_files(name):
    return [
        path
        for ds, fam in FAMILIES.items()
        for path in expand(
            f"results/eval/{{model}}/{{cell}}/{name}",
            model=model_paths([ds]),
            cell=list(fam["space"].instance_patterns),
        )
    ]


def is_conditional(dataset):
    return FAMILIES[dataset]["conditional"]


def dataset_settings(wildcards):
    """The data settings of a dataset, as its builder (biaslab.datasets) takes them."""
    data = config["data"]
    ds = wildcards.dataset
    if not is_conditional(ds):
        return dict(data)
    if ds == "bffhq":
        return {
            "dataset": ds,
            **COND["bffhq"],
            "split_seed": data["split_seed"],
        }
    shared = (
        "source",
        "root",
        "download",
        "resolution",
        "heldout_fraction",
        "split_seed",
    )
    return {
        "dataset": ds,
        **{k: data[k] for k in shared},
        "classes": list(COND["classes"]),
        "rho_right": float(COND["rho_right"]),
        "n_train": COND["n_train"],
    }


def features_file(wildcards):
    """The kNN feature cache a cell reads: the base set's, which every skew indexes into, or,
    for the recoloured MNIST sets (recoloured per rho, so not subsets of one base), the
    training set's own."""
    if is_colour(wildcards.dataset):
        return "results/features/{dataset}/minority~{fraction}/train_features.npz"
    return "results/features/{dataset}/base_features.npz"


def attribute_classifier(wildcards, target):
    """The attribute classifier a dataset's cells use beside the class classifier (BFFHQ:
    gender as the bias; CelebA: the Male x Blond_Hair groups), or none."""
    if ATTRIBUTE_TARGETS[target] != wildcards.dataset:
        return []
    return [f"results/classifier/{wildcards.dataset}/{target}_classifier.pt"]


def num_classes(dataset):
    return len(conditional_classes(config, dataset)) if is_conditional(dataset) else 0


def resolution(dataset):
    if is_conditional(dataset):
        return conditional_resolution(config, dataset)
    return int(config["data"]["resolution"])


def source(dataset):
    return "bffhq" if dataset == "bffhq" else config["data"]["source"]


def train_steps(dataset):
    if is_conditional(dataset) and COND["training_steps"]:
        return int(COND["training_steps"])
    return int(config["training"]["steps"])


def n_samples(dataset):
    if is_conditional(dataset) and COND["n_samples"]:
        return int(COND["n_samples"])
    return int(config["sampling"]["n_samples"])


def sampling_params(wildcards):
    """Every sampler knob of a cell, typed, plus the run-wide sampling settings."""
    return {
        "sampler": str(wildcards.sampler),
        "steps": int(wildcards.steps),
        "eta": float(wildcards.eta),
        "s_churn": float(wildcards.s_churn),
        "guidance": float(wildcards.guidance),
        "bypass": float(wildcards.bypass),
        "bypass_schedule": str(wildcards.bypass_schedule),
        **{k: float(v) for k, v in config["sampling"]["edm"].items()},
        "n_samples": n_samples(wildcards.dataset),
        "sample_seed": int(config["sampling"]["sample_seed"]),
    }


def grid_params(wildcards):
    """The grid columns of a cell, typed, for the tidy tables."""
    g = {
        "dataset": wildcards.dataset,
        "source": source(wildcards.dataset),
        "resolution": resolution(wildcards.dataset),
        "minority_fraction": float(wildcards.fraction),
        "depth": str(wildcards.depth),
        "width": float(config["model"]["width"]),
        "train_seed": int(wildcards.seed),
        "train_steps": train_steps(wildcards.dataset),
    }
    if is_conditional(wildcards.dataset):
        g["rho_data"] = round(1.0 - float(wildcards.fraction), 10)
        if wildcards.dataset == "multicolour_mnist":
            g["rho_right"] = float(COND["rho_right"])
        g["num_classes"] = num_classes(wildcards.dataset)
    if "sampler" in wildcards.keys():
        g.update(sampling_params(wildcards))
    return g


def train_params(wildcards):
    t = dict(config["training"])
    t.pop("seeds")
    t["steps"] = train_steps(wildcards.dataset)
    if is_conditional(wildcards.dataset):
        t["num_classes"] = num_classes(wildcards.dataset)
        t["label_dropout"] = float(COND["label_dropout"])
    return {
        **t,
        "depth": str(wildcards.depth),
        "width": float(config["model"]["width"]),
        "seed": int(wildcards.seed),
    }


def same_seed_cell():
    """The sampler cell drawn in the same-seed grids: the first row of the grid."""
    return next(iter(FAMILIES[DATASET]["space"].instance_patterns))


def all_targets():
    figs = [
        "fig4_minority_vs_depth",
        "fig_knn_vs_k",
        "fig_loss_curves",
        "fig3_toy",
        "fig_bias_diversity_frontier",
    ]
    if any(fam["space"].dataframe["bypass"].nunique() > 1 for fam in FAMILIES.values()):
        figs.append("fig_bypass")
    if COND["datasets"]:
        figs += ["fig_rho_vs_rho_data", "fig_rho_vs_steps", "fig_rho_vs_guidance"]
    same_seed = expand(
        "{fig}/minority~{fraction}_seed~{seed}",
        fig=["fig5_same_seed", "figA_minority_seeds"],
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
