import sys
from pathlib import Path

from snakemake.utils import Paramspace, min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from biaslab.base.columns import (
    KNOB_COLUMNS,
    WILDCARD_PATTERNS,
    knob_frame,
)  # noqa: E402
from biaslab.datasets import same_seed_labels  # noqa: E402
from biaslab.plan import checks  # noqa: E402
from biaslab.plan.families import plan  # noqa: E402
from biaslab.plan.figures import FIGURES, figure_options, table_figures  # noqa: E402
from biaslab.plan.paths import *  # noqa: E402, F403  (the path templates)
from biaslab.plan.pretrained import cell_columns, pretrained_plan  # noqa: E402
from biaslab.plan.pretrained import (
    check_pretrained_files,
    pretrained_rows,
)  # noqa: E402
from biaslab.plan.targets import Targets  # noqa: E402

try:
    checks.check_before_schema(workflow.configfiles, config)
except checks.ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}")
validate(config, schema="../schemas/config.schema.yaml")
try:
    # Every family's settings (biaslab.plan.families) and the models this lab did not train
    # (biaslab.plan.pretrained); the rules read nothing else of the config but resources,
    # classifier and metrics settings.
    PLAN = plan(config)
    PRETRAINED = pretrained_plan(config)
    checks.check_inputs(config)
    check_pretrained_files(config)
except checks.ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}")


ENV = "../../environment.yml"


def paramspace(rows):
    return Paramspace(knob_frame(rows), filename_params="*", param_sep="~")


# Each family's (grid row, cell path) pairs, computed once at parse time (a Paramspace
# recomputes its instance patterns on every access).
CELLS = {
    name: list(zip(fam.knob_rows, paramspace(fam.knob_rows).instance_patterns))
    for name, fam in PLAN.items()
}
# every family has the same knob columns, so one wildcard pattern serves all
SAMPLER = paramspace([]).wildcard_pattern
PRETRAINED_CELL = PRETRAINED_CELL_OF.replace("{cell}", SAMPLER)
_ROWS = pretrained_rows(config)
# What the run makes (biaslab.plan.targets): targets, cells and twins, gathered files.
TARGETS = Targets.of(
    config,
    PLAN,
    CELLS,
    PRETRAINED,
    list(zip(_ROWS, paramspace(_ROWS).instance_patterns)),
)
DEPTH = PLAN.get(config["data"]["dataset"])  # the depth family, drawn same-seed
GALLERY = FIGURES["fig_difflens_gallery"].stem


wildcard_constraints:
    **WILDCARD_PATTERNS,


def family(wildcards):
    return PLAN[wildcards.dataset]


def benchmark_of(rule):
    """The ``benchmark:`` file of a model job of ``rule``."""
    return BENCHMARK.replace("{rule}", rule)


def model_inputs(wc):
    """What a model's cells read (biaslab.jobs.cells.ModelFiles)."""
    return TARGETS.model_inputs(wc)


def attribute_classifier(wc):
    return TARGETS.attribute_classifiers(wc.dataset)


def grid_params(wc):
    """The grid columns of a model, typed, for the tidy tables."""
    return family(wc).cell_columns(wc.fraction, wc.depth, wc.seed)


def feature_params(scope):
    return {"scope": scope, "metrics": config["metrics"]}


def same_seed_files(root, file):
    """Input function: ``file`` of the same-seed cell of every depth of one skew and seed."""
    return lambda wc: TARGETS.same_seed_files(root, file, wc.fraction, wc.seed)


def cell_outputs(cells, template):
    """``template`` (``{MODEL}``, ``{cell}``) for each of ``cells``, as ``cells_params``."""
    return [template.format(MODEL=MODEL, cell=cell) for _row, cell in cells]


def cells_params(cells):
    """Input function: each cell's sampler settings and grid columns (jobs.cells.Cell)."""
    rows = [row for row, _cell in cells]
    batch = config["sampling"]["batch_size"]
    return lambda wc: family(wc).cell_params(
        rows, wc.fraction, wc.depth, wc.seed, batch
    )


def twin_samples(cells):
    """Input function: the samples of each treated cell's untreated twin."""
    return lambda wc: TARGETS.twin_samples(wc, cells)


def difflens_reference(wc):
    """The sampling settings of the loop DiffLens captures."""
    return TARGETS.difflens_sampling(wc.dataset, config["sampling"]["batch_size"])


def pretrained_cell(wc):
    return SAMPLER.format(**{k: getattr(wc, k) for k in KNOB_COLUMNS})


def pretrained_model(wc):
    """The model entry (``biaslab.plan.pretrained.PretrainedModel``) of a pretrained cell."""
    return PRETRAINED[wc.pretrained]


def labeller_files(wc):
    """The labellers' local weights: the CLIP folder and the FairFace state dict, as given."""
    lab = config["pretrained"]["labellers"]
    return {k: lab[k]["path"] for k in ("clip", "fairface") if lab[k].get("path")}


def pretrained_row(wc):
    """The typed knob row of a pretrained cell (from its path)."""
    return TARGETS.pretrained_row(pretrained_cell(wc))


def pretrained_cell_columns(wc):
    return cell_columns(pretrained_model(wc), pretrained_row(wc), config)


def pretrained_reference(wc):
    """A bypassed cell's unbypassed twin's samples, when the model is sampled on it."""
    return TARGETS.pretrained_twin(wc.pretrained, pretrained_cell(wc))
