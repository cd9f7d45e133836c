"""Semantic checks of a (schema-validated) workflow config.

The JSON schema (workflow/schemas/config.schema.yaml) checks types, ranges and unknown keys
and fills defaults. What a schema cannot say is checked here, before any job runs; every
error names the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .grid import KNOB_COLUMNS, KNOB_DEFAULTS
from .models import TABLE_A, check_resolution

#: torchvision's MNIST loader expects these four uncompressed IDX files in <root>/MNIST/raw/.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: eta of each sampler when a grid row leaves it out (only ddim has an eta knob; ddpm is
#: eta = 1 by definition; the EDM and DPM-Solver++ samplers have none).
DEFAULT_ETA = {"ddpm": 1.0, "ddim": 0.0, "euler": 0.0, "heun": 0.0, "dpmpp": 0.0}
#: Samplers with EDM stochasticity (S_churn).
CHURN_SAMPLERS = ("euler", "heun")


class ConfigError(ValueError):
    pass


def resolve_sampling_grid(
    grid: list[dict[str, Any]], *, conditional: bool = False, key: str = "sampling.grid"
) -> list[dict[str, Any]]:
    """Each grid row with every knob of ``grid.KNOB_COLUMNS`` filled ("off" unless given),
    typed, in column order. Rejects knobs a sampler does not have, guidance on unconditional
    models and duplicate rows; every message names the row."""
    rows = []
    for i, row in enumerate(grid):
        where = f"{key}[{i}]"
        sampler = row["sampler"]
        if sampler not in DEFAULT_ETA:
            raise ConfigError(f"{where}.sampler: unknown sampler {sampler!r} ({list(DEFAULT_ETA)})")
        out = {"sampler": sampler, "steps": int(row["steps"])}
        out["eta"] = float(row.get("eta", DEFAULT_ETA[sampler]))
        for k, v in KNOB_DEFAULTS.items():
            out[k] = row.get(k, v)
        for k in ("s_churn", "guidance", "bypass"):
            out[k] = float(out[k])
        out["bypass_schedule"] = str(out["bypass_schedule"])
        if sampler == "ddpm" and out["eta"] != 1.0:
            raise ConfigError(
                f"{where}.eta: ddpm has no eta knob (leave it out or use 1.0); use sampler ddim "
                "for eta sweeps"
            )
        if sampler not in ("ddpm", "ddim") and out["eta"] != 0.0:
            raise ConfigError(f"{where}.eta: {sampler} has no eta knob (ddim has)")
        if sampler not in CHURN_SAMPLERS and out["s_churn"] != 0.0:
            raise ConfigError(f"{where}.s_churn: {sampler} has no S_churn (euler and heun have)")
        if out["guidance"] != 0.0 and not conditional:
            raise ConfigError(
                f"{where}.guidance: guidance needs a class-conditional model; the depth models "
                "are unconditional (sweep guidance in conditional.grid)"
            )
        if out["bypass"] == 0.0 and out["bypass_schedule"] != "constant":
            raise ConfigError(f"{where}.bypass_schedule: set without a bypass fraction")
        rows.append({c: out[c] for c in KNOB_COLUMNS})
    keys = [tuple(r.values()) for r in rows]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ConfigError(f"{key}: duplicate rows {sorted(dup)}")
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


#: What torchvision's CelebA loader reads under ``<data.root>/celeba/``.
CELEBA_FILES = (
    "img_align_celeba",
    "list_attr_celeba.txt",
    "identity_CelebA.txt",
    "list_bbox_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "list_eval_partition.txt",
)


def _check_celeba(data: dict[str, Any]) -> None:
    if data["source"] != "celeba":
        raise ConfigError("data.source: must be 'celeba' for data.dataset celeba")
    if {data["majority_class"], data["minority_class"]} != {0, 1}:
        raise ConfigError(
            "data.majority_class / data.minority_class: CelebA classes are 0 (female) and "
            "1 (male); Table 2 uses majority_class: 0, minority_class: 1"
        )
    root = data.get("root")
    if not root:
        raise ConfigError("data.root: required for CelebA (the folder that holds celeba/)")
    base = Path(root) / "celeba"
    missing = [str(base / f) for f in CELEBA_FILES if not (base / f).exists()]
    if missing:
        raise ConfigError(
            f"data.root: CelebA files not found: {', '.join(missing)}; unpack the aligned-and-"
            f"cropped release under {base} (README, 'CelebA'). Nothing is downloaded."
        )


def _check_depth(depth: str, resolution: int, depths_key: str, resolution_key: str) -> None:
    """A Table-A depth that fits ``resolution``; errors name both config keys."""
    if depth not in TABLE_A:
        raise ConfigError(f"{depths_key}: unknown depth {depth!r}; Table A has {sorted(TABLE_A)}")
    try:
        check_resolution(depth, resolution)
    except ValueError as e:
        raise ConfigError(f"{depths_key} / {resolution_key}: {e}") from None


def check_config(config: dict[str, Any]) -> None:
    data = config["data"]
    if data["majority_class"] == data["minority_class"]:
        raise ConfigError("data.minority_class: must differ from data.majority_class")
    if data["dataset"] == "celeba" or data["source"] == "celeba":
        if data["dataset"] != "celeba":
            raise ConfigError("data.dataset: source 'celeba' needs dataset celeba")
        _check_celeba(data)
    elif data.get("max_images") is not None:
        raise ConfigError("data.max_images: only used for CelebA")
    for d in config["model"]["depths"]:
        _check_depth(d, data["resolution"], "model.depths", "data.resolution")
    if data["source"] == "mnist" and data["dataset"] == "mnist69":
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
    _check_conditional(config)
    if config["figures"]["grid_samples"] > config["sampling"]["n_samples"]:
        raise ConfigError("figures.grid_samples: larger than sampling.n_samples")


def conditional_depths(config: dict[str, Any]) -> list[str]:
    """Depths of the class-conditional models (default: ``model.depths``)."""
    depths = config["conditional"].get("depths")
    return [str(d) for d in (depths if depths else config["model"]["depths"])]


def conditional_classes(config: dict[str, Any], dataset: str) -> list[int]:
    """The conditioning classes of a conditional dataset (BFFHQ: age 0 young, 1 old)."""
    return [0, 1] if dataset == "bffhq" else list(config["conditional"]["classes"])


def conditional_resolution(config: dict[str, Any], dataset: str) -> int:
    if dataset == "bffhq":
        return int(config["conditional"]["bffhq"]["resolution"])
    return int(config["data"]["resolution"])


def _check_bffhq(bffhq: dict[str, Any]) -> None:
    root = bffhq.get("root")
    if not root:
        raise ConfigError("conditional.bffhq.root: required for BFFHQ (the folder with bffhq/)")
    base = Path(root) / "bffhq" if (Path(root) / "bffhq").is_dir() else Path(root)
    missing = [str(base / part) for part in bffhq["parts"] if not (base / part).is_dir()]
    if missing:
        raise ConfigError(
            f"conditional.bffhq.root: BFFHQ folders not found: {', '.join(missing)}; expected "
            "<root>/bffhq/<ratio>/{align,conflict}/<age>/ and <root>/bffhq/{valid,test}/ "
            "(README, 'BFFHQ'). Nothing is downloaded."
        )


def _check_conditional(config: dict[str, Any]) -> None:
    cond = config["conditional"]
    if not cond["datasets"]:
        return
    if "bffhq" in cond["datasets"]:
        _check_bffhq(cond["bffhq"])
    if any(d != "bffhq" for d in cond["datasets"]) and config["data"]["source"] not in (
        "embedded",
        "mnist",
    ):
        raise ConfigError(
            "conditional.datasets: coloured MNIST needs MNIST digits "
            "(data.source embedded or mnist)"
        )
    k = max(len(conditional_classes(config, ds)) for ds in cond["datasets"])
    for rho in cond["rhos"]:
        if rho < 1.0 / k:
            raise ConfigError(
                f"conditional.rhos: {rho} is below 1/{k} (chance alignment with {k} classes)"
            )
    for d in conditional_depths(config):
        for ds in cond["datasets"]:  # each dataset at its own resolution
            key = "conditional.bffhq.resolution" if ds == "bffhq" else "data.resolution"
            _check_depth(d, conditional_resolution(config, ds), "conditional.depths", key)
    resolve_sampling_grid(cond["grid"], conditional=True, key="conditional.grid")
    n = cond.get("n_samples") or config["sampling"]["n_samples"]
    if n < k:
        raise ConfigError(f"conditional.n_samples: {n} samples cannot cover the {k} classes")
