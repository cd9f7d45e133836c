"""Pretrained diffusers models from local folders: unconditional U-Nets and text-to-image
pipelines, sampled with this lab's samplers and knobs.

Two kinds (``pretrained.layouts.KINDS``):

* ``unet`` - a ``UNet2DModel`` and its scheduler, as diffusers' DDPM pipelines are saved
  (``unet/`` and ``scheduler/`` subfolders; the older flat layout of, e.g.,
  google/ddpm-celebahq-256, ``config.json`` + weights + ``scheduler_config.json`` at the top,
  is read too). The scheduler config is the training schedule; its ``prediction_type``
  (epsilon, v_prediction) picks the objective's adapter (``biaslab.models.objectives``). A model
  folder this lab trained (``objective.json``; ``biaslab.models.interop``) is one too, of every
  objective: its training schedule (``ddpm_scheduler/`` for edm) and ``objective.json`` are
  read, as ``training.train.load_model`` reads them. Another folder with an EDM scheduler is refused
  (its network's noise conditioning is unknown).
* ``text_to_image`` - a ``StableDiffusionPipeline`` folder (``unet/``, ``vae/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``). The samplers run in the VAE's latent space
  on ``eps(z, t, text embedding)`` and the latents are decoded at the end.

Everything is read with ``local_files_only=True``: nothing is downloaded.
``pretrained.layouts.missing_files`` lists what a folder lacks, so a config check fails before any
job, naming the key and the file.

Guidance: this lab's ``w`` (``eps = (1 + w) eps(c) - w eps(null)``, the "How I Met Your Bias"
convention) is diffusers' ``guidance_scale = 1 + w`` (``guidance_scale``); the negative prompt
plays the null condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biaslab.base.images import to_uint8
from biaslab.models.interop import trained_schedule_config
from biaslab.models.objectives import objective_of_schedule, sampler_schedule
from biaslab.pretrained.layouts import TEXT_WEIGHT_FILES, WEIGHT_FILES, missing_files
from biaslab.sampling.denoisers import TextGuidedDenoiser, network
from biaslab.sampling.generate import (
    SamplerConfig,
    bypass_context,
    check_sampler_config,
    on_device,
    sample_batches,
)


def guidance_scale(w: float) -> float:
    """diffusers' ``guidance_scale`` of this lab's guidance weight ``w``: ``1 + w``."""
    return 1.0 + float(w)


def _variant(folder: Path) -> str | None:
    """ "fp16" when the folder only has half-precision weight files."""
    if any((folder / w).is_file() for w in (*WEIGHT_FILES, *TEXT_WEIGHT_FILES)):
        return None
    found = sorted(p.name for p in folder.glob("*.*.*"))
    return found[0].split(".")[1] if found else None


def _load(cls, folder: Path, **kw):
    try:
        return cls.from_pretrained(
            str(folder), local_files_only=True, variant=_variant(folder), **kw
        )
    except (OSError, ValueError, RuntimeError) as e:  # a truncated file, another model's weights
        raise ValueError(f"{folder}: cannot load a {cls.__name__}: {e}") from e


def _scheduler_config(path: Path) -> dict[str, Any]:
    import json

    trained = trained_schedule_config(path)
    if trained is not None:
        return trained
    file = path / "scheduler" / "scheduler_config.json"
    if not file.is_file():
        file = path / "scheduler_config.json"
    try:
        config = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: not a readable scheduler config: {e}") from e
    if str(config.get("_class_name", "")).startswith("EDM"):
        raise ValueError(
            f"{file}: a {config['_class_name']}, not a DDPM training schedule: the samplers "
            "need the network's DDPM schedule (models trained here carry it)"
        )
    return {k: v for k, v in config.items() if not k.startswith("_")}


def load_unet(path: str | Path, device: torch.device | str = "cpu"):
    """``(UNet2DModel, scheduler config)`` of an unconditional model folder (kind ``unet``)."""
    from diffusers import UNet2DModel

    path = Path(path)
    missing = missing_files("unet", path)
    if missing:
        raise FileNotFoundError(f"{path}: not a diffusers U-Net folder, missing {missing}")
    sub = path / "unet" if (path / "unet" / "config.json").is_file() else path
    unet = _load(UNet2DModel, sub).to(device).eval()
    return unet, _scheduler_config(path)


@dataclass
class TextToImage:
    """The components of a text-to-image pipeline that the samplers need."""

    unet: Any  # UNet2DConditionModel
    vae: Any  # AutoencoderKL
    text_encoder: Any  # CLIPTextModel
    tokenizer: Any  # CLIPTokenizer
    scheduler_config: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Latent (C, h, w) at the U-Net's native resolution."""
        c = self.unet.config
        return (c.in_channels, c.sample_size, c.sample_size)

    def latent_shape_at(self, resolution: int | None) -> tuple[int, int, int]:
        """Latent (C, h, w) of a ``resolution`` x ``resolution`` image (None: native)."""
        if resolution is None:
            return self.latent_shape
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if resolution % f:
            raise ValueError(f"resolution {resolution} is not a multiple of the VAE's {f}")
        return (self.unet.config.in_channels, resolution // f, resolution // f)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings [len(prompts), L, D] as ``StableDiffusionPipeline.encode_prompt``
        computes them (padded to the tokenizer's max length, last hidden state)."""
        tok = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tok.attention_mask.to(self.device)
        out = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
        return out.to(self.unet.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents (scaled back by the VAE's ``scaling_factor``)."""
        vae = self.vae
        z = latents.to(self.device, vae.dtype) / vae.config.scaling_factor
        return vae.decode(z).sample.float().cpu()


def load_text_to_image(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> TextToImage:
    """The components of a ``StableDiffusionPipeline`` folder (kind ``text_to_image``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    missing = missing_files("text_to_image", path)
    if missing:
        raise FileNotFoundError(f"{path}: not a text-to-image pipeline folder, missing {missing}")
    parts = {
        "unet": _load(UNet2DConditionModel, path / "unet", torch_dtype=dtype),
        "vae": _load(AutoencoderKL, path / "vae", torch_dtype=dtype),
        "text_encoder": _load(CLIPTextModel, path / "text_encoder", torch_dtype=dtype),
    }
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path / 'tokenizer'}: cannot load a CLIPTokenizer: {e}") from e
    for name, module in parts.items():
        parts[name] = module.to(device).eval()
    emb, cross = parts["text_encoder"].config.hidden_size, parts["unet"].config.cross_attention_dim
    if emb != cross:
        raise ValueError(
            f"{path}: the text encoder's hidden size {emb} is not the U-Net's cross-attention "
            f"dimension {cross} (components of different models)"
        )
    schedule = _scheduler_config(path)
    # Latents are not in [-1, 1]: a scheduler config without clip_sample (PNDM has none) would
    # get DDPM/DDIM's default True and clip them. SD v1.x's own configs say false.
    schedule.setdefault("clip_sample", False)
    return TextToImage(tokenizer=tokenizer, scheduler_config=schedule, **parts)


def generate_unet(
    unet, scheduler_config: dict, cfg: SamplerConfig, *, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a pretrained unconditional U-Net: ``sampling.generate`` (the model's own
    schedule and prediction type)."""
    from biaslab.sampling.generate import generate

    return generate(unet, scheduler_config, cfg, progress=progress)


def generate_text_to_image(
    model: TextToImage,
    prompts: Sequence[str],
    cfg: SamplerConfig,
    *,
    negative_prompt: str = "",
    resolution: int | None = None,
    progress: bool = False,
    hooks: Sequence = (),
    decode: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.n_samples`` images (uint8 [N, 3, H, W]; ``decode=False``: the final latents,
    float32) and their seeds: sample ``i`` is prompted
    with ``prompts[i]`` (``len(prompts) == cfg.n_samples``), its latent noise drawn from its own
    seed (``sampling.sample_seed``), so the same seed gives the same start across prompts and
    knob values (same-seed grids). Guidance ``cfg.guidance`` = w (diffusers' ``guidance_scale``
    1 + w) against ``negative_prompt``; the bypass acts on the U-Net's mid-block."""
    check_sampler_config(cfg)
    if len(prompts) != cfg.n_samples:
        raise ValueError(f"sampling: {len(prompts)} prompts for {cfg.n_samples} samples")
    objective = objective_of_schedule(model.scheduler_config)
    schedule = sampler_schedule(model.scheduler_config)
    raw, dtype = network(model.unet), model.unet.dtype

    def net(x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:  # fp16 U-Nets too
        return raw(x.to(dtype), t, **kw).float()

    eps = objective.adapter(on_device(net, model.device), schedule)
    guided = TextGuidedDenoiser(eps, cfg.guidance)
    null = model.encode([negative_prompt]) if cfg.guidance != 0.0 else None
    bypass = bypass_context(model.unet, cfg, objective, schedule)

    def denoiser_for(idx: np.ndarray):
        return guided.bind(model.encode([prompts[i] for i in idx]), null)

    def finish(latents: torch.Tensor) -> np.ndarray:
        return to_uint8(model.decode(latents)) if decode else latents.float().numpy()

    with bypass:
        return sample_batches(
            cfg,
            model.latent_shape_at(resolution),
            schedule,
            denoiser_for,
            finish=finish,
            hooks=hooks,
            progress=progress,
        )
