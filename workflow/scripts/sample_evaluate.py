"""Sample and evaluate every cell of one model in one process (biaslab.jobs.cells): its
unintervened cells with the probe, or its SAE-intervened cells with their same-seed tables."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from biaslab.base.io import write_parquet
from biaslab.evaluation.cell import MetricsConfig
from biaslab.jobs.cells import Cell, ModelFiles, run_cells


def per_cell(named, name):
    """A named input or output as one entry per cell (Snakemake gives a one-file entry as a
    string); None for each cell where the job has no such entry."""
    if name not in named.keys():
        return [None] * len(snakemake.params.cells)
    files = named[name]
    return [files] if isinstance(files, str) else list(files)


inp = snakemake.input
difflens = snakemake.params.get("difflens")
files = ModelFiles(
    model=inp.model,
    train=inp.train,
    base=inp.base,
    train_features=inp.train_features,
    classifier=inp.classifier,
    attribute_classifier=(list(inp.attribute_classifier) or [None])[0],
    sae=inp.get("sae"),
    features=inp.get("features"),
    target=None if difflens is None else difflens["target"],
)
out = snakemake.output
cells = [
    Cell(p["sampling"], p["grid"], s, pr, m, reference=r, same_seed=ss)
    for p, s, pr, m, r, ss in zip(
        snakemake.params.cells,
        per_cell(out, "samples"),
        per_cell(out, "predictions"),
        per_cell(out, "metrics"),
        per_cell(inp, "reference"),
        per_cell(out, "same_seed"),
        strict=True,
    )
]
m = run_cells(
    files, cells, MetricsConfig.from_dict(snakemake.params.metrics), threads=snakemake.threads
)
if "probe" in snakemake.output.keys():  # what the model knows, beside its cells
    from biaslab.evaluation.probe import ProbeConfig, probe_model, subject

    grid = snakemake.params.grid
    s, rho = subject(
        m.unet,
        m.scheduler.config,
        m.train,
        inp.classifier,
        grid["dataset"],
        files.attribute_classifier,
    )
    table = probe_model(s, ProbeConfig.from_dict(snakemake.params.probe), grid, rho)
    print(table.to_string(), file=sys.stderr)
    write_parquet(table, snakemake.output.probe)
