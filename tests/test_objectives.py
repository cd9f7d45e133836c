"""biaslab.models.objectives: EDM preconditioning (Karras et al. 2022, Table 1), the adapters to the
samplers' eps contract (exact for analytic optimal networks), the training losses (minimal at
the optimum), and sampling, guidance, bypass and save/load with every objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from biaslab.models.objectives import (
    EDM,
    EDM_DEFAULTS,
    EDM_TIMESTEP_SCALE,
    OBJECTIVES,
    NoiseLevels,
    make_objective,
    objective_from_dict,
    objective_of_schedule,
    vp_sigmas,
)
from biaslab.models.unets import build_unet
from biaslab.sampling.denoisers import GuidedDenoiser, network
from biaslab.sampling.generate import SamplerConfig, generate
from biaslab.sampling.samplers import sigma_to_t
from biaslab.training.train import TrainConfig, load_model, make_noise_scheduler, save_model
from tests.helpers import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = list(OBJECTIVES)


# ------------------------------------------------------------------ EDM, Table 1 and Sec. 5


def test_edm_constants_are_the_papers_and_the_schemas():
    assert EDM_DEFAULTS == {"sigma_data": 0.5, "p_mean": -1.2, "p_std": 1.2}
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    edm = schema["properties"]["training"]["properties"]["edm"]["properties"]
    assert {k: v["default"] for k, v in edm.items()} == EDM_DEFAULTS
    objectives = schema["properties"]["training"]["properties"]["objective"]["enum"]
    assert objectives == NAMES == ["epsilon", "v", "edm"]
    assert EDM() == EDM(**EDM_DEFAULTS)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 1.0, 3.0, 80.0])
def test_edm_preconditioning_is_table_1(sigma):
    sd = 0.5
    c_skip, c_out, c_in, c_noise = (float(c) for c in EDM().precondition(torch.tensor(sigma)))
    assert c_skip == pytest.approx(sd**2 / (sigma**2 + sd**2), rel=1e-6)
    assert c_out == pytest.approx(sigma * sd / math.sqrt(sigma**2 + sd**2), rel=1e-6)
    assert c_in == pytest.approx(1 / math.sqrt(sigma**2 + sd**2), rel=1e-6)
    assert c_noise == pytest.approx(math.log(sigma) / 4, rel=1e-6)
    weight = float(EDM().loss_weight(torch.tensor(sigma)))
    assert weight == pytest.approx((sigma**2 + sd**2) / (sigma * sd) ** 2, rel=1e-6)
    assert weight * c_out**2 == pytest.approx(1.0, rel=1e-6)  # "effective weight" 1 (Sec. 5)


def test_edm_preconditioning_values_at_sigma_data():
    c_skip, c_out, c_in, c_noise = (float(c) for c in EDM().precondition(torch.tensor(0.5)))
    assert (c_skip, c_out, c_in) == pytest.approx((0.5, 0.3535534, 1.4142136), rel=1e-6)
    assert c_noise == pytest.approx(-0.1732868, rel=1e-6)
    assert float(EDM().loss_weight(torch.tensor(0.5))) == pytest.approx(8.0)
    other = EDM(sigma_data=1.0).precondition(torch.tensor(1.0))
    assert [float(c) for c in other[:3]] == pytest.approx([0.5, 2**-0.5, 2**-0.5])


def test_edm_draws_log_normal_sigmas():
    gen = torch.Generator().manual_seed(0)
    sigma = EDM().draw_level(gen, 100_000, torch.device("cpu"), 1000)
    assert sigma.dtype == torch.float32 and bool((sigma > 0).all())
    assert float(sigma.log().mean()) == pytest.approx(-1.2, abs=0.02)
    assert float(sigma.log().std()) == pytest.approx(1.2, abs=0.02)
    shifted = EDM(p_mean=0.0, p_std=0.5).draw_level(gen, 100_000, torch.device("cpu"), 1000)
    assert float(shifted.log().std()) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match=r"training\.edm"):
        EDM(sigma_data=0.0)


# ------------------------------------------------------------------ noise levels


def test_noise_levels_interpolate_log_sigma_and_invert_sigma_to_t(sched_config):
    levels = NoiseLevels(sched_config)
    train = vp_sigmas(sched_config)
    ints = torch.arange(1000)
    torch.testing.assert_close(levels.sigma(ints), train, rtol=1e-12, atol=0)
    mid = levels.sigma(torch.tensor([17.5]))
    assert float(mid) == pytest.approx(math.sqrt(float(train[17] * train[18])), rel=1e-12)
    for s in (0.02, 0.5, 1.0, 7.3, 100.0):
        t = sigma_to_t(s, train)
        s64, t64 = torch.tensor([s], dtype=torch.float64), torch.tensor([t], dtype=torch.float64)
        assert float(levels.timestep(s64)) == pytest.approx(t, abs=1e-9)
        assert float(levels.sigma(t64)) == pytest.approx(s, rel=1e-9)


# ------------------------------------------------------------------ analytic optimal networks
#
# Data x0 ~ N(m, s^2) per pixel: E[x0 | x0 + sigma n = x] = m + (x - m) s^2 / (s^2 + sigma^2)
# (s = 0: the point mass m). Each objective's optimal network outputs that denoiser in its own
# parametrization; sigma of a DDPM timestep is computed here from alphas_cumprod alone.


def _sigma_of_t(sched_config, t: torch.Tensor) -> torch.Tensor:
    abar = make_noise_scheduler(TrainConfig()).alphas_cumprod.double().numpy()
    assert sched_config["num_train_timesteps"] == len(abar)
    log_s = 0.5 * np.log((1 - abar) / abar)
    return torch.from_numpy(np.exp(np.interp(t.double().numpy(), np.arange(len(abar)), log_s)))


def _optimal_denoiser(x, sigma, m, s):
    return m + (x - m) * s**2 / (s**2 + sigma**2)


def _col(v):
    return v.double().view(-1, 1, 1, 1)


def _optimal_network(name, sched_config, m, s, obj=None):
    """``net(x_in, t_in) -> optimal output`` of objective ``name`` (float64 inside)."""
    obj = obj or make_objective(name)

    def net(x_in, t_in, **kw):
        x_in = x_in.double()
        if name == "edm":
            sigma = _col(torch.exp(t_in.double() * 4 / EDM_TIMESTEP_SCALE))
            x = x_in * (sigma**2 + obj.sigma_data**2).sqrt()  # x_in = c_in x
            c_skip, c_out, _, _ = obj.precondition(sigma)
            return ((_optimal_denoiser(x, sigma, m, s) - c_skip * x) / c_out).float()
        sigma = _col(_sigma_of_t(sched_config, t_in))
        x = x_in * (1 + sigma**2).sqrt()  # x_in = x_vp
        eps = (x - _optimal_denoiser(x, sigma, m, s)) / sigma
        if name == "epsilon":
            return eps.float()
        abar = 1 / (1 + sigma**2)
        return (abar.sqrt() * eps - (1 - abar).sqrt() * _optimal_denoiser(x, sigma, m, s)).float()

    return net


T_INT = [0, 1, 17, 250, 500, 998, 999]
T_FRAC = [0.5, 17.25, 333.7, 998.9]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("m", "s"), [(0.0, 0.3), (-0.3, 1.0), (0.7, 0.0)])
def test_adapter_gives_the_optimal_eps(sched_config, name, m, s):
    t = torch.tensor(T_INT + T_FRAC, dtype=torch.float32)
    if name == "epsilon":  # integer timesteps for the (identity) adapter
        t = t.round()
    x_vp = torch.randn(len(t), 1, 4, 4, generator=torch.Generator().manual_seed(1))
    eps = make_objective(name).adapter(_optimal_network(name, sched_config, m, s), sched_config)
    got = eps(x_vp, t).double()
    sigma = _col(_sigma_of_t(sched_config, t))
    x = x_vp.double() * (1 + sigma**2).sqrt()
    want = (x - _optimal_denoiser(x, sigma, m, s)) / sigma
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-4)
    if s == 0.0:  # a point mass: the implied denoiser x - sigma eps is the point
        torch.testing.assert_close(x - sigma * got, torch.full_like(x, m), rtol=0, atol=2e-3)


def _batch_losses(name, sched_config, m, s, perturb=None, n=4096):
    obj = make_objective(name)
    gen = torch.Generator().manual_seed(0)
    x0 = m + s * torch.randn(n, 1, 4, 4, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    level = obj.draw_level(gen, n, torch.device("cpu"), 1000)
    alphas = make_noise_scheduler(TrainConfig()).alphas_cumprod
    x_in, t_in = obj.network_input(x0, noise, level, alphas)
    net = _optimal_network(name, sched_config, m, s, obj)
    pred = net(x_in, t_in)
    return {
        key: float(obj.loss(pred + delta, x0, noise, level, alphas))
        for key, delta in {"optimum": 0.0, "+0.05": 0.05, "-0.05": -0.05}.items()
    } | {
        "wrong s": float(
            obj.loss(
                _optimal_network(name, sched_config, m, 1.5 * s + 0.2, obj)(x_in, t_in),
                x0,
                noise,
                level,
                alphas,
            )
        ),
        "wrong m": float(
            obj.loss(
                _optimal_network(name, sched_config, m + 0.2, s, obj)(x_in, t_in),
                x0,
                noise,
                level,
                alphas,
            )
        ),
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("m", "s"), [(0.0, 0.3), (-0.3, 1.0)])
def test_training_loss_is_minimal_at_the_optimal_network(sched_config, name, m, s):
    losses = _batch_losses(name, sched_config, m, s)
    best = losses.pop("optimum")
    assert all(best < v for v in losses.values()), (best, losses)


@pytest.mark.parametrize("name", NAMES)
def test_training_loss_is_zero_for_a_point_mass_at_its_optimum(sched_config, name):
    losses = _batch_losses(name, sched_config, 0.7, 0.0)
    assert losses.pop("optimum") < 1e-8
    assert min(losses.values()) > 1e-3


def test_edm_loss_is_lambda_weighted_denoiser_error():
    obj = EDM()
    gen = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(64, 1, 4, 4, generator=gen), torch.randn(64, 1, 4, 4, generator=gen)
    sigma = obj.draw_level(gen, 64, torch.device("cpu"), 1000)
    pred = torch.randn(64, 1, 4, 4, generator=gen)
    c_skip, c_out, _, _ = (c.view(-1, 1, 1, 1) for c in obj.precondition(sigma))
    d = c_skip * (x0 + sigma.view(-1, 1, 1, 1) * noise) + c_out * pred
    want = (obj.loss_weight(sigma).view(-1, 1, 1, 1) * (d - x0) ** 2).mean()
    got = obj.loss(pred, x0, noise, sigma, None)
    assert float(got) == pytest.approx(float(want), rel=1e-4)


def test_edm_timestep_input_maps_back_to_the_ddpm_timestep(sched_config):
    levels = NoiseLevels(sched_config)
    t = torch.tensor([0.0, 17.25, 500.0, 999.0])
    tau = EDM_TIMESTEP_SCALE * levels.sigma(t).log() / 4
    torch.testing.assert_close(
        EDM().train_timestep(sched_config)(tau), t.double(), atol=1e-6, rtol=0
    )
    assert OBJECTIVES["epsilon"]().train_timestep(sched_config) is None


# ------------------------------------------------------------------ sampling with each objective


def _gen(unet, sched_config, name, **kw):
    cfg = SamplerConfig(**{"steps": 4, "n_samples": 3, "batch_size": 3} | kw)
    return generate(unet, sched_config, cfg, progress=False, objective=make_objective(name))[0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sampler", ["ddim", "heun"])
def test_sampling_runs_with_every_objective(unet, sched_config, name, sampler):
    images = _gen(unet, sched_config, name, sampler=sampler)
    assert images.shape == (3, 1, 16, 16) and images.dtype == np.uint8
    again = _gen(unet, sched_config, name, sampler=sampler, batch_size=2)
    assert int(np.abs(images.astype(int) - again.astype(int)).max()) <= 1


def test_objectives_change_the_samples_of_one_network(unet, sched_config):
    runs = [_gen(unet, sched_config, name, sampler="ddim") for name in NAMES]
    for i in range(len(runs)):
        for j in range(i):
            assert not np.array_equal(runs[i], runs[j])


@pytest.fixture(scope="module")
def cond_unet():
    torch.manual_seed(1)
    unet = build_unet("2", resolution=16, width=0.25, num_class_embeds=4).eval()
    with torch.no_grad():
        unet.class_embedding.weight.mul_(10)
    return unet


@pytest.mark.parametrize("name", ["v", "edm"])
def test_guidance_combines_the_adapters_eps(cond_unet, sched_config, name):
    eps = make_objective(name).adapter(network(cond_unet), sched_config)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    t, labels = torch.tensor([999.0, 400.5, 3.0]), torch.tensor([0, 1, 2])
    guided = GuidedDenoiser(eps, 2.0, null_class=3)(x, t, labels)
    cond, uncond = eps(x, t, class_labels=labels), eps(x, t, class_labels=torch.full((3,), 3))
    torch.testing.assert_close(guided, 3.0 * cond - 2.0 * uncond, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_saved_objective_samples_without_the_config(tmp_path, cond_unet, name):
    """The objective travels with the model: generate reads it from load_model's scheduler;
    guidance and a ramped bypass run on it."""
    cfg = TrainConfig(depth="2", width=0.25, num_classes=3, objective=name)
    save_model(cond_unet, cfg, tmp_path / "m")
    unet, sched = load_model(tmp_path / "m")
    assert objective_of_schedule(sched.config) == make_objective(name)
    assert sched.config.prediction_type == make_objective(name).prediction_type
    knobs = {"sampler": "ddim", "steps": 3, "n_samples": 3, "batch_size": 3, "guidance": 1.0}
    for extra in ({}, {"bypass": 0.5, "bypass_schedule": "linear"}):
        got = generate(unet, sched.config, SamplerConfig(**knobs, **extra), progress=False)[0]
        want = _gen(cond_unet, dict(make_noise_scheduler(cfg).config), name, **knobs, **extra)
        np.testing.assert_array_equal(got, want)


def test_models_saved_before_objectives_load_as_epsilon(tmp_path, unet):
    from diffusers import DDPMScheduler

    from biaslab.models.objectives import load_objective

    save_model(unet, TrainConfig(depth="2", width=0.25), tmp_path / "m")
    _, sched = load_model(tmp_path / "m")
    assert sched.config["objective"] == {"objective": "epsilon"}
    # a folder without objective.json (as written before objectives) reads its prediction_type
    (tmp_path / "m" / "objective.json").unlink()
    config = DDPMScheduler.from_pretrained(tmp_path / "m" / "scheduler").config
    assert load_objective(tmp_path / "m", config) == make_objective("epsilon")
    assert objective_of_schedule({"prediction_type": "v_prediction"}) == make_objective("v")
    with pytest.raises(ValueError, match=r"objective\.json"):
        objective_of_schedule({"prediction_type": "edm"})


def test_objective_round_trips_and_checkpoint_hash(tmp_path):
    edm = EDM(sigma_data=0.7)
    assert objective_from_dict(edm.to_dict()) == edm
    assert objective_from_dict({"objective": "v"}) == make_objective("v")
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("x0")
    eps_cfg = TrainConfig()
    assert "objective" not in eps_cfg.as_dict() and "edm" not in eps_cfg.as_dict()
    assert TrainConfig(objective="v").as_dict()["objective"] == "v"
    assert "edm" not in TrainConfig(objective="v").as_dict()
    assert TrainConfig(objective="edm").as_dict()["edm"] == EDM_DEFAULTS


@pytest.mark.parametrize("steps", [10, 40])
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_edm_point_mass_oracle_guided_ddim_is_exact(steps, w):
    """A class-conditional EDM network that is optimal for one image per class (and the mean
    for the null class): guided DDIM through the adapter returns exactly
    (1 + w) x0_c - w x0_null, whatever the number of steps."""
    from biaslab.models.objectives import EDM as EDMObjective
    from biaslab.models.objectives import sampler_schedule
    from biaslab.sampling.denoisers import GuidedDenoiser as Guided
    from biaslab.sampling.samplers import per_sample_noise, sample_ddim

    obj = EDMObjective()
    sched = sampler_schedule(dict(make_noise_scheduler(TrainConfig(depth="2")).config))
    x0 = torch.stack([torch.full((1, 4, 4), v) for v in (-0.5, 0.0, 0.4, 0.1)])

    def net(x_in, tau, class_labels=None, **_):
        sigma = (tau.double() * 4 / obj.timestep_scale).exp().view(-1, 1, 1, 1)
        c_skip, c_out, c_in, _ = obj.precondition(sigma)
        return ((x0[class_labels].double() - c_skip * x_in.double() / c_in) / c_out).float()

    labels = torch.tensor([0, 1, 2])
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    guided = Guided(obj.adapter(net, sched), w, null_class=3).bind(labels)
    out = sample_ddim(
        guided,
        per_sample_noise((1, 4, 4), gens),
        dict(sched),
        steps=steps,
        eta=0.0,
        generators=gens,
    )
    want = ((1 + w) * x0[labels] - w * x0[3]).clamp(-1, 1)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
