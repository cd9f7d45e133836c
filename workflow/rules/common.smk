import sys
from itertools import product
from pathlib import Path

import pandas as pd
from snakemake.utils import Paramspace, min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from biaslab.config import (  # noqa: E402
    ConfigError,
    check_finite,
    check_inputs,
    check_unique_keys,
)
from biaslab.datasets import same_seed_labels  # noqa: E402
from biaslab.grid import (  # noqa: E402
    KNOB_COLUMNS,
    WILDCARD_PATTERNS,
    intervened,
    knob_path_values,
)
from biaslab.plan import plan  # noqa: E402
from biaslab.pretrained_plan import (
    cell_columns as pretrained_cell_columns_of,
)  # noqa: E402
from biaslab.pretrained_plan import (  # noqa: E402
    bypass_study_rows,
    check_pretrained_files,
    in_bypass_study,
    model_rows,
    pretrained_plan,
    pretrained_rows,
)

try:
    # Before the schema: a repeated key in any config file, and NaN / inf anywhere (NaN
    # passes every range of a schema).
    for _file in workflow.configfiles:
        check_unique_keys(_file)
    check_finite(config)
except ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}")
validate(config, schema="../schemas/config.schema.yaml")
try:
    # Every family's settings (biaslab.plan); the rules below read nothing else of the config
    # but resources, classifier and metrics settings.
    PLAN = plan(config)
    # Models this lab did not train (biaslab.pretrained_plan), from local folders.
    PRETRAINED = pretrained_plan(config)
    check_inputs(config)
    check_pretrained_files(config)
except ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}")


ENV = "../../environment.yml"
# The depth family (None when model.depths is empty): Fig. 4, the kNN figure and Table 3 and
# the same-seed figures (Figs. 5, A) draw its models.
DEPTH = PLAN.get(config["data"]["dataset"])
# One Paramspace per family over the sampler knobs (a path component and column per knob).
SPACES = {
    name: Paramspace(
        pd.DataFrame(
            [knob_path_values(r) for r in fam.knob_rows], columns=list(KNOB_COLUMNS)
        ),
        filename_params="*",
        param_sep="~",
    )
    for name, fam in PLAN.items()
}
# Each family's (grid row, cell path) pairs, computed once at parse time (a Paramspace
# recomputes its instance patterns on every access).
CELLS = {
    name: list(zip(fam.knob_rows, SPACES[name].instance_patterns, strict=True))
    for name, fam in PLAN.items()
}

# Path templates: every rule and every target is built from these.
MODEL = "{dataset}/minority~{fraction}/depth~{depth}/seed~{seed}"
# every family has the same knob columns, so one wildcard pattern serves all
SAMPLER = Paramspace(
    pd.DataFrame(columns=list(KNOB_COLUMNS)), filename_params="*", param_sep="~"
).wildcard_pattern
# The pretrained models' sampler cells (one Paramspace over every model's rows).
PRETRAINED_SPACE = Paramspace(
    pd.DataFrame(
        [knob_path_values(r) for r in pretrained_rows(config)],
        columns=list(KNOB_COLUMNS),
    ),
    filename_params="*",
    param_sep="~",
)
PRETRAINED_CELL = f"results/pretrained/{{pretrained}}/{SAMPLER}"
BASE = "results/data/{dataset}/base.npz"
TRAIN = "results/data/{dataset}/minority~{fraction}/train.npz"
CLASSIFIER = "results/classifier/{dataset}/{target}_classifier.pt"
CLASS_CLASSIFIER = CLASSIFIER.replace("{target}", "class")
MODEL_DIR = f"results/models/{MODEL}/model"
TRAIN_LOG = f"results/models/{MODEL}/train_log.parquet"
# a model job's per-cell files (cell_outputs: {cell} is a Paramspace instance pattern)
SAMPLES_OF = "results/samples/{MODEL}/{cell}/samples.npz"
EVAL_OF = "results/eval/{MODEL}/{cell}"
PROBE = f"results/probe/{MODEL}/probe.parquet"
BASE_FEATURES = "results/features/{dataset}/base_features.npz"
DIFFLENS = f"results/difflens/{MODEL}"
ACTIVATIONS = f"{DIFFLENS}/activations.npz"
SAE_FILE = f"{DIFFLENS}/sae.pt"
FEATURES = f"{DIFFLENS}/features.npz"
GALLERY = "fig_difflens_gallery/{dataset}/minority~{fraction}_depth~{depth}_seed~{seed}"
TRAIN_FEATURES = "results/features/{dataset}/minority~{fraction}/train_features.npz"


