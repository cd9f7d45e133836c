"""Pretrained models from local folders (biaslab.pretrained.models), labellers
(biaslab.pretrained.labellers), their cell metrics (biaslab.pretrained.evaluate) and the config
section (biaslab.plan.pretrained), on tiny random models the tests write."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from biaslab.models.objectives import objective_of_schedule
from biaslab.plan.checks import ConfigError, with_defaults
from biaslab.plan.pretrained import (
    bypass_study_rows,
    check_pretrained_files,
    model_rows,
    pretrained_plan,
    pretrained_rows,
)
from biaslab.pretrained.evaluate import cross_prompt_similarity, label_cell
from biaslab.pretrained.labellers import AGE_GROUPS, ClipLabeller, FairFaceLabeller, load_fairface
from biaslab.pretrained.models import (
    generate_text_to_image,
    generate_unet,
    guidance_scale,
    load_text_to_image,
    load_unet,
    missing_files,
)
from biaslab.sampling.denoisers import mid_block_bypass
from biaslab.sampling.generate import SamplerConfig
from biaslab.sampling.samplers import per_sample_noise
from tests.pretrained_fixtures import (
    write_fairface,
    write_tiny_clip,
    write_tiny_ddpm,
    write_tiny_sd,
)

PROMPTS = ["a woman", "a girl", "an actress"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    return {
        "sd": write_tiny_sd(root / "sd"),
        "ddpm": write_tiny_ddpm(root / "ddpm"),
        "ddpm_v": write_tiny_ddpm(root / "ddpm_v", prediction_type="v_prediction"),
        "clip": write_tiny_clip(root / "clip"),
        "fairface": write_fairface(root / "fairface.pt"),
    }


@pytest.fixture(scope="module")
def sd(folders):
    return load_text_to_image(folders["sd"])


# ---------------------------------------------------------------------------- folders


def test_complete_folders_have_no_missing_files(folders):
    assert missing_files("text_to_image", folders["sd"]) == []
    assert missing_files("unet", folders["ddpm"]) == []


def test_missing_files_are_named(folders, tmp_path):
    broken = tmp_path / "sd"
    shutil.copytree(folders["sd"], broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer")
    missing = missing_files("text_to_image", broken)
    assert any("vae/diffusion_pytorch_model.safetensors" in m for m in missing)
    assert any("tokenizer/tokenizer.json" in m for m in missing)
    assert missing_files("unet", tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere'} (no such folder)"
    ]
    with pytest.raises(FileNotFoundError, match="vae/diffusion_pytorch_model"):
        load_text_to_image(broken)


def test_flat_legacy_unet_layout_loads(folders, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (folders["ddpm"] / "unet").iterdir():
        shutil.copy(f, flat / f.name)
    shutil.copy(folders["ddpm"] / "scheduler" / "scheduler_config.json", flat)
    assert missing_files("unet", flat) == []
    unet, sched = load_unet(flat)
    assert unet.config.sample_size == 16 and sched["num_train_timesteps"] == 1000


def test_weights_of_another_model_are_a_clear_error(folders, tmp_path):
    bad = tmp_path / "ddpm"
    shutil.copytree(folders["ddpm"], bad)
    cfg = json.loads((bad / "unet" / "config.json").read_text())
    cfg["block_out_channels"] = [64, 128]  # the weights are of the (32, 64) model
    (bad / "unet" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="cannot load a UNet2DModel"):
        load_unet(bad)


# ---------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("w", [0.0, 6.5])
def test_our_ddim_equals_stable_diffusion_pipeline(folders, sd, w):
    """Our DDIM (eta 0) in the latent space with guidance w equals StableDiffusionPipeline with
    DDIMScheduler and guidance_scale = 1 + w, from the same latents."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    cfg = SamplerConfig(
        sampler="ddim", steps=6, eta=0.0, n_samples=3, guidance=w, timestep_spacing="leading"
    )
    ours, seeds = generate_text_to_image(sd, PROMPTS, cfg, decode=False)
    pipe = StableDiffusionPipeline.from_pretrained(
        str(folders["sd"]), local_files_only=True, safety_checker=None
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    latents = per_sample_noise(
        sd.latent_shape, [torch.Generator().manual_seed(int(s)) for s in seeds]
    )
    ref = pipe(
        PROMPTS,
        num_inference_steps=6,
        guidance_scale=guidance_scale(w),
        latents=latents,
        eta=0.0,
        output_type="latent",
        height=16,
        width=16,
    ).images
    diff = float(np.abs(ours - ref.numpy()).max())
    print(f"w = {w}: max |ours - StableDiffusionPipeline| = {diff:.2e} (latents)")
    assert diff < 1e-4
    images, _ = generate_text_to_image(sd, PROMPTS, cfg)
    ref_img = pipe(
        PROMPTS,
        num_inference_steps=6,
        guidance_scale=1 + w,
        latents=latents,
        output_type="np",
        height=16,
        width=16,
    ).images
    ref_u8 = (np.clip(ref_img, 0, 1) * 255).round().astype(np.uint8).transpose(0, 3, 1, 2)
    assert np.abs(images.astype(int) - ref_u8.astype(int)).max() <= 1


def test_same_seed_same_latent_start_across_prompts(sd):
    cfg = SamplerConfig(sampler="ddim", steps=3, n_samples=2, timestep_spacing="trailing")
    a, seeds_a = generate_text_to_image(sd, ["a woman"] * 2, cfg)
    _, seeds_b = generate_text_to_image(sd, ["a girl"] * 2, cfg)
    again, _ = generate_text_to_image(sd, ["a woman"] * 2, cfg)
    np.testing.assert_array_equal(seeds_a, seeds_b)
    np.testing.assert_array_equal(a, again)
    assert a.shape == (2, 3, 16, 16) and a.dtype == np.uint8
    with pytest.raises(ValueError, match="3 prompts for 2 samples"):
        generate_text_to_image(sd, PROMPTS, cfg)


def test_bypass_on_text_to_image_unet(sd):
    cfg = SamplerConfig(sampler="ddim", steps=3, n_samples=2)
    base, _ = generate_text_to_image(sd, ["a woman"] * 2, cfg, decode=False)
    zero, _ = generate_text_to_image(
        sd,
        ["a woman"] * 2,
        SamplerConfig(sampler="ddim", steps=3, n_samples=2, bypass=0.0),
        decode=False,
    )
    np.testing.assert_array_equal(base, zero)
    full, _ = generate_text_to_image(
        sd,
        ["a woman"] * 2,
        SamplerConfig(sampler="ddim", steps=3, n_samples=2, bypass=1.0),
        decode=False,
    )
    assert np.abs(full - base).max() > 1e-4
    assert not sd.unet.mid_block._forward_hooks  # removed on exit
    # p = 1: the mid-block is the identity
    x = torch.randn(1, 64, 4, 4)
    temb = torch.randn(1, sd.unet.time_embedding.linear_2.out_features)
    with mid_block_bypass(sd.unet, 1.0):
        out = sd.unet.mid_block(x, temb, encoder_hidden_states=torch.randn(1, 16, 32))
    torch.testing.assert_close(out, x)


def test_pretrained_unet_samples_and_honours_prediction_type(folders):
    unet, sched = load_unet(folders["ddpm"])
    assert objective_of_schedule(sched).name == "epsilon"
    _, sched_v = load_unet(folders["ddpm_v"])
    assert objective_of_schedule(sched_v).name == "v"
    cfg = SamplerConfig(sampler="ddim", steps=4, n_samples=3)
    eps_images, _ = generate_unet(unet, sched, cfg)
    v_images, _ = generate_unet(unet, sched_v, cfg)  # same weights read as a v model
    assert eps_images.shape == (3, 3, 16, 16)
    assert not np.array_equal(eps_images, v_images)
    heun, _ = generate_unet(unet, sched, SamplerConfig(sampler="heun", steps=3, n_samples=3))
    assert heun.shape == eps_images.shape


def test_guidance_scale_is_one_plus_w():
    assert guidance_scale(0.0) == 1.0 and guidance_scale(6.5) == 7.5


# ---------------------------------------------------------------------------- labellers


def test_clip_labeller_probabilities_and_embeddings(folders):
    lab = ClipLabeller(
        folders["clip"],
        {"gender": {"male": ["a photo of a man", "a man"], "female": ["a photo of a woman"]}},
    )
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)
    e = lab.embed(images)
    assert e.shape == (5, 16)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(5))
    ((names, p),) = lab.probabilities(images).values()
    assert names == ("male", "female") and p.shape == (5, 2)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        lab.embed(images[:, :1])
    with pytest.raises(ValueError, match="two values at least"):
        ClipLabeller(folders["clip"], {"gender": {"male": ["a man"]}})
    with pytest.raises(FileNotFoundError, match="not a CLIP folder"):
        ClipLabeller(folders["sd"], {"g": {"a": ["x"], "b": ["y"]}})


