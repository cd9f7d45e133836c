"""The ``pretrained`` section of the config as typed models and sampler rows (the plan of the
models this lab did not train; ``biaslab.plan.families`` is that of the trained families).

``pretrained_plan(config)`` checks the section and returns its models by name;
``pretrained_rows(config)`` the sampler knob rows every model is sampled on (the grid, then
the bypass study's rows: the first grid row at each bypass fraction); ``check_pretrained_files``
the local folders and weights, before any job, each error naming its key and the missing file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biaslab.base.columns import KNOB_COLUMNS
from biaslab.plan.checks import ConfigError, resolve_sampling_grid
from biaslab.pretrained.layouts import clip_missing_files, missing_files

GRID_KEY = "pretrained.grid"
#: The metric tables' columns of a pretrained cell, beside the knobs.
MODEL_COLUMNS = ("dataset", "kind", "guidance_scale", "n_samples", "sample_seed")


@dataclass(frozen=True)
class PretrainedModel:
    """One model of ``pretrained.models``; ``classes`` are the prompt classes (text-to-image:
    one per prompt list; unet: none), ``prompts[c]`` the prompts of class ``c``, cycled over
    its ``n_samples`` samples."""

    name: str
    path: str | None
    kind: str
    key: str  # pretrained.models[i]
    classes: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]
    negative_prompt: str
    resolution: int | None
    n_samples: int
    dtype: str
    cells: str = "all"  # all | grid | bypass_study

    @property
    def text_to_image(self) -> bool:
        return self.kind == "text_to_image"

    def class_prompts(self, c: int) -> list[str]:
        """The prompt of each of class ``c``'s samples (its prompt list, cycled)."""
        p = self.prompts[c]
        return [p[i % len(p)] for i in range(self.n_samples)]


Prompts = tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]


def _prompts(entry: Mapping[str, Any], key: str) -> Prompts:
    p = entry.get("prompts")
    if entry["kind"] == "unet":
        if p:
            raise ConfigError(f"{key}.prompts: an unconditional U-Net (kind unet) takes no prompts")
        return (), ()
    if not p:
        raise ConfigError(f"{key}.prompts: a text-to-image model needs prompts (list or mapping)")
    if isinstance(p, list):
        if not all(isinstance(s, str) and s for s in p):
            raise ConfigError(f"{key}.prompts: a list of non-empty prompt strings")
        return tuple(p), tuple((s,) for s in p)
    classes, prompts = [], []
    for name, texts in p.items():
        texts = [texts] if isinstance(texts, str) else texts
        if not texts or not all(isinstance(s, str) and s for s in texts):
            raise ConfigError(f"{key}.prompts.{name}: a non-empty list of prompt strings")
        classes.append(str(name))
        prompts.append(tuple(texts))
    return tuple(classes), tuple(prompts)


def pretrained_plan(config: Mapping[str, Any]) -> dict[str, PretrainedModel]:
    """The checked models of ``pretrained.models`` by name (empty when none)."""
    section = config.get("pretrained", {})
    models: dict[str, PretrainedModel] = {}
    for i, entry in enumerate(section.get("models", [])):
        key = f"pretrained.models[{i}]"
        name = str(entry["name"])
        if name in models:
            raise ConfigError(f"{key}.name: {name!r} is used twice")
        if entry["kind"] == "unet" and entry.get("resolution") is not None:
            raise ConfigError(f"{key}.resolution: a U-Net samples at its own size (leave it out)")
        classes, prompts = _prompts(entry, key)
        models[name] = PretrainedModel(
            name=name,
            path=entry.get("path"),
            kind=str(entry["kind"]),
            key=key,
            classes=classes,
            prompts=prompts,
            negative_prompt=str(entry.get("negative_prompt", "")),
            resolution=entry.get("resolution"),
            n_samples=int(entry.get("n_samples", 64)),
            dtype=str(entry.get("dtype", "float32")),
            cells=str(entry.get("cells", "all")),
        )
        if models[name].cells == "bypass_study" and not models[name].text_to_image:
            raise ConfigError(f"{key}.cells: the bypass study compares prompts (text-to-image)")
        if models[name].cells == "bypass_study" and not section.get("bypass_study", {}).get(
            "bypass"
        ):
            raise ConfigError(
                f"{key}.cells: bypass_study, but pretrained.bypass_study.bypass is empty"
            )
    if models:
        rows = pretrained_rows(config)
        _check_rows(rows, models)
        clip = section.get("labellers", {}).get("clip", {})
        if clip.get("path") and not clip.get("attributes"):
            raise ConfigError(
                "pretrained.labellers.clip.attributes: CLIP is given but no attribute to label "
                "(attribute -> value -> text templates)"
            )
    return models


def _study_row(first: Mapping[str, Any], p: float) -> dict[str, Any]:
    row = {**first, "bypass": float(p)}
    if row["bypass"] == 0.0:
        row["bypass_schedule"] = "constant"
    return row


