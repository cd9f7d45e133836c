"""biaslab.models.interop: every trained model folder is a diffusers pipeline folder. For each
objective a tiny model written by ``training.train.save_model`` loads with diffusers' own
``DDPMPipeline.from_pretrained``; epsilon and v models sample through ``DDPMPipeline`` as this
lab's ddpm sampler does; an EDM model loads but ``DDPMPipeline`` cannot sample it, and the
documented diffusers loop (``models.interop.sample``, ``EDMEulerScheduler``) agrees with this lab's
euler sampler. Old folders (no ``model_index.json``; EDM with a DDPMScheduler config of
prediction_type "edm") load and sample byte-identically; trained folders load as pretrained
``unet`` models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, EDMEulerScheduler, UNet2DModel

from biaslab.base.io import CHECKSUMS, CorruptArtifactError, write_checksums
from biaslab.models.interop import (
    PIPELINE_INDEX,
    TRAINING_SCHEDULE,
    load_pipeline,
    sample,
    training_schedule_dir,
)
from biaslab.models.objectives import (
    EDM_TIMESTEP_SCALE,
    OBJECTIVES,
    make_objective,
    objective_of_schedule,
    sampler_schedule,
    save_objective,
    vp_sigmas,
)
from biaslab.models.unets import build_unet
from biaslab.pretrained.layouts import missing_files
from biaslab.pretrained.models import generate_unet, load_unet
from biaslab.sampling.denoisers import GuidedDenoiser, network
from biaslab.sampling.generate import SamplerConfig, generate
from biaslab.sampling.samplers import per_sample_noise, sample_ddpm, sample_euler
from biaslab.training.train import TrainConfig, load_model, make_noise_scheduler, save_model

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # diffusers' hint to install accelerate when loading a model
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

NAMES = list(OBJECTIVES)
K = 3  # classes of the conditional model (K + 1 class embeddings, null class K)


def _cfg(name: str, num_classes: int = 0) -> TrainConfig:
    return TrainConfig(depth="2", width=0.25, objective=name, num_classes=num_classes)


@pytest.fixture(scope="module")
def cond_unet():
    torch.manual_seed(1)
    unet = build_unet("2", resolution=16, width=0.25, num_class_embeds=K + 1).eval()
    with torch.no_grad():
        unet.class_embedding.weight.mul_(10)
    return unet


@pytest.fixture(scope="module")
def folders(tmp_path_factory, unet, cond_unet):
    """(objective, conditional) -> a model folder written by ``save_model``."""
    root = tmp_path_factory.mktemp("interop")
    out = {}
    for name in NAMES:
        save_model(unet, _cfg(name), root / name)
        save_model(cond_unet, _cfg(name, K), root / f"{name}-cond")
        out[name, False], out[name, True] = root / name, root / f"{name}-cond"
    return out


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _ours(folder, fn, steps: int, n: int, labels=None, w: float = 0.0, **kw) -> torch.Tensor:
    """This lab's sampler ``fn`` on ``load_model(folder)`` (the objective's adapter), float
    images in [-1, 1] from the noise of ``_gens(n)``."""
    unet, sched = load_model(folder)
    schedule = sampler_schedule(sched.config)
    eps = objective_of_schedule(sched.config).adapter(network(unet), schedule)
    if labels is not None:
        eps = GuidedDenoiser(eps, w, null_class=K).bind(labels)
    gens = _gens(n)
    noise = per_sample_noise((1, 16, 16), gens)
    return fn(eps, noise, schedule, steps=steps, generators=gens, **kw)


# ---------------------------------------------------------------------------- the folder


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_every_model_folder_loads_as_a_ddpm_pipeline(folders, tmp_path, name, conditional):
    folder = folders[name, conditional]
    edm = name == "edm"
    extra = {TRAINING_SCHEDULE} if edm else set()
    assert {p.name for p in folder.iterdir()} == {
        "unet",
        "scheduler",
        PIPELINE_INDEX,
        "objective.json",
        "train_config.yaml",
        CHECKSUMS,
    } | extra
    index = json.loads((folder / PIPELINE_INDEX).read_text())
    scheduler_class = "EDMEulerScheduler" if edm else "DDPMScheduler"
    assert index["_class_name"] == "DDPMPipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"]
    assert index["scheduler"] == ["diffusers", scheduler_class]
    # checksums.json covers the new files
    listed = json.loads((folder / CHECKSUMS).read_text())["files"]
    assert PIPELINE_INDEX in listed
    assert (f"{TRAINING_SCHEDULE}/scheduler_config.json" in listed) == edm

    pipe = DDPMPipeline.from_pretrained(str(folder), local_files_only=True)
    assert type(pipe.scheduler).__name__ == scheduler_class
    assert isinstance(pipe.unet, UNet2DModel)
    assert pipe.unet.config.num_class_embeds == (K + 1 if conditional else None)
    training = make_noise_scheduler(_cfg(name, K if conditional else 0))
    if edm:
        c = pipe.scheduler.config
        sigmas = vp_sigmas(training.config)
        assert (c.sigma_min, c.sigma_max) == (float(sigmas[0]), float(sigmas[-1]))
        assert (c.sigma_data, c.prediction_type, c.sigma_schedule) == (0.5, "epsilon", "karras")
    else:
        assert pipe.scheduler.config.prediction_type == make_objective(name).prediction_type
    # our loader still gets the DDPM training schedule, with prediction_type "edm" for edm
    _, sched = load_model(folder)
    assert isinstance(sched, DDPMScheduler)
    assert training_schedule_dir(folder).name == (TRAINING_SCHEDULE if edm else "scheduler")
    want = {**training.config, "objective": make_objective(name).to_dict()}
    assert _public(sched.config) == _public(want)
    # ... from the very file that save_model wrote as scheduler/ before this layout
    training.save_pretrained(tmp_path / "before")
    file = "scheduler_config.json"
    assert (training_schedule_dir(folder) / file).read_text() == (
        tmp_path / "before" / file
    ).read_text()


def _public(config) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def test_new_files_are_verified(folders, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(folders["edm", False], folder)
    index = folder / PIPELINE_INDEX
    index.write_text(index.read_text().replace("DDPMPipeline", "DDIMPipeline"))
    with pytest.raises(CorruptArtifactError, match=r"model_index\.json: its content changed"):
        load_model(folder)
    with pytest.raises(CorruptArtifactError, match=r"model_index\.json: its content changed"):
        load_pipeline(folder)
    shutil.rmtree(folder)
    shutil.copytree(folders["edm", False], folder)
    (folder / TRAINING_SCHEDULE / "scheduler_config.json").unlink()
    with pytest.raises(CorruptArtifactError, match=r"ddpm_scheduler/scheduler_config\.json"):
        load_model(folder)


# ----------------------------------------------------------------------- epsilon and v


@pytest.mark.parametrize("name", ["epsilon", "v"])
def test_ddpm_pipeline_samples_as_our_ddpm_sampler(folders, name):
    """diffusers' DDPMPipeline (the saved schedule: leading spacing, clipped x0) and this
    lab's ddpm sampler on the same per-sample generators: the same images (epsilon: equal;
    v: the v -> eps adapter against diffusers' v_prediction, float32 rounding)."""
    pipe, scale = load_pipeline(folders[name, False])
    assert scale is None
    got = _images(pipe(batch_size=2, generator=_gens(2), num_inference_steps=4, output_type="pt"))
    want = _ours(folders[name, False], sample_ddpm, 4, 2, timestep_spacing="leading")
    want = (want / 2 + 0.5).clamp(0, 1)
    tol = 1e-6 if name == "epsilon" else 1e-4
    torch.testing.assert_close(got, want, rtol=0, atol=tol)
    assert got.std() > 0.05  # not a blank image


