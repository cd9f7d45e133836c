"""The configuration reference: every schema key documented with a default (or required),
config/README.md generated from the schema and current, and the dataclasses that read a config
section defaulting exactly as the schema does."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import yaml

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import config_reference as tool

from biaslab.plan.reference import SAMPLER_ROWS, keys, knob_default

SCHEMA = yaml.safe_load(tool.SCHEMA.read_text())


def _all_keys():
    return [*keys(SCHEMA), *keys(SCHEMA["$defs"][SAMPLER_ROWS]["items"])]


def test_every_key_has_a_description_and_a_default():
    missing = [k.path for k in _all_keys() if not (k.documented and k.has_default)]
    assert not missing, f"schema keys without a description or a default: {missing}"
    assert len(_all_keys()) > 140


def test_config_readme_is_generated_from_the_schema():
    """Stale after a schema or config-header change: run python tools/config_reference.py."""
    text = (ROOT / "config" / "README.md").read_text()
    assert text == tool.reference(), "config/README.md is stale: python tools/config_reference.py"
    for name in tool.shipped_configs():
        assert f"`{name}`" in text


def test_sampler_knob_defaults_come_from_the_registry():
    from biaslab.sampling.registry import SAMPLERS

    assert knob_default("eta") == "ddpm `1.0`, ddim `0.0`"
    assert SAMPLERS["heun"].default("s_churn") == 0.0
    assert knob_default("s_churn") == "`0.0` (euler, heun only)"


def _defaults(path: str) -> dict:
    """A section's defaults as validation fills them in (an object's ``{}`` becomes its
    keys' defaults)."""
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    return _filled(node)


def _filled(node) -> dict:
    out = {}
    for k, v in node["properties"].items():
        if v.get("properties") and v.get("default") == {}:
            out[k] = _filled(v)
        elif "default" in v:
            out[k] = v["default"]
    return out


def _fields(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _sections():
    from biaslab.base.sections import LocateConfig, SAEConfig
    from biaslab.datasets.mnist import DataConfig
    from biaslab.evaluation.cell import MetricsConfig
    from biaslab.evaluation.classifier import ClassifierConfig
    from biaslab.evaluation.probe import ProbeConfig
    from biaslab.sampling.generate import SamplerConfig
    from biaslab.training.train import TrainConfig

    return [
        ("data", DataConfig),
        ("training", TrainConfig),
        ("classifier", ClassifierConfig),
        ("metrics", MetricsConfig),
        ("probe", ProbeConfig),
        ("difflens.sae", SAEConfig),
        ("difflens.attribution", LocateConfig),
        ("sampling", SamplerConfig),
        ("sampling.edm", SamplerConfig),
    ]


@pytest.mark.parametrize("section", [s for s, _ in _sections()])
def test_dataclass_defaults_equal_the_schema(section):
    cls = dict(_sections())[section]
    schema, fields = _defaults(section), _fields(cls)
    shared = sorted(set(schema) & set(fields))
    assert shared, (section, sorted(schema), sorted(fields))
    assert {k: schema[k] for k in shared} == {k: fields[k] for k in shared}


def test_edm_constants_equal_the_schema():
    from biaslab.models.objectives import EDM_DEFAULTS

    assert _defaults("training.edm") == EDM_DEFAULTS
