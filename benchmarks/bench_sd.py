"""Text-to-image sampling throughput: biaslab.pretrained.models.generate_text_to_image against
diffusers' StableDiffusionPipeline (DDIMScheduler), side by side in one process, on the same
randomly initialised model of the real Stable Diffusion v1.5 configuration (UNet 860M, VAE,
CLIP ViT-L/14 text encoder: nothing to download). Both start from the same per-sample latents,
so the benchmark also prints the largest difference of the final latents as a check.

    python benchmarks/bench_sd.py --n 8 --steps 50 --guidance 6.5 --dtype float16   # a GPU
    python benchmarks/bench_sd.py --tiny --n 2 --steps 3                              # a CPU

``--tiny`` builds a 16-px model instead (the tests' size) to check the script itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_sampling import timed  # the same timer (median of repeats, CUDA-synchronised)

from biaslab.models.unets import default_device
from biaslab.pretrained.models import generate_text_to_image, guidance_scale, load_text_to_image
from biaslab.sampling.generate import SamplerConfig
from biaslab.sampling.samplers import per_sample_noise

ROOT = Path(__file__).resolve().parents[1]
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=2,
    sample_size=512,
)
SD15_TEXT = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
)


def write_sd15_random(folder: Path) -> Path:
    """A StableDiffusionPipeline folder with SD v1.5's architecture and random weights (the
    tokenizer: the tests' letter vocabulary, padded to 77 tokens)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(ROOT))
    from tests.pretrained_fixtures import save_sd_pipeline, write_tokenizer

    torch.manual_seed(0)
    tok = write_tokenizer(folder.parent / "tokenizer_src", max_length=77)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408, bos_token_id=0, eos_token_id=1, pad_token_id=1, **SD15_TEXT
        )
    )
    return save_sd_pipeline(
        folder,
        unet=UNet2DConditionModel(**SD15_UNET),
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=text,
        tokenizer=tok,
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print and return images/s of both and the max latent difference."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="images per run (one batch)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=6.5, help="w (guidance_scale = 1 + w)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="a 16-px model (checks the script)")
    ap.add_argument("--folder", help="an existing SD folder instead of a random one")
    args = ap.parse_args(argv)
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    device = default_device()
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "sd"
        if not args.folder:
            if args.tiny:
                sys.path.insert(0, str(ROOT))
                from tests.pretrained_fixtures import write_tiny_sd

                write_tiny_sd(folder)
            else:
                write_sd15_random(folder)
        model = load_text_to_image(folder, device, dtype)
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder), local_files_only=True, safety_checker=None, torch_dtype=dtype
        ).to(device)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        prompts = [["a woman", "a girl", "an actress"][i % 3] for i in range(args.n)]
        spacing = pipe.scheduler.config.timestep_spacing
        cfg = SamplerConfig(
            sampler="ddim",
            steps=args.steps,
            eta=0.0,
            n_samples=args.n,
            batch_size=args.n,
            guidance=args.guidance,
            timestep_spacing=spacing,
        )
        side = model.latent_shape[1] * 2 ** (len(model.vae.config.block_out_channels) - 1)

        def ours():
            return generate_text_to_image(model, prompts, cfg, decode=False)

        def theirs(seeds):
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
            latents = per_sample_noise(model.latent_shape, gens).to(device, dtype)
            return pipe(
                prompts,
                num_inference_steps=args.steps,
                guidance_scale=guidance_scale(args.guidance),
                latents=latents,
                eta=0.0,
                output_type="latent",
                height=side,
                width=side,
            ).images

        t_ours, (lat, seeds) = timed(ours, args.repeats)
        t_theirs, ref = timed(lambda: theirs(seeds), args.repeats)
        diff = float(np.abs(lat - ref.float().cpu().numpy()).max())
    out = {
        "biaslab_images_per_s": args.n / t_ours,
        "diffusers_images_per_s": args.n / t_theirs,
        "ratio": t_theirs / t_ours,
        "max_latent_diff": diff,
    }
    print(
        f"device {device}, {'tiny' if args.tiny else 'SD v1.5 architecture, random weights'}, "
        f"{side} px, batch {args.n}, DDIM {args.steps} steps, w {args.guidance} "
        f"(guidance_scale {guidance_scale(args.guidance)}), {args.dtype}, median of "
        f"{args.repeats}\n"
        f"biaslab {out['biaslab_images_per_s']:.3f} img/s | StableDiffusionPipeline "
        f"{out['diffusers_images_per_s']:.3f} img/s | ratio {out['ratio']:.2f}x | "
        f"max |latent diff| {diff:.2e}"
    )
    return out


if __name__ == "__main__":
    main()
