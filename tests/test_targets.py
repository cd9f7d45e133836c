"""biaslab.plan.targets and biaslab.plan.figures: what a run makes, without Snakemake's DAG
(the cell paths come from Snakemake's own Paramspace, as in common.smk)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from snakemake.utils import Paramspace

from biaslab.base.columns import KNOB_COLUMNS, knob_frame, knob_path_values, untreated
from biaslab.plan.checks import with_defaults
from biaslab.plan.families import plan
from biaslab.plan.figures import FIGURE_TABLE, FIGURES, table_figures
from biaslab.plan.pretrained import pretrained_plan, pretrained_rows
from biaslab.plan.targets import Targets
from tests.helpers import ROOT


def _space(rows) -> Paramspace:
    return Paramspace(knob_frame(rows), filename_params="*", param_sep="~")


def _targets(path: str, **change) -> Targets:
    config = with_defaults(yaml.safe_load((ROOT / path).read_text()))
    for key, value in change.items():
        config[key] = value
    fams = plan(config)
    cells = {
        n: list(zip(f.knob_rows, _space(f.knob_rows).instance_patterns, strict=True))
        for n, f in fams.items()
    }
    rows = pretrained_rows(config)
    pre = list(zip(rows, _space(rows).instance_patterns, strict=True))
    return Targets.of(config, fams, cells, pretrained_plan(config), pre)


@pytest.fixture(scope="module")
def default() -> Targets:
    return _targets("config.yaml")


def test_knob_frame_is_the_paramspace_of_the_path_values(default):
    fam = default.plan["biased_mnist"]
    frame = knob_frame(fam.knob_rows)
    assert list(frame.columns) == list(KNOB_COLUMNS)
    assert frame.iloc[0].to_dict() == knob_path_values(fam.knob_rows[0])
    cell = default.cells["biased_mnist"][0][1]
    assert cell.startswith("sampler~") and "_intervene_mode~" in cell


def test_every_cell_of_every_model_once(default):
    models = default.models()
    assert len(models) == sum(
        len(f.fractions) * len(f.depths) * len(f.seeds) for f in default.plan.values()
    )
    files = default.eval_files("metrics.parquet")
    assert len(files) == len(set(files))
    # a model without an SAE skips the intervened rows
    depth = default.plan["mnist69"]
    with_sae = default.model_cells("mnist69", "0.3", "2")
    without = default.model_cells("mnist69", "0.1", "2")
    assert len(with_sae) == len(depth.knob_rows) > len(without)
    plain = default.cell_patterns("mnist69", False)
    on = default.cell_patterns("mnist69", True)
    assert [c for _r, c in plain] == without and len(plain) + len(on) == len(with_sae)


def test_twin_cells_are_the_same_knobs_without_intervention(default):
    on = default.cell_patterns("mnist69", True)
    twins = default.twin_cells("mnist69", on)
    rows = dict((c, r) for r, c in default.cells["mnist69"])
    for (row, _cell), twin in zip(on, twins, strict=True):
        assert rows[twin] == untreated(row, "intervene")
        assert rows[twin]["intervene"] == 1.0 and rows[twin]["intervene_mode"] == "none"
    m = dict(dataset="mnist69", fraction="0.3", depth="2", seed="0")
    samples = default.twin_samples(m, on)
    assert all(
        s.startswith("results/samples/mnist69/minority~0.3/depth~2/seed~0/") for s in samples
    )
    # each same-seed table belongs to an intervened cell of a model with an SAE
    assert len(default.same_seed_tables()) == len(on) * len(default.plan["mnist69"].seeds) + len(
        default.cell_patterns("biased_mnist", True)
    ) * len(default.plan["biased_mnist"].seeds)


def test_benchmark_jobs_are_every_model_job(default):
    jobs = default.benchmark_jobs()
    rules = pd.Series([j["rule"] for _f, j in jobs]).value_counts()
    n_models = len(default.models())
    assert rules["train_diffusion"] == n_models
    assert rules["sample_evaluate_mnist69"] + rules["sample_evaluate_biased_mnist"] == n_models
    assert rules["intervene_mnist69"] == len(default.plan["mnist69"].seeds)
    assert all(f.startswith(f"results/benchmarks/{j['rule']}/{j['dataset']}/") for f, j in jobs)


def test_figures_follow_the_plan(default):
    targets = default.all()
    assert "results/figures/fig4_minority_vs_depth.png" in targets
    assert "results/figures/fig_rho_vs_guidance.pdf" in targets  # a conditional family
    assert "results/difflens/probes.parquet" in targets
    galleries = [t for t in targets if t.startswith("results/figures/fig_difflens_gallery/")]
    assert len(galleries) == 2 * len(default.difflens_models())
    same_seed = [t for t in targets if "fig5_same_seed/" in t]
    depth = default.plan["mnist69"]
    assert len(same_seed) == 2 * len(depth.fractions) * len(depth.seeds)
    assert not any(t.startswith("results/pretrained") or "bypass_grid" in t for t in targets)
    # no depth family: no Fig. 4, no same-seed grids
    no_depth = _targets("config.yaml", model={"depths": [], "width": 1.0})
    drawn = no_depth.all()
    assert not any("fig4" in t or "fig5" in t or "fig_knn" in t for t in drawn)
    assert "results/figures/fig_probe.png" in drawn


def test_pretrained_targets_and_bypass_twins():
    t = _targets("tests/config/tiny-pretrained.yaml")
    assert not t.plan or "results/pretrained/metrics.parquet" in t.all()
    assert "results/pretrained/metrics.parquet" in t.all()
    for name in t.pretrained:
        files = t.pretrained_files("samples.npz")
        assert files and all(f.startswith("results/pretrained/") for f in files)
        for row, cell in t.pretrained_cells:
            twin = t.pretrained_twin(name, cell)
            if row["bypass"] == 0.0 or untreated(row, "bypass") not in t.model_rows[name]:
                assert twin == {}
            else:
                assert (
                    twin["reference"].endswith("samples.npz") and "bypass~0.0_" in twin["reference"]
                )
    if t.study_models:
        assert len(t.study_files(t.study_models[0], "samples.npz")) == len(t.study_rows)


def test_figure_table_rules_and_rows():
    assert {s.name for s in table_figures()} == {s.name for s in FIGURE_TABLE if s.table}
    assert FIGURES["fig4_minority_vs_depth"].select == "depth_family"
    assert all(s.per is None for s in table_figures())  # one generic rule per figure
