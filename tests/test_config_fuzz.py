"""Configs drawn from the JSON schema: each is rejected before any job with a message naming
a config key, or it plans a DAG whose every path label fits the workflow's wildcards."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from biaslab.base.columns import WILDCARD_PATTERNS, knob_path_values
from biaslab.plan.checks import ConfigError, check_inputs, with_defaults
from biaslab.plan.families import plan
from tests.helpers import ROOT

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def _keys(schema: dict) -> set[str]:
    """Every property name of the schema (the words a message may name)."""
    out = set()
    for name, sub in schema.get("properties", {}).items():
        out.add(name)
        out |= _keys(sub)
        if isinstance(sub.get("items"), dict):  # a list of objects (pretrained.models)
            out |= _keys(sub["items"])
    for sub in schema.get("$defs", {}).values():
        out |= _keys(sub.get("items", sub))
    return out


KEYS = _keys(SCHEMA)


def names_a_key(message: str) -> bool:
    """The message starts with a key path (``data.root:``, ``sampling.grid[1].eta:``,
    ``['training']['steps']:``, ``data.n_train / minority_fractions:``)."""
    head = message.split(":", 1)[0]
    words = set(re.findall(r"[a-z_]+", head))
    return ":" in message and bool(words) and words <= KEYS | {"and"}


def test_names_a_key():
    assert names_a_key("sampling.grid[1].eta: the ddim sampler ...")
    assert names_a_key("['training']['steps']: 'many' is not of type 'integer'")
    assert names_a_key("data.n_train / minority_fractions: at ...")
    assert not names_a_key("division by zero")
    assert not names_a_key("something went wrong: x")


def _check(cfg: dict) -> None:
    try:
        families = plan(with_defaults(cfg))
        check_inputs(with_defaults(cfg))
    except ConfigError as e:
        assert names_a_key(str(e)), str(e)
        return
    for fam in families.values():
        for label in fam.fractions:
            assert re.fullmatch(WILDCARD_PATTERNS["fraction"], label), label
        for depth in fam.depths:
            assert re.fullmatch(WILDCARD_PATTERNS["depth"], depth), depth
        for row in fam.knob_rows:
            for knob, text in knob_path_values(row).items():
                assert re.fullmatch(WILDCARD_PATTERNS[knob], text), (knob, text)
                assert type(row[knob])(text) == row[knob], (knob, text)


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(from_schema(SCHEMA))
def test_configs_from_the_schema_plan_or_fail_naming_a_key(cfg):
    _check(cfg)
