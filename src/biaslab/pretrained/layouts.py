"""What a model folder must hold, without importing torch or diffusers (the workflow checks
every folder of a config at parse time, before any job): the layouts of the pretrained kinds
(``biaslab.pretrained.models``) and of a CLIP folder (``biaslab.pretrained.labellers``)."""

from __future__ import annotations

from pathlib import Path

KINDS = ("unet", "text_to_image")

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TEXT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Each entry: the files of which one must exist (alternatives), relative to the folder.
_LAYOUT: dict[str, tuple[tuple[str, ...], ...]] = {
    "unet": (
        ("unet/config.json",),
        tuple(f"unet/{w}" for w in WEIGHT_FILES),
        ("scheduler/scheduler_config.json",),
    ),
    "text_to_image": (
        ("model_index.json",),
        ("unet/config.json",),
        tuple(f"unet/{w}" for w in WEIGHT_FILES),
        ("vae/config.json",),
        tuple(f"vae/{w}" for w in WEIGHT_FILES),
        ("text_encoder/config.json",),
        tuple(f"text_encoder/{w}" for w in TEXT_WEIGHT_FILES),
        ("tokenizer/tokenizer.json", "tokenizer/vocab.json"),
        ("scheduler/scheduler_config.json",),
    ),
}
# The older flat layout of an unconditional model (diffusers < 0.3 hub folders).
_FLAT_UNET = (("config.json",), WEIGHT_FILES, ("scheduler_config.json",))


def _has(folder: Path, name: str) -> bool:
    if (folder / name).is_file():
        return True
    # half-precision variants: diffusion_pytorch_model.fp16.safetensors, model.fp16.safetensors
    stem, dot, ext = name.rpartition(".")
    return dot == "." and any((folder / Path(name).parent).glob(f"{Path(stem).name}.*.{ext}"))


def _missing(folder: Path, layout: tuple[tuple[str, ...], ...]) -> list[str]:
    return [" or ".join(alts) for alts in layout if not any(_has(folder, a) for a in alts)]


def missing_files(kind: str, path: str | Path) -> list[str]:
    """The files a ``kind`` folder at ``path`` lacks (one entry per missing file, its
    alternatives joined by "or"); empty when it is complete. ``tokenizer/vocab.json`` needs
    ``tokenizer/merges.txt`` beside it."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    folder = Path(path)
    if not folder.is_dir():
        return [f"{folder} (no such folder)"]
    missing = _missing(folder, _LAYOUT[kind])
    if kind == "unet" and missing and not _missing(folder, _FLAT_UNET):
        return []
    tok = folder / "tokenizer"
    if kind == "text_to_image" and (tok / "vocab.json").is_file():
        if not (tok / "tokenizer.json").is_file() and not (tok / "merges.txt").is_file():
            missing.append("tokenizer/merges.txt")
    return missing


def clip_missing_files(path: str | Path) -> list[str]:
    """The files a CLIP folder (``CLIPModel.save_pretrained`` + ``CLIPProcessor``) lacks."""
    folder = Path(path)
    if not folder.is_dir():
        return [f"{folder} (no such folder)"]
    need = (
        ("config.json",),
        ("model.safetensors", "pytorch_model.bin"),
        ("preprocessor_config.json", "processor_config.json"),
        ("tokenizer.json", "vocab.json"),
    )
    return [" or ".join(alts) for alts in need if not any((folder / a).is_file() for a in alts)]