def figure(name, ext):
    return f"results/figures/{name}.{ext}"


wildcard_constraints:
    **WILDCARD_PATTERNS,


def family(wildcards):
    return PLAN[wildcards.dataset]


def model_paths(names=None):
    return [
        path
        for name in names or PLAN
        for path in expand(
            MODEL,
            dataset=name,
            fraction=PLAN[name].fractions,
            depth=PLAN[name].depths,
            seed=PLAN[name].seeds,
        )
    ]


def model_cells(name, fraction, depth):
    """The cells (Paramspace instance patterns) sampled on one model: every grid row, less
    the intervened ones on a model without an SAE (``Family.rows_of``)."""
    sae = PLAN[name].has_sae(fraction, depth)
    return [cell for row, cell in CELLS[name] if sae or not intervened(row)]


def eval_files(file):
    return [
        f"results/eval/{name}/minority~{fraction}/depth~{depth}/seed~{seed}/{cell}/{file}"
        for name, fam in PLAN.items()
        for fraction in fam.fractions
        for depth in fam.depths
        for seed in fam.seeds
        for cell in model_cells(name, fraction, depth)
    ]


def same_seed_tables():
    """The same-seed similarity table of every intervened cell (gathered with the metrics)."""
    return [
        f"results/eval/{name}/minority~{fraction}/depth~{depth}/seed~{seed}/{cell}/same_seed.parquet"
        for name, fam in PLAN.items()
        for fraction in fam.fractions
        for depth in fam.depths
        for seed in fam.seeds
        for row, cell in CELLS[name]
        if intervened(row) and fam.has_sae(fraction, depth)
    ]


def difflens_paths(file):
    """``file`` under the DiffLens folder of every model that has an SAE."""
    return [
        f"results/difflens/{name}/minority~{fraction}/depth~{depth}/seed~{seed}/{file}"
        for name, fam in PLAN.items()
        if fam.difflens is not None
        for fraction, depth in sorted(fam.difflens["models"])
        for seed in fam.seeds
    ]


def benchmark_of(rule):
    """The ``benchmark:`` file of a model job of ``rule`` (Snakemake's TSV: wall seconds,
    memory, CPU time), gathered into results/job_benchmarks.parquet."""
    return f"results/benchmarks/{rule}/{MODEL}.tsv"


def benchmark_jobs():
    """(file, job) of every benchmarked model job: the training and the sampling/evaluation
    job of every model, and the intervention job of every model with an SAE."""
    jobs = []
    for name, fam in PLAN.items():
        for fraction, depth, seed in product(fam.fractions, fam.depths, fam.seeds):
            model = dict(dataset=name, fraction=fraction, depth=depth, seed=seed)
            rules = ["train_diffusion", f"sample_evaluate_{name}"]
            if fam.has_sae(fraction, depth) and cell_patterns(name, True):
                rules.append(f"intervene_{name}")
            jobs += [
                (benchmark_of(r).format(**model), dict(rule=r, **model)) for r in rules
            ]
    return jobs


def cell_patterns(name, intervened_cells):
    """The (grid row, cell path) pairs of family ``name`` that one model job samples: its
    unintervened rows, or its SAE-intervened rows (``intervene_<dataset>``)."""
    return [
        (row, cell) for row, cell in CELLS[name] if intervened(row) == intervened_cells
    ]


def cell_outputs(cells, template):
    """``template`` (with ``{MODEL}`` and ``{cell}``) for each of ``cells``: a model job's
    files, one per cell, in the order of ``cells_params``."""
    return [template.format(MODEL=MODEL, cell=cell) for _row, cell in cells]


def cells_params(cells):
    """Input function: each cell's sampler settings and grid columns (biaslab.cells.Cell)."""

    def params(wildcards):
        fam = family(wildcards)
        out = []
        for row, _cell in cells:
            knobs = knob_path_values(row)
            out.append(
                {
                    "sampling": {
                        **fam.sampling_params(knobs),
                        "batch_size": int(config["sampling"]["batch_size"]),
                    },
                    "grid": fam.cell_columns(
                        wildcards.fraction, wildcards.depth, wildcards.seed, knobs
                    ),
                }
            )
        return out

    return params


