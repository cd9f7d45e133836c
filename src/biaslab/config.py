"""Semantic checks of a (schema-validated) workflow config.

The JSON schema (workflow/schemas/config.schema.yaml) checks types, ranges and unknown keys
and fills defaults. What a schema cannot say is checked here, before any job runs; every
error names the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .models import TABLE_A, check_resolution

#: torchvision's MNIST loader expects these four uncompressed IDX files in <root>/MNIST/raw/.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

DEFAULT_ETA = {"ddpm": 1.0, "ddim": 0.0}


class ConfigError(ValueError):
    pass


def resolve_sampling_grid(grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill each grid row's ``eta`` with its sampler's default; reject duplicates."""
    rows = []
    for i, row in enumerate(grid):
        row = dict(row)
        row.setdefault("eta", DEFAULT_ETA[row["sampler"]])
        row["eta"] = float(row["eta"])
        row["steps"] = int(row["steps"])
        if row["sampler"] == "ddpm" and row["eta"] != 1.0:
            raise ConfigError(
                f"sampling.grid[{i}].eta: ddpm has no eta knob (leave it out or "
                "use 1.0); use sampler ddim for eta sweeps"
            )
        rows.append(row)
    keys = [(r["sampler"], r["steps"], r["eta"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise ConfigError("sampling.grid: duplicate rows")
    return rows


def lpips_weights_file(net: str) -> Path:
    """Where torchvision's hub cache keeps the ImageNet weights of ``net``."""
    from .backbones import default_weights_path

    return default_weights_path(net)


def _check_weights(net: str, path: str | None, key: str) -> None:
    if net not in ("alex", "vgg", "inception"):
        if path:
            raise ConfigError(f"{key}: only used with alex, vgg or inception")
        return
    file = Path(path) if path else lpips_weights_file(net)
    if not file.is_file():
        raise ConfigError(
            f"{key}: the {net} ImageNet weights file {str(file)!r} does not exist; fetch it once "
            "on an online machine (python -m biaslab.fetch_weights --dest DIR) or see README, "
            "'Weights files'"
        )


def check_config(config: dict[str, Any]) -> None:
    data = config["data"]
    if data["majority_class"] == data["minority_class"]:
        raise ConfigError("data.minority_class: must differ from data.majority_class")
    for d in config["model"]["depths"]:
        if d not in TABLE_A:
            raise ConfigError(f"model.depths: unknown depth {d!r}; Table A has {sorted(TABLE_A)}")
        try:
            check_resolution(d, data["resolution"])
        except ValueError as e:
            raise ConfigError(f"model.depths / data.resolution: {e}") from None
    if data["source"] == "mnist":
        root = data.get("root")
        if not root:
            raise ConfigError("data.root: required when data.source is 'mnist'")
        raw = Path(root) / "MNIST" / "raw"
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
        if missing and not data["download"]:
            raise ConfigError(
                f"data.root: {root!r} lacks the MNIST IDX files {missing} under {raw}; "
                "add them or set data.download: true (needs internet)"
            )
    metrics = config["metrics"]
    if metrics["backbone"] == "inception":
        raise ConfigError(
            "metrics.backbone: inception has no LPIPS weights; use it as metrics.knn_backbone"
        )
    _check_weights(metrics["backbone"], metrics.get("backbone_weights"), "metrics.backbone_weights")
    if metrics.get("knn_backbone", "same") != "same":
        _check_weights(
            metrics["knn_backbone"],
            metrics.get("knn_backbone_weights"),
            "metrics.knn_backbone_weights",
        )
    resolve_sampling_grid(config["sampling"]["grid"])
    if config["figures"]["grid_samples"] > config["sampling"]["n_samples"]:
        raise ConfigError("figures.grid_samples: larger than sampling.n_samples")
