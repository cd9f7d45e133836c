"""Semantic checks of a (schema-validated) workflow config.

The JSON schema (workflow/schemas/config.schema.yaml) checks types, ranges and unknown keys
and fills defaults. What a schema cannot say is checked here, before any job runs; every
error names the offending key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from biaslab.base.columns import (
    GRID_COLUMNS,
    KNOB_COLUMNS,
    KNOB_TYPES,
    fmt_value,
    resolve_treatments,
)
from biaslab.base.errors import ConfigError, as_config_error  # noqa: F401 (re-exported)
from biaslab.datasets import SOURCES
from biaslab.models.unets import TABLE_A, check_resolution
from biaslab.sampling.registry import SAMPLERS, knob_error
from biaslab.stats.claims import CONTRAST_KEYS, LEVELS

#: The workflow's config schema (types, ranges, unknown keys, defaults).
SCHEMA_FILE = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def check_finite(config: Any, key: str = "") -> None:
    """Every number of ``config`` is finite: NaN passes every range of a JSON schema (its
    comparisons are false) and +-inf passes every one-sided range, so both are rejected here,
    once for every key, before the schema runs. The error names the key."""
    if isinstance(config, dict):
        for name, value in config.items():
            check_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(config, list | tuple):
        for i, value in enumerate(config):
            check_finite(value, f"{key}[{i}]")
    elif isinstance(config, float) and not math.isfinite(config):
        raise ConfigError(f"{key or 'config'}: {config} is not a finite number")


def check_unique_keys(path: str | Path) -> None:
    """A YAML file (a config file, ``--configfile`` too) whose mappings repeat a key is an
    error naming the key and both lines: YAML loaders keep the last value silently, so a
    researcher editing a long config could not see which value ran."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            k = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if k in seen:
                raise ConfigError(
                    f"{path}: line {line}: key {k!r} is repeated (first at line {seen[k]}); "
                    "a repeated key would silently keep the last value"
                )
            seen[k] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        yaml.load(Path(path).read_text(), Loader=Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` validated against ``SCHEMA_FILE`` with the schema's defaults filled in (a
    copy), as Snakemake's ``validate`` does before the workflow reads it; for tools that read
    a config file outside Snakemake (``biaslab.plan.budget``, the benchmarks)."""
    import copy

    import jsonschema
    import yaml

    if not SCHEMA_FILE.is_file():
        raise FileNotFoundError(f"config schema {SCHEMA_FILE} not found (run from a checkout)")
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(base, {"properties": set_defaults})
    check_finite(config)
    out = copy.deepcopy(dict(config))
    try:
        filling(schema).validate(out)
    except jsonschema.ValidationError as e:
        path = "".join(f"[{p!r}]" for p in e.absolute_path)
        raise ConfigError(f"{path or 'config'}: {e.message}") from None
    return out


def resolve_sampling_grid(
    grid: list[dict[str, Any]], *, conditional: bool = False, key: str = "sampling.grid"
) -> list[dict[str, Any]]:
    """Each grid row with every knob of ``base.columns.KNOB_COLUMNS`` filled (the sampler's default,
    else "off"; ``sampling.registry.SAMPLERS``), typed, in column order. Rejects knobs a sampler
    does not have, guidance on unconditional models and duplicate rows; every message names the
    row."""
    rows = []
    for i, row in enumerate(grid):
        where = f"{key}[{i}]"
        sampler = row["sampler"]
        if sampler not in SAMPLERS:
            raise ConfigError(f"{where}.sampler: unknown sampler {sampler!r} ({list(SAMPLERS)})")
        spec = SAMPLERS[sampler]
        out = {k: KNOB_TYPES[k](row.get(k, spec.default(k))) for k in KNOB_COLUMNS}
        err = knob_error(sampler, out)
        if err:
            raise ConfigError(f"{where}.{err[0]}: {err[1]}")
        if out["guidance"] != 0.0 and not conditional:
            raise ConfigError(
                f"{where}.guidance: guidance needs a class-conditional model; the depth models "
                "are unconditional (sweep guidance in conditional.grid)"
            )
        rows.append(resolve_treatments(out, where))
    keys = [tuple(r.values()) for r in rows]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ConfigError(f"{key}: duplicate rows {sorted(dup)}")
    return rows


def lpips_weights_file(net: str) -> Path:
    """Where torchvision's hub cache keeps the ImageNet weights of ``net``."""
    from biaslab.evaluation.backbones import default_weights_path

    return default_weights_path(net)


#: Backbones whose weights are a local file.
_WEIGHTED_NETS = ("alex", "vgg", "inception")


def _check_weights(net: str, path: str | None, key: str) -> None:
    if net not in _WEIGHTED_NETS:
        return
    file = Path(path) if path else lpips_weights_file(net)
    if not file.is_file():
        raise ConfigError(
            f"{key}: the {net} ImageNet weights file {str(file)!r} does not exist; fetch it once "
            "on an online machine (python -m biaslab.evaluation.fetch_weights --dest DIR); see "
            "docs/guide/data-and-weights.md"
        )


def _check_fid_inception(path: str) -> None:
    """``metrics.fid_inception_weights``: the file exists and is the FID Inception's state dict
    (``evaluation.quality.fid_inception_metric`` builds the network torchmetrics will use from
    it)."""
    from biaslab.evaluation.quality import fid_inception_metric

    try:
        fid_inception_metric(path)
    except (FileNotFoundError, ModuleNotFoundError, ValueError) as e:
        raise ConfigError(f"metrics.fid_inception_weights: {e}") from None


def _datasets(config: dict[str, Any]) -> list[str]:
    """The datasets a config reads: ``data.dataset`` and ``conditional.datasets``."""
    return [str(config["data"]["dataset"]), *config["conditional"]["datasets"]]


def check_depth(depth: str, resolution: int, depths_key: str, resolution_key: str) -> None:
    """A Table-A depth that fits ``resolution``; errors name both config keys."""
    if depth not in TABLE_A:
        raise ConfigError(f"{depths_key}: unknown depth {depth!r}; Table A has {sorted(TABLE_A)}")
    try:
        check_resolution(depth, resolution)
    except ValueError as e:
        raise ConfigError(f"{depths_key} / {resolution_key}: {e}") from None


def check_config(config: dict[str, Any]) -> None:
    """What the schema cannot say about a config, without reading any file (``check_inputs``
    checks the files; ``plan.families.plan`` each family's grid)."""
    data = config["data"]
    if data["majority_class"] == data["minority_class"]:
        raise ConfigError("data.minority_class: must differ from data.majority_class")
    for dataset in _datasets(config):  # each dataset card's own settings
        getattr(SOURCES[dataset], "check_config", lambda config: None)(config)
    metrics = config["metrics"]
    if metrics["backbone"] == "inception":
        raise ConfigError(
            "metrics.backbone: inception has no LPIPS weights; use it as metrics.knn_backbone"
        )
    for key in ("backbone", "knn_backbone"):
        if metrics.get(f"{key}_weights") and metrics.get(key) not in _WEIGHTED_NETS:
            raise ConfigError(f"metrics.{key}_weights: only used with alex, vgg or inception")
    if config["figures"]["grid_samples"] > config["sampling"]["n_samples"]:
        raise ConfigError("figures.grid_samples: larger than sampling.n_samples")
    check_claims(config.get("claims", []))


def check_claims(claims: list[dict[str, Any]]) -> None:
    """Claim ids are unique, ``where`` names grid columns, and each claim is a contrast claim
    (``CONTRAST_KEYS``) or a level claim (one of ``stats.claims.LEVELS``). Whether a claim matches
    the run's cells is known once the run has them: ``stats.claims.evaluate_claims``."""
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        if claim["id"] in seen:
            raise ConfigError(f"claims[{i}].id: {claim['id']!r} is used twice")
        seen.add(claim["id"])
        unknown = sorted(set(claim.get("where") or {}) - set(GRID_COLUMNS))
        if unknown:
            raise ConfigError(f"claims[{i}].where: {unknown} are not grid columns")
        contrast = [k for k in CONTRAST_KEYS if k in claim]
        levels = [k for k in LEVELS if k in claim]
        if len(levels) > 1:
            raise ConfigError(f"claims[{i}].{levels[1]}: a level claim has one of {levels}")
        if levels and contrast:
            raise ConfigError(
                f"claims[{i}].{contrast[0]}: a level claim ({levels[0]}) compares no cells; "
                f"leave out {contrast}"
            )
        if not levels and len(contrast) < len(CONTRAST_KEYS):
            missing = [k for k in CONTRAST_KEYS if k not in claim]
            raise ConfigError(
                f"claims[{i}].{missing[0]}: required (a contrast claim has {list(CONTRAST_KEYS)};"
                f" a level claim at_least or at_most)"
            )
        if not levels:
            _check_contrast_claim(i, claim)


def _check_contrast_claim(i: int, claim: dict[str, Any]) -> None:
    """``from`` and ``to`` differ (a list ``vary``: lists of its length, differing in every
    column, as ``stats.contrasts.contrast_pairs`` pairs them)."""
    vary = claim["vary"]
    if isinstance(vary, str):
        if isinstance(claim["from"], list) or isinstance(claim["to"], list):
            raise ConfigError(f"claims[{i}].from: one value for vary {vary!r}, not a list")
        if fmt_value(claim["from"]) == fmt_value(claim["to"]):  # as contrasts match them
            raise ConfigError(f"claims[{i}].to: the same value as claims[{i}].from")
        return
    for key in ("from", "to"):
        if not isinstance(claim[key], list) or len(claim[key]) != len(vary):
            raise ConfigError(f"claims[{i}].{key}: a list of {len(vary)} values, one per {vary}")
    same = [
        c
        for c, a, b in zip(vary, claim["from"], claim["to"], strict=True)
        if fmt_value(a) == fmt_value(b)
    ]
    if same:
        raise ConfigError(
            f"claims[{i}].to: the same {same} as claims[{i}].from (a joint contrast changes "
            "every column of vary; a column held fixed belongs in where)"
        )


def check_probe(config: dict[str, Any]) -> None:
    """The probe's timesteps exist in the models' schedule and contain its reference t."""
    probe, steps = config["probe"], config["training"]["num_train_timesteps"]
    if probe["reference_t"] not in probe["timesteps"]:
        raise ConfigError(f"probe.reference_t: {probe['reference_t']} is not in probe.timesteps")
    if max(probe["timesteps"]) >= steps:
        raise ConfigError(
            f"probe.timesteps: {max(probe['timesteps'])} is not below "
            f"training.num_train_timesteps = {steps}"
        )


def check_inputs(config: dict[str, Any]) -> None:
    """The local files a (checked) config reads: data sets and weights. Nothing is
    downloaded at run time, so a missing file fails here, before any job, naming its key."""
    metrics = config["metrics"]
    for dataset in _datasets(config):  # each dataset card's files
        getattr(SOURCES[dataset], "check_files", lambda config: None)(config)
    _check_weights(metrics["backbone"], metrics.get("backbone_weights"), "metrics.backbone_weights")
    if metrics.get("knn_backbone", "same") != "same":
        _check_weights(
            metrics["knn_backbone"],
            metrics.get("knn_backbone_weights"),
            "metrics.knn_backbone_weights",
        )
    if metrics.get("fid_inception_weights"):
        _check_fid_inception(metrics["fid_inception_weights"])


def check_before_schema(files: Any, config: Any) -> None:
    """What the schema cannot see: a repeated key in any config file, and NaN / inf anywhere
    (NaN passes every range of a schema)."""
    for path in files:
        check_unique_keys(path)
    check_finite(config)