def test_fairface_labeller_groups_and_bad_weights(folders, tmp_path):
    ff = FairFaceLabeller(folders["fairface"], ["gender", "age", "race"])
    images = np.random.default_rng(1).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    p = ff.probabilities(images)
    assert p["age"][0] == tuple(AGE_GROUPS) and p["age"][1].shape == (4, 3)
    z = ff.logits(images)
    age = z[:, 9:18].softmax(-1).numpy()
    np.testing.assert_allclose(p["age"][1][:, 0], age[:, :3].sum(1), rtol=1e-5)
    for _, (_, q) in p.items():
        np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
    from torchvision.models import resnet34

    other = tmp_path / "imagenet.pt"
    torch.save(resnet34(weights=None).state_dict(), other)  # a 1000-way head
    with pytest.raises(ValueError, match=r"fc.weight is \(1000, 512\)"):
        load_fairface(other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable state dict"):
        load_fairface(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_fairface(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"labellers\.fairface\.attributes"):
        FairFaceLabeller(folders["fairface"], ["smile"])


# ---------------------------------------------------------------------------- cell metrics


def test_clip_diversity():
    from biaslab.pretrained.evaluate import clip_diversity

    e = np.random.default_rng(0).normal(size=(6, 4))
    assert clip_diversity(np.vstack([e[:1]] * 3 + [e[1:2]] * 3), np.repeat([0, 1], 3)) == 0.0
    assert clip_diversity(e, np.zeros(6, int)) > 0.5


def test_cross_prompt_similarity():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(4, 8))
    same = cross_prompt_similarity(
        np.vstack([e, 2 * e, e]), np.repeat([0, 1, 2], 4), np.tile(np.arange(4), 3)
    )
    assert same["value"] == pytest.approx(1.0) and same["n"] == 4
    other_e = rng.normal(size=(40, 8))
    other = cross_prompt_similarity(other_e, np.repeat([0, 1], 20), np.tile(np.arange(20), 2))
    assert other["ci_low"] <= other["value"] <= other["ci_high"] and abs(other["value"]) < 0.5
    with pytest.raises(ValueError, match="two prompt classes"):
        cross_prompt_similarity(e, np.zeros(4, int), np.arange(4))
    # the interval: scipy's percentile bootstrap over the per-seed similarities (the same
    # draws as the former hand-written one: integers(0, n, (n_boot, n)) of the seeded rng)
    sims = []
    for s in range(20):
        a, b = other_e[s], other_e[20 + s]
        sims.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    sims = np.asarray(sims)
    boot = sims[np.random.default_rng(0).integers(0, 20, size=(1000, 20))].mean(1)
    assert other["value"] == pytest.approx(sims.mean(), abs=1e-12)
    assert (other["ci_low"], other["ci_high"]) == pytest.approx(
        tuple(np.quantile(boot, [0.025, 0.975])), abs=1e-12
    )


class _Fixed:
    """A labeller with known probabilities: class 0 samples all 'a', class 1 half."""

    def probabilities(self, images):
        n = len(images)
        p = np.zeros((n, 2))
        p[: n // 2, 0] = 1
        p[n // 2 :, 0] = 0.5
        p[n // 2 :, 1] = 0.5
        return {"attr": (("a", "b"), p)}


def test_label_cell_tables():
    n = 8
    samples = {
        "images": np.zeros((n, 3, 4, 4), np.uint8),
        "seeds": np.tile(np.arange(4), 2),
        "labels": np.repeat([0, 1], 4),
    }
    preds, metrics = label_cell(
        samples, {"fixed": _Fixed()}, {"dataset": "m", "steps": 5}, classes=["x", "y"]
    )
    assert len(preds) == n and set(preds.prompt_class) == {"x", "y"}
    assert (preds.dataset == "m").all() and (metrics.steps == 5).all()
    share = metrics[(metrics.metric == "share") & (metrics.attribute_value == "a")].set_index(
        "prompt_class"
    )
    assert share.loc["x", "value"] == 1.0 and share.loc["y", "value"] == 0.5
    assert share.loc["all", "value"] == 0.75
    fd = metrics[(metrics.metric == "fd")].set_index("prompt_class")
    assert fd.loc["x", "value"] == pytest.approx(np.sqrt(0.5))  # || (1, 0) - (.5, .5) ||
    assert fd.loc["y", "value"] == pytest.approx(0.0)
    assert fd.loc["all", "value"] == pytest.approx(np.sqrt(0.5) / 2)  # mean over prompts


# ---------------------------------------------------------------------------- config


def _config(folders, **pretrained):
    section = {
        "models": [
            {"name": "sd", "path": str(folders["sd"]), "kind": "text_to_image", "prompts": PROMPTS},
            {"name": "ddpm", "path": str(folders["ddpm"]), "kind": "unet"},
        ],
        "grid": [{"sampler": "ddim", "steps": 4, "guidance": 2.0}, {"sampler": "ddim", "steps": 4}],
        "bypass_study": {"bypass": [0.0, 0.5, 1.0]},
        "labellers": {
            "clip": {
                "path": str(folders["clip"]),
                "attributes": {"g": {"m": ["a man"], "f": ["a woman"]}},
            },
            "fairface": {"path": str(folders["fairface"])},
        },
    }
    section.update(pretrained)
    return with_defaults({"model": {"depths": []}, "pretrained": section})


def test_plan_rows_and_models(folders):
    config = _config(folders)
    models = pretrained_plan(config)
    assert models["sd"].classes == tuple(PROMPTS) and models["ddpm"].classes == ()
    rows = pretrained_rows(config)
    # the grid, then the bypass study on the first row (p = 0 is not in the grid: guidance 2)
    assert [(r["guidance"], r["bypass"]) for r in rows] == [
        (2.0, 0.0),
        (0.0, 0.0),
        (2.0, 0.5),
        (2.0, 1.0),
    ]
    assert [r["bypass"] for r in bypass_study_rows(config)] == [0.0, 0.5, 1.0]
    assert all(r["guidance"] == 0.0 for r in model_rows(config, models["ddpm"]))
    check_pretrained_files(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"models": [{"name": "sd", "path": None, "kind": "text_to_image", "prompts": ["x"]}]},
            r"pretrained.models\[0\].path: not set",
        ),
        (
            {
                "models": [{"name": "u", "path": "/nowhere", "kind": "unet"}],
                "grid": [{"sampler": "ddim", "steps": 4}],
            },
            r"pretrained.models\[0\].path: /nowhere is not",
        ),
        (
            {"models": [{"name": "sd", "path": "P", "kind": "text_to_image"}]},
            r"models\[0\].prompts: a text-to-image model needs prompts",
        ),
        (
            {"models": [{"name": "u", "path": "P", "kind": "unet", "prompts": ["x"]}]},
            r"models\[0\].prompts: an unconditional",
        ),
        (
            {"labellers": {"clip": {"path": None, "attributes": {"g": {"a": ["x"], "b": ["y"]}}}}},
            r"labellers.clip.path: not set",
        ),
        ({"labellers": {}}, "pretrained.labellers: no labeller"),
        (
            {"grid": [{"sampler": "ddim", "steps": 4, "intervene": 4.0}]},
            r"pretrained.grid\[0\].intervene",
        ),
    ],
)
def test_config_errors_name_the_key(folders, change, message):
    change = json.loads(json.dumps(change).replace('"P"', json.dumps(str(folders["sd"]))))
    with pytest.raises(ConfigError, match=message):
        check_pretrained_files(_config(folders, **change))


def test_missing_file_in_a_model_folder_is_named(folders, tmp_path):
    broken = tmp_path / "sd"
    shutil.copytree(folders["sd"], broken)
    (broken / "text_encoder" / "config.json").unlink()
    config = _config(
        folders,
        models=[{"name": "sd", "path": str(broken), "kind": "text_to_image", "prompts": ["x"]}],
    )
    with pytest.raises(
        ConfigError, match=r"models\[0\].path: .* missing \['text_encoder/config.json'\]"
    ):
        check_pretrained_files(config)


def test_latent_models_are_never_clipped(folders, tmp_path):
    """A scheduler config without clip_sample (PNDM writes none) would give DDIM's default
    True, clipping latents to [-1, 1]: the loader sets it false."""
    folder = tmp_path / "sd"
    shutil.copytree(folders["sd"], folder)
    file = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(file.read_text())
    del cfg["clip_sample"]
    file.write_text(json.dumps(cfg))
    assert load_text_to_image(folder).scheduler_config["clip_sample"] is False
