"""The plan of a run: which model families a (schema-validated) config trains, samples and
evaluates, each family one typed ``Family``.

``plan(config)`` is the one place that turns config keys into a family's settings: its skews,
depths, seeds, sampler rows, sample count, training steps, resolution, classes, the data
settings its dataset builder takes and the training settings its models take. The workflow
(``workflow/rules/common.smk``), the budget estimator and the benchmarks read the plan; none
of them reads those config keys again.

Families:

* the **depth family** (``data.dataset``: mnist69 or celeba): unconditional Table-A U-Nets at
  minority fractions ``minority_fractions``, sampled on ``sampling.grid``;
* the **conditional family** (``conditional.datasets``): class-conditional models on Biased /
  Multi-Color MNIST (from the depth family's digits) or BFFHQ, at bias-conflicting shares
  ``1 - rho`` for ``rho`` in ``conditional.rhos``, sampled on ``conditional.grid``, trained
  with ``conditional.objective`` (default edm; null: ``training.objective``).

Adding a family = a dataset module in ``biaslab.datasets`` and one entry in ``FAMILIES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from biaslab.base.columns import (
    KNOB_TYPES,
    WILDCARD_PATTERNS,
    fraction_label,
    intervened,
    knob_path_values,
)
from biaslab.datasets import SOURCES, facts
from biaslab.plan.checks import (
    ConfigError,
    check_config,
    check_depth,
    check_probe,
    resolve_sampling_grid,
)
from biaslab.plan.difflens import with_difflens


@dataclass(frozen=True)
class Family:
    """One dataset's models: every grid value they cross, and every setting they need.

    ``fractions`` are path labels (``base.columns.fraction_label``): the minority fraction, or the
    bias-conflicting share ``1 - rho_data`` of a conditional family. ``knob_rows`` are the
    resolved sampler rows (every knob of ``base.columns.KNOB_COLUMNS``). ``data`` is what the
    dataset's builder takes, ``training`` the training settings (without depth and seed).
    ``features_scope``: the kNN features a cell reads, of the base set ("base": every skew
    indexes into it) or of its own training set ("train": recoloured MNIST, recoloured per
    rho). ``attribute_targets``: attribute classifiers beside the class classifier."""

    dataset: str
    source: str
    resolution: int
    channels: int
    fractions: tuple[str, ...]
    depths: tuple[str, ...]
    seeds: tuple[int, ...]
    knob_rows: tuple[dict[str, Any], ...]
    grid_key: str
    n_samples: int
    train_steps: int
    width: float
    num_classes: int
    data: Mapping[str, Any]
    training: Mapping[str, Any]
    sampling: Mapping[str, Any]
    features_scope: str = "base"
    attribute_targets: tuple[str, ...] = ()
    rho_right: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: DiffLens (``difflens`` section), None when the family has no SAE: ``models`` the
    #: (fraction, depth) labels that get one, ``reference`` the grid row whose sampling loop is
    #: captured, ``n_samples``, ``keep_calls``, ``target`` (the probability mode's distribution
    #: over the ``n_attribute_classes`` attribute classes), ``sae`` / ``attribution``.
    difflens: Mapping[str, Any] | None = None

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def has_sae(self, fraction: str, depth: str) -> bool:
        return self.difflens is not None and (str(fraction), str(depth)) in self.difflens["models"]

    def rows_of(self, fraction: str, depth: str) -> tuple[dict[str, Any], ...]:
        """The grid rows sampled on one model: every row, less the intervened ones on a model
        without an SAE."""
        if self.has_sae(fraction, depth):
            return self.knob_rows
        return tuple(r for r in self.knob_rows if not intervened(r))

    def model_columns(self, fraction: str, depth: str, seed: str | int) -> dict[str, Any]:
        """The data and model grid columns of one model, typed (``base.columns.GRID_COLUMNS``)."""
        g = {
            "dataset": self.dataset,
            "source": self.source,
            "resolution": self.resolution,
            "minority_fraction": float(fraction),
            "depth": str(depth),
            "width": self.width,
            "train_seed": int(seed),
            "train_steps": self.train_steps,
            "objective": str(self.training["objective"]),
            "beta_schedule": str(self.training["beta_schedule"]),
        }
        if self.conditional:
            g["rho_data"] = round(1.0 - float(fraction), 10)
            if self.rho_right is not None:
                g["rho_right"] = self.rho_right
            g["num_classes"] = self.num_classes
        return g

    def sampling_params(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """Every sampler knob of a cell (typed from path values), plus the run-wide sampling
        settings: the EDM window, the sample count and the base sample seed."""
        return {
            **{k: cast(knobs[k]) for k, cast in KNOB_TYPES.items()},
            **{k: float(v) for k, v in self.sampling["edm"].items()},
            "n_samples": self.n_samples,
            "sample_seed": int(self.sampling["sample_seed"]),
        }

    def cell_columns(
        self, fraction: str, depth: str, seed: str | int, knobs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Every grid column of a model (``knobs`` None) or of a sampler cell of it."""
        g = self.model_columns(fraction, depth, seed)
        if knobs is not None:
            g.update(self.sampling_params(knobs))
        return g

    def cell_params(
        self, rows: Any, fraction: str, depth: str, seed: str | int, batch_size: int
    ) -> list[dict[str, Any]]:
        """What a model job gives each of its cells (``jobs.cells.Cell``): the sampler
        settings and the grid columns of each of ``rows``."""
        out = []
        for row in rows:
            knobs = knob_path_values(row)
            sampling = {**self.sampling_params(knobs), "batch_size": int(batch_size)}
            out.append(
                {"sampling": sampling, "grid": self.cell_columns(fraction, depth, seed, knobs)}
            )
        return out

    def train_params(self, depth: str, seed: str | int) -> dict[str, Any]:
        """What ``training.train.TrainConfig.from_dict`` takes for one model."""
        return {**self.training, "depth": str(depth), "width": self.width, "seed": int(seed)}