def cells_runtime(cells):
    """A model job's SLURM time limit (minutes): an hour, and 20 minutes per cell."""
    return 60 + 20 * len(cells)


def model_inputs(wildcards):
    """What a model's cells read (biaslab.cells.ModelFiles)."""
    return {
        "model": MODEL_DIR.format(**wildcards),
        "train": TRAIN.format(**wildcards),
        "base": BASE.format(**wildcards),
        "train_features": features_file(wildcards).format(**wildcards),
        "classifier": CLASS_CLASSIFIER.format(**wildcards),
        "attribute_classifier": attribute_classifier(wildcards),
    }


def twin_samples(cells):
    """Input function: each intervened cell's unintervened twin (same knobs, intervene 1):
    its samples, for the same-seed similarity."""

    def twins(wildcards):
        space = SPACES[wildcards.dataset]
        model = MODEL.format(**wildcards)
        off = {"intervene": "1.0", "intervene_mode": "none"}
        return [
            SAMPLES_OF.format(
                MODEL=model,
                cell=space.wildcard_pattern.format(**{**knob_path_values(row), **off}),
            )
            for row, _cell in cells
        ]

    return twins


def difflens_reference(wildcards):
    """The sampling settings whose loop DiffLens captures: the family's first grid row
    without intervention, with ``difflens.n_samples`` samples."""
    fam = family(wildcards)
    knobs = knob_path_values(fam.difflens["reference"])
    return {
        **fam.sampling_params(knobs),
        "n_samples": fam.difflens["n_samples"],
        "batch_size": int(config["sampling"]["batch_size"]),
    }


def grid_params(wildcards):
    """The grid columns of a model, typed, for the tidy tables."""
    return family(wildcards).cell_columns(
        wildcards.fraction, wildcards.depth, wildcards.seed
    )


def features_file(wildcards):
    """The kNN feature cache a cell reads (``Family.features_scope``)."""
    if family(wildcards).features_scope == "train":
        return TRAIN_FEATURES
    return BASE_FEATURES


def feature_params(scope):
    return {"scope": scope, "metrics": config["metrics"]}


def attribute_classifier(wildcards):
    """The attribute classifier a dataset's cells use beside the class classifier (BFFHQ:
    gender as the bias; CelebA: the Male x Blond_Hair groups), or none."""
    return [
        CLASSIFIER.format(dataset=wildcards.dataset, target=target)
        for target in family(wildcards).attribute_targets
    ]


def same_seed_cell():
    """The sampler cell drawn in the same-seed grids: the first row of the depth grid."""
    return CELLS[DEPTH.dataset][0][1]


def same_seed_files(root, file):
    """Input function: ``file`` of the same-seed cell of every depth of one skew and seed."""
    template = f"{root}/{MODEL}/{same_seed_cell()}/{file}"
    return lambda wc: expand(
        template,
        dataset=DEPTH.dataset,
        fraction=wc.fraction,
        depth=DEPTH.depths,
        seed=wc.seed,
    )


def all_targets():
    """The default target: the trained families' tables and figures (when there are any) and
    the pretrained models'."""
    return (trained_targets() if PLAN else []) + pretrained_targets()


def pretrained_cells(file, kinds=("unet", "text_to_image")):
    """``file`` of every sampler cell of every pretrained model of ``kinds``."""
    rows = pretrained_rows(config)
    return [
        f"results/pretrained/{name}/{cell}/{file}"
        for name, m in PRETRAINED.items()
        if m.kind in kinds
        for row, cell in zip(rows, PRETRAINED_SPACE.instance_patterns)
        if row in model_rows(config, m)
    ]


def bypass_study_cells(name, file):
    """``file`` of the bypass study's cells of model ``name``, in bypass order."""
    rows = pretrained_rows(config)
    cells = dict(zip(map(str, rows), PRETRAINED_SPACE.instance_patterns))
    return [
        f"results/pretrained/{name}/{cells[str(r)]}/{file}"
        for r in bypass_study_rows(config)
    ]


