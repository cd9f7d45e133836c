"""biaslab.plan.families: one typed family per dataset, built once from the config."""

from __future__ import annotations

import pytest
import yaml

from biaslab.base.columns import GRID_COLUMNS, KNOB_COLUMNS
from biaslab.plan.checks import ConfigError, with_defaults
from biaslab.plan.families import plan
from tests.helpers import ROOT


def _plan(path):
    return plan(with_defaults(yaml.safe_load((ROOT / path).read_text())))


def test_default_config_plan():
    fams = _plan("config.yaml")
    assert list(fams) == ["mnist69", "biased_mnist"]
    depth, cond = fams["mnist69"], fams["biased_mnist"]
    assert depth.fractions == ("0.1", "0.3") and depth.depths == ("2", "4")
    assert not depth.conditional and depth.features_scope == "base"
    assert cond.conditional and cond.num_classes == 2 and cond.features_scope == "train"
    assert cond.fractions == ("0.2", "0.05")  # 1 - rho, as path labels
    assert cond.n_samples == 100 and cond.train_steps == 800
    assert all(list(r) == list(KNOB_COLUMNS) for r in cond.knob_rows)
    assert cond.train_params("2", 0)["num_classes"] == 2
    assert "seeds" not in depth.train_params("2", 0)


def test_cell_columns_are_grid_columns_typed_from_path_strings():
    cond = _plan("config.yaml")["biased_mnist"]
    knobs = {k: str(v) for k, v in cond.knob_rows[0].items()}
    g = cond.cell_columns("0.05", "2", "0", knobs)
    assert set(g) <= set(GRID_COLUMNS)
    assert g["rho_data"] == 0.95 and g["train_seed"] == 0 and g["steps"] == 10
    assert isinstance(g["guidance"], float) and g["num_classes"] == 2
    assert "rho_right" not in g  # Multi-Color MNIST only
    multi = _plan("config/paper.yaml")["multicolour_mnist"]
    assert multi.cell_columns("0.1", "2", 0)["rho_right"] == 0.9