def pretrained_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The knob rows of the pretrained models: ``pretrained.grid``, then the bypass study's
    (``bypass_study_rows``) not already in the grid."""
    section = config.get("pretrained", {})
    rows = resolve_sampling_grid(
        section.get("grid", [{"sampler": "ddim", "steps": 50}]), conditional=True, key=GRID_KEY
    )
    fractions = section.get("bypass_study", {}).get("bypass", [])
    return rows + [r for r in (_study_row(rows[0], p) for p in fractions) if r not in rows]


def bypass_study_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The bypass study: the first grid row at each ``bypass_study.bypass`` fraction, in
    fraction order (empty without a study)."""
    section = config.get("pretrained", {})
    fractions = sorted({float(p) for p in section.get("bypass_study", {}).get("bypass", [])})
    first = pretrained_rows(config)[0]
    return [_study_row(first, p) for p in fractions]


def model_rows(config: Mapping[str, Any], model: PretrainedModel) -> list[dict[str, Any]]:
    """The rows ``model`` is sampled on (its ``cells``: the grid, the bypass study or both); an
    unconditional U-Net skips the guided rows (nothing to guide toward) and the bypass study
    (it compares prompts)."""
    section = config.get("pretrained", {})
    grid = resolve_sampling_grid(
        section.get("grid", [{"sampler": "ddim", "steps": 50}]), conditional=True, key=GRID_KEY
    )
    study = bypass_study_rows(config) if model.text_to_image else []
    rows = {"all": grid + [r for r in study if r not in grid], "grid": grid, "bypass_study": study}
    chosen = rows[model.cells]
    return chosen if model.text_to_image else [r for r in chosen if r["guidance"] == 0.0]


def in_bypass_study(config: Mapping[str, Any], model: PretrainedModel) -> bool:
    """Whether ``model`` is drawn in the bypass study (Fig. 6): a text-to-image model whose
    cells include the study's rows."""
    return bool(bypass_study_rows(config)) and model.text_to_image and model.cells != "grid"


def _check_rows(rows: list[dict[str, Any]], models: Mapping[str, PretrainedModel]) -> None:
    unet_only = all(not m.text_to_image for m in models.values())
    for i, row in enumerate(rows):
        if row["guidance"] != 0.0 and unet_only:
            raise ConfigError(
                f"{GRID_KEY}[{i}].guidance: guidance needs a text-to-image model; every "
                f"pretrained model here is an unconditional U-Net"
            )
        if row["intervene"] != 1.0:
            raise ConfigError(
                f"{GRID_KEY}[{i}].intervene: the DiffLens intervention needs an SAE trained on "
                f"the model's activations, which this lab builds for its own models only"
            )


def _missing_path(key: str, what: str) -> ConfigError:
    return ConfigError(f"{key}: not set; {what} (docs/guide/pretrained.md)")


def check_pretrained_files(config: Mapping[str, Any]) -> None:
    """Every folder and weights file of ``pretrained``: a ConfigError naming the key and the
    file that is missing, before any job."""
    models = pretrained_plan(config)
    for m in models.values():
        what = {
            "unet": "a diffusers UNet2DModel folder (unet/ and scheduler/)",
            "text_to_image": "a StableDiffusionPipeline folder",
        }[m.kind]
        if not m.path:
            raise _missing_path(f"{m.key}.path", what)
        missing = missing_files(m.kind, m.path)
        if missing:
            raise ConfigError(f"{m.key}.path: {m.path} is not {what}: missing {missing}")
    if not models:
        return
    labellers = config["pretrained"].get("labellers", {})
    clip, fairface = labellers.get("clip", {}), labellers.get("fairface", {})
    if clip.get("attributes") and not clip.get("path"):
        raise _missing_path(
            "pretrained.labellers.clip.path", "a local CLIPModel + CLIPProcessor folder"
        )
    if not clip.get("attributes") and not fairface.get("path"):
        raise ConfigError(
            "pretrained.labellers: no labeller (set clip.path and clip.attributes, or "
            "fairface.path), so no attribute of the images could be measured"
        )
    if config["pretrained"].get("bypass_study", {}).get("bypass") and not clip.get("path"):
        raise _missing_path(
            "pretrained.labellers.clip.path",
            "the bypass study measures CLIP similarity between prompts, so it needs the folder",
        )
    if clip.get("path"):
        missing = clip_missing_files(clip["path"])
        if missing:
            raise ConfigError(
                f"pretrained.labellers.clip.path: {clip['path']} is not a CLIP folder: missing "
                f"{missing}"
            )
    ff = labellers.get("fairface", {}).get("path")
    if ff and not Path(ff).is_file():
        raise ConfigError(f"pretrained.labellers.fairface.path: {ff} does not exist")


def cell_columns(model: PretrainedModel, row: Mapping[str, Any], config: Mapping[str, Any]) -> dict:
    """The grid columns of one pretrained cell (``MODEL_COLUMNS`` and every knob)."""
    return {
        "dataset": model.name,
        "kind": model.kind,
        **{k: row[k] for k in KNOB_COLUMNS},
        "guidance_scale": 1.0 + float(row["guidance"]),
        "n_samples": model.n_samples,
        "sample_seed": int(config["pretrained"].get("sample_seed", 0)),
    }