def bypass_study_models():
    """The text-to-image models of the bypass study (Fig. 6)."""
    return [name for name, m in PRETRAINED.items() if in_bypass_study(config, m)]


def pretrained_targets():
    if not PRETRAINED:
        return []
    figs = ["fig_pretrained_fd"]
    if bypass_study_models():
        figs.append("fig_bypass_prompts")
        figs += [f"fig_bypass_grid/{name}" for name in bypass_study_models()]
    tables = [
        "results/pretrained/metrics.parquet",
        "results/pretrained/predictions.parquet",
    ]
    return tables + [figure(f, ext) for f in figs for ext in ("png", "pdf")]


def trained_targets():
    figs = ["fig_loss_curves", "fig3_toy", "fig_bias_diversity_frontier", "fig_probe"]
    figs.append("fig_bias_quality_frontier")  # fid_classifier on every cell
    if any(space.dataframe["bypass"].nunique() > 1 for space in SPACES.values()):
        figs.append("fig_bypass")
    if any(fam.conditional for fam in PLAN.values()):
        figs += ["fig_rho_vs_rho_data", "fig_rho_vs_steps", "fig_rho_vs_guidance"]
    tables = [
        "results/metrics.parquet",
        "results/predictions.parquet",
        "results/train_log.parquet",
        "results/probe.parquet",
        "results/tables/table3_knn.csv",
        "results/tables/summary.md",
        "results/aggregate.parquet",
        "results/contrasts.parquet",
        "results/claims.parquet",
        "results/tables/claims.md",
    ]
    figs.append("fig_knob_effects")
    if any(fam.difflens is not None for fam in PLAN.values()):
        figs += ["fig_fd_vs_intervention", "fig_difflens_probes"]
        figs += [
            GALLERY.format(dataset=name, fraction=fraction, depth=depth, seed=seed)
            for name, fam in PLAN.items()
            if fam.difflens is not None
            for fraction, depth in sorted(fam.difflens["models"])
            for seed in fam.seeds
        ]
        tables += [
            "results/difflens/probes.parquet",
            "results/difflens/features.parquet",
        ]
    if DEPTH is not None:
        figs += ["fig4_minority_vs_depth", "fig_knn_vs_k"]
        figs += expand(
            "{fig}/minority~{fraction}_seed~{seed}",
            fig=["fig5_same_seed", "figA_minority_seeds"],
            fraction=DEPTH.fractions,
            seed=DEPTH.seeds,
        )
    return tables + [figure(f, ext) for f in figs for ext in ("png", "pdf")]


def pretrained_row(wildcards):
    """The typed knob row of a pretrained cell (from its path)."""
    cell = SAMPLER.format(**{k: getattr(wildcards, k) for k in KNOB_COLUMNS})
    rows = dict(zip(PRETRAINED_SPACE.instance_patterns, pretrained_rows(config)))
    return rows[cell]


def pretrained_model(wildcards):
    """The model entry (``biaslab.pretrained_plan.PretrainedModel``) of a pretrained cell."""
    return PRETRAINED[wildcards.pretrained]


def labeller_files(wildcards):
    """The labellers' local weights: the CLIP folder and the FairFace state dict, as given."""
    lab = config["pretrained"]["labellers"]
    files = {}
    if lab["clip"].get("path"):
        files["clip"] = lab["clip"]["path"]
    if lab["fairface"].get("path"):
        files["fairface"] = lab["fairface"]["path"]
    return files


def pretrained_cell_columns(wildcards):
    """The grid columns of a pretrained cell (``biaslab.pretrained_plan.cell_columns``)."""
    return pretrained_cell_columns_of(
        pretrained_model(wildcards), pretrained_row(wildcards), config
    )


def pretrained_reference(wildcards):
    """A bypassed pretrained cell's unbypassed twin (same knobs, bypass 0), when the model is
    sampled on it: its samples, for the same-seed similarity."""
    if float(wildcards.bypass) == 0.0:
        return {}
    m = pretrained_model(wildcards)
    row = {**pretrained_row(wildcards), "bypass": 0.0, "bypass_schedule": "constant"}
    if row not in model_rows(config, m):
        return {}
    cell = SAMPLER.format(**knob_path_values(row))
    return {"reference": f"results/pretrained/{m.name}/{cell}/samples.npz"}