def _training(config: Mapping[str, Any], steps: int, **extra: Any) -> dict[str, Any]:
    t = {k: v for k, v in config["training"].items() if k != "seeds"}
    t["steps"] = int(steps)
    t.update(extra)
    return t


def _common(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "seeds": tuple(int(s) for s in config["training"]["seeds"]),
        "width": float(config["model"]["width"]),
        "sampling": config["sampling"],
    }


#: At most this many images sampled in one run (models x cells x samples, all families): a
#: guard against a mistyped ``n_samples`` that would train and then sample for days.
MAX_SAMPLED_IMAGES = 50_000_000


def _labels(values, key: str, label_of=fraction_label) -> tuple[str, ...]:
    """Path labels of a list of skews: each a plain decimal in (0, 1) that reads back as the
    value the data is built with, and no two alike (``0.2`` and ``0.20000000001`` would share
    one path and double every row)."""
    labels = []
    for v in values:
        label = label_of(v)
        if not re.fullmatch(WILDCARD_PATTERNS["fraction"], label) or not 0 < float(label) < 1:
            raise ConfigError(
                f"{key}: {v!r} gives the share {label}, not in (0, 1) after rounding to 10 decimals"
            )
        if label in labels:
            other = values[labels.index(label)]
            raise ConfigError(
                f"{key}: {other!r} and {v!r} are the same share {label} (path labels round "
                "to 10 decimals); give each once"
            )
        labels.append(label)
    return tuple(labels)


def _check_rows(rows: list[dict[str, Any]], key: str, num_train_timesteps: int) -> None:
    """Every knob's path component fits its wildcard, and no row asks for more steps than the
    model has training timesteps."""
    for i, row in enumerate(rows):
        if row["steps"] > num_train_timesteps:
            raise ConfigError(
                f"{key}[{i}].steps: {row['steps']} steps, but the models are trained on "
                f"training.num_train_timesteps = {num_train_timesteps}"
            )
        for knob, text in knob_path_values(row).items():
            if not re.fullmatch(WILDCARD_PATTERNS[knob], text):
                raise ConfigError(f"{key}[{i}].{knob}: {row[knob]!r} cannot be a path label")


def _check_depths(depths: tuple[str, ...], resolution: int, key: str, res_key: str) -> None:
    for d in depths:
        check_depth(d, resolution, key, res_key)