def test_family_checks_name_their_keys():
    cfg = with_defaults(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["conditional"]["depths"] = ["6"]
    with pytest.raises(ConfigError, match=r"conditional.depths / data.resolution"):
        plan(cfg)
    cfg = with_defaults({"conditional": {"datasets": ["biased_mnist"], "n_samples": 4}})
    with pytest.raises(ConfigError, match=r"conditional\.n_samples"):
        plan(cfg)
    with pytest.raises(ConfigError, match=r"\['training'\]\['steps'\]"):
        with_defaults({"training": {"steps": "many"}})


def test_objective_and_schedule_are_model_columns():
    fams = _plan("config.yaml")
    depth, cond = fams["mnist69"], fams["biased_mnist"]
    assert depth.model_columns("0.1", "2", 0)["objective"] == "epsilon"  # the paper's recipe
    assert cond.model_columns("0.05", "2", 0)["objective"] == "edm"  # conditional.objective
    assert depth.model_columns("0.1", "2", 0)["beta_schedule"] == "linear"
    assert cond.train_params("2", 0)["objective"] == "edm"
    assert cond.train_params("2", 0)["edm"] == {"sigma_data": 0.5, "p_mean": 0.5, "p_std": 1.5}
    assert {r["timestep_spacing"] for r in depth.knob_rows} == {"trailing"}
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["training"] |= {"objective": "v", "beta_schedule": "squaredcos_cap_v2"}
    cfg["conditional"]["objective"] = None  # null: training.objective
    fams = plan(with_defaults(cfg))
    for fam in fams.values():
        g = fam.model_columns(fam.fractions[0], "2", 0)
        assert (g["objective"], g["beta_schedule"]) == ("v", "squaredcos_cap_v2")
    with pytest.raises(ConfigError, match="objective"):
        with_defaults({"training": {"objective": "x0"}})


def test_empty_model_depths_switch_the_depth_family_off():
    cfg = with_defaults(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["model"]["depths"] = []
    cfg["conditional"]["depths"] = ["2"]
    assert list(plan(cfg)) == ["biased_mnist"]
    cfg["conditional"]["depths"] = None  # its default is model.depths, empty here
    with pytest.raises(ConfigError, match=r"conditional\.depths: empty"):
        plan(cfg)
    cfg["conditional"]["datasets"] = []
    with pytest.raises(ConfigError, match=r"conditional\.datasets / pretrained\.models: all"):
        plan(cfg)


def test_difflens_plan_and_its_checks():
    fams = _plan("config.yaml")
    depth = fams["mnist69"]
    assert depth.difflens["models"] == {("0.3", "2")}
    # the filters span the families: biased_mnist's rho 0.8 model (bias-conflicting 0.2)
    colour = fams["biased_mnist"]
    assert colour.difflens["models"] == {("0.2", "2")}
    assert colour.difflens["n_attribute_classes"] == 2
    assert colour.difflens["conditional"] == {"dataset": "biased_mnist", "classes": [0, 1]}
    assert depth.difflens["conditional"] is None
    assert colour.difflens["reference"]["guidance"] == 1.0  # its first plain grid row
    assert len(colour.rows_of("0.05", "2")) < len(colour.rows_of("0.2", "2"))
    assert depth.difflens["target"] == (0.5, 0.5)
    assert depth.difflens["reference"]["intervene"] == 1.0
    on = [r for r in depth.knob_rows if r["intervene"] != 1.0]
    assert on and all(r["intervene_mode"] == "probability" for r in on)
    # the intervened rows are sampled on the model with an SAE only
    assert len(depth.rows_of("0.3", "2")) == len(depth.knob_rows)
    assert len(depth.rows_of("0.1", "2")) == len(depth.knob_rows) - len(on)

    def broken(**difflens):
        cfg = with_defaults(yaml.safe_load((ROOT / "config.yaml").read_text()))
        cfg["difflens"].update(difflens)
        return cfg

    cases = {
        r"difflens\.target": {"target": [0.7, 0.7]},
        r"difflens\.depths": {"depths": ["5"]},
        r"difflens\.fractions: \[0\.25\] are not fractions": {"fractions": [0.3, 0.2, 0.25]},
        r"difflens\.fractions: \[0\.1\] select no model of biased_mnist": {"fractions": [0.1]},
        r"difflens\.depths: \['4'\] select no depth of biased_mnist": {"depths": ["4"]},
        r"difflens\.datasets: 'celeba'": {"datasets": ["mnist69", "biased_mnist", "celeba"]},
        r"sampling\.grid\[2\]\.intervene: .* not in difflens\.datasets": {"datasets": []},
        r"difflens\.sae: unknown keys \['width'\]": {"sae": {"width": 3}},
    }
    for pattern, change in cases.items():
        with pytest.raises(ConfigError, match=pattern):
            plan(broken(**change))
    # scale mode on a conditional family with three colours: no single bias-conflicting one
    cfg = broken()
    cfg["conditional"]["classes"] = [0, 1, 2]
    cfg["conditional"]["grid"][-1]["intervene_mode"] = "scale"
    with pytest.raises(ConfigError, match=r"conditional\.grid\[9\]\.intervene_mode: scale"):
        plan(cfg)
    cfg["conditional"]["grid"][-1]["intervene_mode"] = "probability"
    assert plan(cfg)["biased_mnist"].difflens["target"] == pytest.approx((1 / 3,) * 3)
    cfg = broken()
    cfg["sampling"]["grid"].append({"sampler": "ddim", "steps": 25, "intervene_mode": "scale"})
    with pytest.raises(ConfigError, match=r"sampling\.grid\[4\]\.intervene_mode: set without"):
        plan(cfg)
    cfg = broken()
    cfg["sampling"]["grid"].append({"sampler": "ddim", "steps": 7, "intervene": 2.0})
    with pytest.raises(ConfigError, match=r"sampling\.grid\[4\]\.intervene: no row with"):
        plan(cfg)
