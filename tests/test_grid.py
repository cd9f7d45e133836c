"""The sampler registry (biaslab.sampling.registry.SAMPLERS) is the one place a sampler's facts
live: the config checks (the schema repeats no name), the sampling functions, the budget and
the labels read it."""

from __future__ import annotations

import re

import pytest
import yaml

from biaslab.base.columns import KNOB_COLUMNS, KNOB_TYPES, TIMESTEP_SPACINGS, WILDCARD_PATTERNS
from biaslab.plan.checks import ConfigError, resolve_sampling_grid
from biaslab.sampling.generate import SamplerConfig
from biaslab.sampling.registry import (
    SAMPLERS,
    is_stochastic,
    knob_error,
    network_evaluations,
    setting_label,
)
from biaslab.sampling.samplers import SAMPLE_FUNCTIONS
from tests.helpers import ROOT


def test_the_registry_is_the_one_list_of_samplers():
    """The schema does not repeat the sampler names: the registry is the one list, and the
    plan rejects a name outside it, naming the key (before any job)."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    sampler = schema["$defs"]["sampler_grid"]["items"]["properties"]["sampler"]
    assert "enum" not in sampler and all(re.fullmatch(sampler["pattern"], n) for n in SAMPLERS)
    assert sampler["pattern"].strip("^$") == WILDCARD_PATTERNS["sampler"]
    with pytest.raises(ConfigError, match=r"grid\[0\]\.sampler: unknown sampler 'plms'"):
        resolve_sampling_grid([{"sampler": "plms", "steps": 10}])
    knobs = set(schema["$defs"]["sampler_grid"]["items"]["properties"])
    assert knobs == set(KNOB_COLUMNS) == set(KNOB_TYPES)
    spacing = schema["$defs"]["sampler_grid"]["items"]["properties"]["timestep_spacing"]
    assert tuple(spacing["enum"]) == TIMESTEP_SPACINGS


def test_every_registered_sampler_has_a_function_taking_its_knobs():
    import inspect

    assert set(SAMPLE_FUNCTIONS) == set(SAMPLERS)
    for name, spec in SAMPLERS.items():
        params = inspect.signature(SAMPLE_FUNCTIONS[name]).parameters
        assert set(SamplerConfig(sampler=name).knobs()) <= set(params), name
        for knob in ("eta", "s_churn", "timestep_spacing"):
            if knob not in spec.knobs or knob in spec.fixed:
                assert knob not in params, (name, knob)


def test_resolved_rows_take_the_sampler_defaults():
    rows = resolve_sampling_grid(
        [{"sampler": "ddpm", "steps": 10}, {"sampler": "ddim", "steps": 10}]
    )
    assert [r["eta"] for r in rows] == [1.0, 0.0]
    assert all(list(r) == list(KNOB_COLUMNS) for r in rows)
    with pytest.raises(ConfigError, match=r"sampling.grid\[0\].eta: the ddpm sampler has no eta"):
        resolve_sampling_grid([{"sampler": "ddpm", "steps": 10, "eta": 0.0}])
    with pytest.raises(ConfigError, match=r"\[0\].s_churn: the dpmpp sampler .*euler and heun"):
        resolve_sampling_grid([{"sampler": "dpmpp", "steps": 10, "s_churn": 1.0}])


def test_timestep_spacing_is_a_ddpm_and_ddim_knob():
    rows = resolve_sampling_grid(
        [{"sampler": s, "steps": 10} for s in ("ddpm", "ddim", "euler", "heun", "dpmpp")]
        + [{"sampler": "ddim", "steps": 10, "timestep_spacing": "leading"}]
    )
    assert [r["timestep_spacing"] for r in rows] == [
        "trailing",
        "trailing",
        "none",
        "none",
        "none",
        "leading",
    ]
    for sampler in ("heun", "euler", "dpmpp"):
        with pytest.raises(ConfigError, match=rf"\[0\]\.timestep_spacing: the {sampler} "):
            resolve_sampling_grid([{"sampler": sampler, "steps": 4, "timestep_spacing": "leading"}])
    assert knob_error("ddim", {"timestep_spacing": "none"})[0] == "timestep_spacing"
    assert knob_error("ddpm", {"timestep_spacing": "linspace", "eta": 1.0}) is None
    assert SamplerConfig(sampler="ddim").timestep_spacing == "trailing"
    assert SamplerConfig(sampler="heun").timestep_spacing == "none"
    with pytest.raises(ValueError, match="heun sampler has no timestep_spacing"):
        from biaslab.sampling.generate import check_sampler_config

        check_sampler_config(SamplerConfig(sampler="heun", timestep_spacing="trailing"))
    row = {"sampler": "ddim", "steps": 10, "eta": 0.0}
    assert setting_label({**row, "timestep_spacing": "trailing"}) == "ddim, 10 steps, η=0"
    label = setting_label({**row, "timestep_spacing": "leading"})
    assert label == "ddim, 10 steps, η=0, leading spacing"
    assert setting_label({"sampler": "heun", "steps": 6, "timestep_spacing": "none"}) == (
        "heun, 6 steps"
    )


def test_knob_error_stochasticity_cost_and_labels():
    assert knob_error("heun", {"s_churn": 40.0, "eta": 0.0}) is None
    assert knob_error("heun", {"eta": 0.5})[0] == "eta"
    assert is_stochastic({"sampler": "ddpm", "eta": 1.0})
    assert is_stochastic({"sampler": "ddim", "eta": 0.5})
    assert not is_stochastic({"sampler": "ddim", "eta": 0.0})
    assert is_stochastic({"sampler": "euler", "s_churn": 1.0})
    assert not is_stochastic({"sampler": "dpmpp"})
    assert network_evaluations({"sampler": "heun", "steps": 6}) == 11
    assert network_evaluations({"sampler": "ddim", "steps": 6, "guidance": 1.0}) == 12
    row = {"sampler": "heun", "steps": 6, "eta": 0.0, "s_churn": 40.0, "guidance": 1.0}
    assert setting_label(row) == "heun, 6 steps, S_churn=40, w=1"
    assert setting_label({"sampler": "ddpm", "steps": 1000, "eta": 1.0}) == "ddpm, 1000 steps, η=1"


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5, 1e-7, 1e-5, 1e20, 40.0, 0.95, 1 - 0.99, 3])
def test_path_numbers_are_plain_decimals_that_read_back(value):
    import re

    from biaslab.base.columns import WILDCARD_PATTERNS, path_number

    text = path_number(value)
    assert re.fullmatch(WILDCARD_PATTERNS["eta"], text), text
    assert type(value)(text) == value


def test_fraction_labels_round_to_ten_decimals():
    from biaslab.base.columns import fraction_label

    assert fraction_label(1 - 0.99) == "0.01"
    assert fraction_label(0.20000000001) == fraction_label(0.2) == "0.2"
    assert fraction_label(1e-5) == "0.00001"
