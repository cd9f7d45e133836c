"""Tiny randomly initialised model folders in the layouts users bring (no downloads): a
Stable Diffusion pipeline, an unconditional DDPM, a CLIP model + processor, FairFace weights.
Each is written with the libraries' own ``save_pretrained`` (or ``torch.save``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# the scheduler of Stable Diffusion v1.5 (its scheduler/scheduler_config.json)
SD_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def write_tokenizer(folder: Path, max_length: int = 16):
    """A CLIP BPE tokenizer over single letters (vocab.json + an empty merges.txt)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
    )


def _text_config(tok) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tok.model_max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def save_sd_pipeline(folder: Path, **components) -> Path:
    """``StableDiffusionPipeline(**components, scheduler=SD v1.5's).save_pretrained(folder)``,
    with SD v1.5's scheduler config (its ``clip_sample: false``, which PNDM ignores and DDIM
    reads)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    sched = PNDMScheduler(
        **{k: v for k, v in SD_SCHEDULER.items() if k[0] != "_" and k != "clip_sample"}
    )
    pipe = StableDiffusionPipeline(
        **components,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD_SCHEDULER))
    return folder


def write_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionPipeline folder: 16-px images, 8-px latents, random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tok = write_tokenizer(folder.parent / f"{folder.name}_tokenizer_src")
    text = CLIPTextModel(CLIPTextConfig(**_text_config(tok)))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        sample_size=16,
    )
    return save_sd_pipeline(folder, unet=unet, vae=vae, text_encoder=text, tokenizer=tok)


def write_tiny_ddpm(folder: Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """An unconditional DDPM folder (``DDPMPipeline.save_pretrained``: unet/, scheduler/),
    3 x 16 x 16 images."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    sched = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(str(folder))
    return folder


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A CLIPModel + CLIPProcessor folder (32-px vision tower)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tok = write_tokenizer(folder.parent / f"{folder.name}_tokenizer_src")
    config = CLIPConfig(
        text_config=_text_config(tok),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(str(folder))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tok,
    )
    processor.save_pretrained(str(folder))
    return folder


def write_fairface(path: Path, seed: int = 0) -> Path:
    """A FairFace-shaped ResNet-34 state dict (18 outputs), random weights."""
    from biaslab.pretrained.labellers import fairface_network

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fairface_network().state_dict(), path)
    return path