def _images(out) -> torch.Tensor:
    """A pipeline's images as an [N, C, H, W] tensor: older diffusers (0.35.0) returns numpy
    [N, H, W, C] for ``output_type="pt"`` too (seen with 0.35.0, the low end we support)."""
    images = out.images
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images).permute(0, 3, 1, 2)
    return images


@pytest.mark.parametrize("name", ["epsilon", "v"])
def test_conditional_models_need_class_labels_the_loop_takes_them(folders, name):
    """DDPMPipeline cannot condition (the U-Net refuses to run without class labels); the
    documented loop with ``class_labels`` and guidance equals this lab's guided ddpm."""
    pipe, scale = load_pipeline(folders[name, True])
    with pytest.raises(ValueError, match="class_labels should be provided"):
        pipe(batch_size=1, num_inference_steps=2, output_type="pt")
    labels = torch.tensor([0, 2])
    gens = _gens(2)  # the initial noise, then each step's noise, as in this lab's samplers
    noise = per_sample_noise((1, 16, 16), gens)
    got = sample(
        pipe.unet,
        pipe.scheduler,
        noise,
        steps=4,
        timestep_scale=scale,
        class_labels=labels,
        guidance=1.5,
        generator=gens,
    )
    want = _ours(folders[name, True], sample_ddpm, 4, 2, labels, 1.5, timestep_spacing="leading")
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------- EDM


def test_ddpm_pipeline_loads_an_edm_model_but_cannot_sample_it(folders):
    """DDPMPipeline runs on an EDM model without error, but its images are not the model's:
    no sigma_max start, no c_in, timestep ln(sigma) / 4 instead of 250 ln(sigma)."""
    pipe, scale = load_pipeline(folders["edm", False])
    assert isinstance(pipe.scheduler, EDMEulerScheduler)
    assert scale == EDM_TIMESTEP_SCALE
    wrong = _images(pipe(batch_size=2, generator=_gens(2), num_inference_steps=5, output_type="pt"))
    right = (_ours(folders["edm", False], sample_euler, 5, 2) / 2 + 0.5).clamp(0, 1)
    assert (wrong - right).abs().max() > 0.1