def depth_family(config: Mapping[str, Any]) -> Family:
    """The unconditional depth models of ``data.dataset`` (MNIST 6 vs 9 or CelebA)."""
    data = config["data"]
    depths = tuple(str(d) for d in config["model"]["depths"])
    _check_depths(depths, int(data["resolution"]), "model.depths", "data.resolution")
    rows = resolve_sampling_grid(config["sampling"]["grid"])
    _check_rows(rows, "sampling.grid", int(config["training"]["num_train_timesteps"]))
    fractions = _labels(config["minority_fractions"], "minority_fractions")
    check_sets = getattr(SOURCES[str(data["dataset"])], "check_training_sets", None)
    if check_sets is not None:  # what the dataset's card can tell before any job
        check_sets(config, fractions)
    return Family(
        dataset=str(data["dataset"]),
        source=str(data["source"]),
        resolution=int(data["resolution"]),
        fractions=fractions,
        depths=depths,
        knob_rows=tuple(rows),
        grid_key="sampling.grid",
        n_samples=int(config["sampling"]["n_samples"]),
        train_steps=int(config["training"]["steps"]),
        num_classes=0,
        data=dict(data),
        training=_training(config, config["training"]["steps"]),
        **facts(str(data["dataset"])),
        **_common(config),
    )


def _conditional_family(
    config: Mapping[str, Any],
    dataset: str,
    *,
    source: str,
    resolution: int,
    res_key: str,
    classes: list[int],
    data: dict[str, Any],
    **kw: Any,
) -> Family:
    cond = config["conditional"]
    depths = tuple(str(d) for d in (cond["depths"] or config["model"]["depths"]))
    if not depths:
        raise ConfigError("conditional.depths: empty, and so is model.depths (its default)")
    _check_depths(depths, resolution, "conditional.depths", res_key)
    k = len(classes)
    for rho in cond["rhos"]:
        if rho < 1.0 / k:
            raise ConfigError(
                f"conditional.rhos: {rho} is below 1/{k} (chance alignment with {k} classes)"
            )
    n = int(cond["n_samples"] or config["sampling"]["n_samples"])
    if n < k:
        raise ConfigError(f"conditional.n_samples: {n} samples cannot cover the {k} classes")
    rows = resolve_sampling_grid(cond["grid"], conditional=True, key="conditional.grid")
    _check_rows(rows, "conditional.grid", int(config["training"]["num_train_timesteps"]))
    steps = int(cond["training_steps"] or config["training"]["steps"])
    objective = cond["objective"] or config["training"]["objective"]
    return Family(
        dataset=dataset,
        source=source,
        resolution=resolution,
        fractions=_labels(cond["rhos"], "conditional.rhos", lambda r: fraction_label(1 - r)),
        depths=depths,
        knob_rows=tuple(rows),
        grid_key="conditional.grid",
        n_samples=n,
        train_steps=steps,
        num_classes=k,
        data={"dataset": dataset, **data},
        training=_training(
            config,
            steps,
            num_classes=k,
            label_dropout=float(cond["label_dropout"]),
            objective=str(objective),
        ),
        **kw,
        **facts(dataset),
        **_common(config),
    )


def plan(config: Mapping[str, Any]) -> dict[str, Family]:
    """Check ``config`` (``plan.checks.check_config``, then each family's own checks) and return
    its families by dataset name, the depth family first (none when ``model.depths`` is empty).
    Raises ``ConfigError`` naming the key."""
    check_config(config)
    families = {}
    if config["model"]["depths"]:
        families[str(config["data"]["dataset"])] = depth_family(config)
    elif not config["conditional"]["datasets"] and not config.get("pretrained", {}).get("models"):
        raise ConfigError(
            "model.depths / conditional.datasets / pretrained.models: all are empty, so no "
            "family is left to run"
        )
    for ds in config["conditional"]["datasets"]:
        families[ds] = _conditional_family(config, ds, **SOURCES[ds].family_settings(config, ds))
    check_probe(config)
    families = with_difflens(config, families)
    total = sum(
        len(f.seeds) * len(f.rows_of(fr, d)) * f.n_samples
        for f in families.values()
        for fr in f.fractions
        for d in f.depths
    )
    if total > MAX_SAMPLED_IMAGES:
        raise ConfigError(
            f"sampling.n_samples / conditional.n_samples: the grid samples {total:,} images in "
            f"all, more than {MAX_SAMPLED_IMAGES:,}; lower the sample counts or split the run"
        )
    return families