@pytest.mark.parametrize("conditional", [False, True])
def test_diffusers_edm_loop_equals_our_euler_sampler(folders, conditional):
    """The module doc's loop (EDMEulerScheduler, c_in, 1000 * c_noise) and this lab's
    deterministic euler sampler (float64 state, the VP adapter): the same images up to float32
    rounding, guidance included."""
    folder = folders["edm", conditional]
    unet = UNet2DModel.from_pretrained(folder, subfolder="unet").eval()
    sched = EDMEulerScheduler.from_pretrained(folder, subfolder="scheduler")
    scale = json.loads((folder / "objective.json").read_text())["timestep_scale"]
    labels = torch.tensor([1, 0]) if conditional else None
    w = 2.0 if conditional else 0.0
    noise = per_sample_noise((1, 16, 16), _gens(2))
    for steps in (2, 6):
        got = sample(
            unet, sched, noise, steps=steps, timestep_scale=scale, class_labels=labels, guidance=w
        )
        want = _ours(folder, sample_euler, steps, 2, labels, w)
        torch.testing.assert_close(got, want, rtol=0, atol=2e-4)
        assert want.std() > 0.05
    # the module doc's few lines, verbatim but for class labels
    sched.set_timesteps(6)
    x = noise * sched.sigmas[0]
    for t in sched.timesteps:
        out = unet(sched.scale_model_input(x, t), scale * t, class_labels=labels).sample
        x = sched.step(out, t, x).prev_sample
    if not conditional:
        torch.testing.assert_close(x, want, rtol=0, atol=2e-4)


# ------------------------------------------------------------------------- older folders


def _write_old_layout(unet, cfg: TrainConfig, folder) -> None:
    """A model folder as ``save_model`` wrote it before ``model_index.json``: the DDPM training
    schedule in ``scheduler/`` whatever the objective (edm: prediction_type "edm")."""
    folder.mkdir(parents=True)
    unet.save_pretrained(folder / "unet")
    make_noise_scheduler(cfg).save_pretrained(folder / "scheduler")
    save_objective(cfg.training_objective(), folder)
    (folder / "train_config.yaml").write_text("training: {}\n")
    write_checksums(folder)


@pytest.mark.parametrize("name", NAMES)
def test_old_folders_load_and_sample_byte_identically(folders, tmp_path, cond_unet, name):
    old = tmp_path / "old"
    _write_old_layout(cond_unet, _cfg(name, K), old)
    assert (
        json.loads((old / "scheduler" / "scheduler_config.json").read_text())["prediction_type"]
        == make_objective(name).prediction_type
    )
    unet_old, sched_old = load_model(old)
    unet_new, sched_new = load_model(folders[name, True])
    assert dict(sched_old.config) == dict(sched_new.config)
    for sampler, extra in (("ddim", {}), ("euler", {}), ("heun", {"bypass": 0.5})):
        cfg = SamplerConfig(
            sampler=sampler, steps=3, n_samples=3, batch_size=3, guidance=1.0, **extra
        )
        a, _ = generate(unet_old, sched_old.config, cfg, progress=False)
        b, _ = generate(unet_new, sched_new.config, cfg, progress=False)
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ as pretrained


@pytest.mark.parametrize("name", NAMES)
def test_trained_folders_load_as_pretrained_unet_models(folders, tmp_path, unet, name):
    """A trained folder is a complete ``unet`` kind folder; ``pretrained.models.load_unet`` reads
    its training schedule and objective and samples exactly as ``load_model`` + generate
    (edm too, old layout included)."""
    folder = folders[name, False]
    assert missing_files("unet", folder) == []
    cfg = SamplerConfig(sampler="euler", steps=3, n_samples=2, batch_size=2)
    net, config = load_unet(folder)
    got, _ = generate_unet(net, config, cfg)
    own, sched = load_model(folder)
    want, _ = generate(own, sched.config, cfg, progress=False)
    np.testing.assert_array_equal(got, want)
    old = tmp_path / "old"
    _write_old_layout(unet, _cfg(name), old)
    got_old, _ = generate_unet(*load_unet(old), cfg)
    np.testing.assert_array_equal(got_old, want)


def test_pretrained_refuses_a_foreign_edm_scheduler(tmp_path, unet):
    folder = tmp_path / "edm"
    DDPMPipeline(unet=unet, scheduler=EDMEulerScheduler()).save_pretrained(str(folder))
    with pytest.raises(ValueError, match="EDMEulerScheduler, not a DDPM training schedule"):
        load_unet(folder)
