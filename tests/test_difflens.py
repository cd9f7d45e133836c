"""DiffLens (biaslab.difflens.steps): the SAE recovers planted atoms, integrated gradients are
complete, the intervention is off at ratio 1 and leaves no hooks, capture records what the
sampler evaluates, and files from another model are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from biaslab.base.io import save_torch
from biaslab.difflens import steps as dl
from biaslab.sampling.generate import SamplerConfig, generate

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(n=20000, d=16, m=32, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    idx = torch.stack([torch.randperm(m, generator=g)[:k] for _ in range(n)])
    coef = torch.rand(n, k, generator=g) + 0.5
    return (coef[:, :, None] * atoms[idx]).sum(1), atoms


def test_sae_recovers_planted_sparse_atoms():
    x, atoms = planted()
    sae, stats = dl.train_sae(
        x, dl.SAEConfig(expansion=2, k=3, steps=1500, batch_size=256, lr=3e-3)
    )
    best = (atoms @ sae.W_dec.detach().T).max(1).values  # unit rows both sides: cosines
    assert (best > 0.9).float().mean() >= 0.7, best
    assert stats["fvu"] < 0.25
    assert 0.0 <= stats["dead_share"] < 0.5
    # the decoder is kept at unit norm
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.n_latents))


def test_sae_layout_and_topk():
    sae = dl.TopKSAE(8, 4, 3)
    # decoder initialised as the encoder's transpose (unit rows)
    w = torch.nn.functional.normalize(sae.encoder.weight, dim=1)
    torch.testing.assert_close(sae.W_dec, w)
    z = sae.encode(torch.randn(50, 8))
    assert ((z > 0).sum(1) <= 3).all() and (z >= 0).all()
    with pytest.raises(ValueError, match=r"difflens\.sae\.k"):
        dl.TopKSAE(8, 4, 33)


def test_fvu_definition():
    x = torch.randn(100, 5, dtype=torch.float64)
    assert float(dl.fvu(x, x)) == 0.0
    mean = x.mean(0).expand_as(x)
    assert float(dl.fvu(x, mean)) == pytest.approx(1.0)


def test_train_sae_refuses_nan():
    x = torch.randn(10, 4)
    x[3, 1] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        dl.train_sae(x, dl.SAEConfig(expansion=2, k=2, steps=2))


def test_integrated_gradients_are_complete():
    """captum's IG through decoder and probe: per-sample attributions sum to
    f(z) - f(0) within the reported convergence delta."""
    from captum.attr import IntegratedGradients

    torch.manual_seed(0)
    sae = dl.TopKSAE(6, 2, 4)
    probe = torch.nn.Linear(6 * 4, 2)
    h = torch.randn(5, 6, 2, 2)
    z = sae.encode(dl.positions(h)).detach()

    def prob(zz):
        hh = sae.decode(zz).transpose(-1, -2).reshape(zz.shape[0], 6, 2, 2)
        return torch.softmax(probe(hh.flatten(1)), 1)[:, 1]

    attr, delta = IntegratedGradients(prob).attribute(
        z, baselines=torch.zeros_like(z), n_steps=50, return_convergence_delta=True
    )
    gap = prob(z) - prob(torch.zeros_like(z))
    total = attr.sum((1, 2))
    assert (total - gap - delta).abs().max() < 1e-5
    assert delta.abs().max() < 1e-2


def test_locate_finds_the_planted_class_feature():
    """Two classes whose h differ along one SAE decoder direction: the probe separates them and
    the attribution ranks that latent first for the class it points to."""
    torch.manual_seed(0)
    sae = dl.TopKSAE(8, 2, 16)  # k = all latents: nothing is cut
    direction = sae.W_dec.detach()[5]
    n = 120
    labels = np.arange(n) % 2
    rng = np.random.default_rng(0)
    h = rng.normal(0, 0.1, size=(n, 2, 8, 2, 2)).astype(np.float32)
    h += 3.0 * labels[:, None, None, None, None] * direction.numpy()[None, None, :, None, None]
    h += 0.5  # keep the encoder's pre-activations positive
    cfg = dl.LocateConfig(samples_per_class=40, n_features=3)
    probes, rows = dl.fit_probes(h, labels, 2, cfg)
    assert all(r["probe_accuracy"] == 1.0 for r in rows)
    scores, deltas = dl.attribute_features(sae, probes, h, labels, 2, cfg)
    assert max(deltas) < 1e-3  # IG complete: attributions sum to the probability gap
    top = dl.top_features(scores, 3)
    assert top[1, 0] == 5
    # the planted latent fires on class 1's images: far above chance (half the images)
    out = dl.locate({"h": h, "labels": labels, "timesteps": np.array([500.0, 100.0])}, sae, 2, cfg)
    row = next(r for r in out["feature_rows"] if r["class_index"] == 1 and r["rank"] == 0)
    assert row["latent"] == 5 and row["chance"] == 0.5
    assert row["selectivity"] > 0.7 and row["selectivity_balanced"] > 0.7


def test_selectivity_is_the_target_share_of_activation_mass():
    labels = np.array([0, 0, 0, 1])
    mass = np.array([1.0, 1.0, 0.0, 2.0])  # class 0: 2 over 3 images, class 1: 2 over 1
    s = dl.selectivity(mass, labels, target=1, n_classes=2)
    assert s["selectivity"] == 0.5 and s["chance"] == 0.25
    # per image: class 0 2/3, class 1 2 -> 2 / (2 + 2/3)
    assert s["selectivity_balanced"] == pytest.approx(0.75)
    silent = dl.selectivity(np.zeros(4), labels, target=0, n_classes=2)
    assert np.isnan(silent["selectivity"]) and silent["chance"] == 0.75
    missing = dl.selectivity(mass[:3], labels[:3], target=0, n_classes=2)  # no class-1 image
    assert missing["selectivity"] == 1.0 and np.isnan(missing["selectivity_balanced"])


def test_feature_activity_sums_and_peaks_over_calls_and_positions():
    torch.manual_seed(0)
    sae = dl.TopKSAE(4, 2, 8)
    h = np.random.default_rng(1).normal(size=(3, 2, 4, 2, 2)).astype(np.float32)
    mass, peak = dl.feature_activity(h, sae, np.array([1, 6]), batch=2)
    z = sae.encode(dl.positions(h)).detach()[..., [1, 6]]
    np.testing.assert_allclose(mass, z.sum(dim=(1, 2)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(peak, z.amax(dim=(1, 2)).numpy(), rtol=1e-6)


def test_target_classes():
    seeds = np.arange(4000)
    assert (dl.target_classes(seeds, "scale", [0.5, 0.5]) == 1).all()
    t = dl.target_classes(seeds, "probability", [0.25, 0.75])
    assert abs(t.mean() - 0.75) < 0.03
    np.testing.assert_array_equal(t, dl.target_classes(seeds, "probability", [0.25, 0.75]))
    with pytest.raises(ValueError, match="intervene_mode"):
        dl.target_classes(seeds, "boost", [0.5, 0.5])
    # a two-class conditional model: each sample toward its class's bias-conflicting attribute
    labels = np.array([0, 1, 0, 1])
    got = dl.target_classes(seeds[:4], "scale", [0.5, 0.5], labels=labels)
    assert got.tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="defined for 2 classes, not 3"):
        dl.target_classes(seeds[:3], "scale", [1 / 3] * 3, labels=np.arange(3))
    # probability mode ignores the classes: the same draws
    np.testing.assert_array_equal(
        dl.target_classes(seeds[:4], "probability", [0.25, 0.75], labels=labels), t[:4]
    )


def test_capture_labels_of_a_conditional_family_are_its_bias_attribute(tmp_path):
    """Coloured MNIST: the background colour over the classes' colours (the readout's
    labeller), as an index into the classes; BFFHQ's gender classifier must have 2 classes."""
    from biaslab.datasets.colour_mnist import PALETTE, compose
    from biaslab.evaluation.classifier import SmallCNN, save_classifier

    digits = np.zeros((4, 16, 16), dtype=np.uint8)
    digits[:, 4:12, 7:9] = 255
    colours = np.array([3, 8, 8, 3])  # classes [3, 8]: palette colours 3 and 8
    images = compose(digits, PALETTE[colours].astype(np.uint8))
    cond = {"dataset": "biased_mnist", "classes": [3, 8]}
    labels, probs, values = dl.capture_labels(
        images, n_classes=2, classifier_path="unused", conditional=cond
    )
    assert labels.tolist() == [0, 1, 1, 0] and values.tolist() == [3, 8]
    np.testing.assert_array_equal(probs, np.eye(2)[[0, 1, 1, 0]])
    with pytest.raises(ValueError, match="bias attribute has 2 values"):
        dl.capture_labels(images, n_classes=3, classifier_path="unused", conditional=cond)
    path = tmp_path / "gender.pt"
    save_classifier(SmallCNN(3, 3), np.array([0, 1, 2]), path)
    with pytest.raises(ValueError, match="gender\\) classifier has 3 classes"):
        dl.capture_labels(
            images,
            n_classes=2,
            classifier_path="unused",
            conditional={"dataset": "bffhq", "classes": [0, 1]},
            attribute_classifier_path=str(path),
        )


def _sae_for(unet, k=8):
    c = unet.config.block_out_channels[-1]
    torch.manual_seed(1)
    return dl.TopKSAE(c, 2, k)


def test_intervention_ratio_one_is_bit_identical_and_hooks_go(unet, sched_config):
    cfg = SamplerConfig(sampler="ddim", steps=4, n_samples=3, batch_size=2)
    ref, _ = generate(unet, sched_config, cfg, progress=False)
    sae = _sae_for(unet)
    feats = np.array([[0, 1, 2], [3, 4, -1]])
    off = dl.SAEIntervention(unet, sae, feats, 1.0, np.array([1, 1, 1]))
    same, _ = generate(unet, sched_config, cfg, progress=False, hooks=[off])
    np.testing.assert_array_equal(ref, same)
    on = dl.SAEIntervention(unet, sae, feats, 8.0, np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"intervene = 1\.0"):
        generate(unet, sched_config, cfg, progress=False, hooks=[on])
    with pytest.raises(ValueError, match="needs one"):
        generate(unet, sched_config, replace(cfg, intervene=8.0), progress=False)
    changed, _ = generate(
        unet, sched_config, replace(cfg, intervene=8.0), progress=False, hooks=[on]
    )
    assert not np.array_equal(ref, changed)
    assert not unet._forward_hooks and not unet.mid_block._forward_hooks
    assert not unet._forward_pre_hooks
    again, _ = generate(unet, sched_config, cfg, progress=False)
    np.testing.assert_array_equal(ref, again)


def test_intervention_skips_the_first_call(unet):
    sae = _sae_for(unet)
    iv = dl.SAEIntervention(unet, sae, np.array([[0], [1]]), 5.0, np.array([1]))
    iv.begin_batch(np.array([0]))
    out = torch.randn(1, sae.d_in, 8, 8)
    assert iv._post(None, None, out) is None  # first call of the batch
    second = iv._post(None, None, out)
    assert second is not None and not torch.equal(second, out)


def test_capture_records_every_kept_call(unet, sched_config):
    cfg = SamplerConfig(sampler="heun", steps=3, n_samples=3, batch_size=2)
    got = dl.collect_activations(unet, sched_config, cfg, keep=3)
    n_calls = 2 * 3 - 1
    np.testing.assert_array_equal(got["calls"], [0, 2, 4])
    c = unet.config.block_out_channels[-1]
    assert got["h"].shape == (3, 3, c, 8, 8) and got["h"].dtype == np.float16
    assert len(got["timesteps"]) == 3 and got["timesteps"][0] > got["timesteps"][-1]
    ref, _ = generate(unet, sched_config, cfg, progress=False)
    np.testing.assert_array_equal(got["images"], ref)  # recording changes nothing
    assert n_calls == 5


def test_files_from_another_model_are_refused(tmp_path, unet):
    sae = _sae_for(unet)
    path = tmp_path / "sae.pt"
    dl.save_sae(sae, path, model_fingerprint="abc", stats={"fvu": 0.1})
    assert dl.load_sae(path, model_fingerprint="abc").k == 8
    with pytest.raises(ValueError, match="another model"):
        dl.load_sae(path, model_fingerprint=dl.fingerprint(unet))
    blob = {"model_fingerprint": "abc", "features": np.zeros((3, 2))}
    with pytest.raises(ValueError, match="attribute classifier has 2"):
        dl.check_features_file(blob, model_fingerprint="abc", n_classes=2, path="f.npz")
    with pytest.raises(ValueError, match="another model"):
        dl.check_features_file(blob, model_fingerprint="xyz", n_classes=3, path="f.npz")
    save_torch({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(KeyError):
        dl.load_sae(tmp_path / "other.pt")


def test_no_mid_block_is_a_clear_error():
    class Flat(torch.nn.Module):
        mid_block = None

    with pytest.raises(ValueError, match="no mid_block"):
        dl.SAEIntervention(Flat(), dl.TopKSAE(4, 2, 2), np.zeros((2, 1)), 2.0, np.zeros(1))
    with pytest.raises(ValueError, match="no mid_block"):
        dl.MidBlockRecorder(Flat(), [0])


def test_attribute_classifier_with_other_classes_is_refused(tmp_path):
    from biaslab.evaluation.classifier import SmallCNN, save_classifier

    path = tmp_path / "clf.pt"
    save_classifier(SmallCNN(1, 3), np.array([0, 1, 2]), path)
    images = np.zeros((2, 1, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="has 3 classes"):
        dl.attribute_labels(images, str(path), 2)


def test_gallery_ranks_images_by_peak_activation():
    torch.manual_seed(0)
    sae = dl.TopKSAE(4, 2, 8)
    d = sae.W_dec.detach()[3].numpy()
    h = np.zeros((6, 1, 4, 1, 1), dtype=np.float32)
    for i, amp in enumerate([0.0, 5.0, 1.0, 3.0, 0.0, 2.0]):
        h[i, 0, :, 0, 0] = amp * d
    feats = np.array([[3], [-1]])
    g = dl.gallery(h, sae, feats, n_features=1, n_images=3)
    z = sae.encode(dl.positions(h))[..., 3].amax(dim=(1, 2)).detach().numpy()
    want = [i for i in np.argsort(-z, kind="stable") if z[i] > 0][:3]
    assert g.shape == (2, 1, 3) and list(g[0, 0]) == want and (g[1] == -1).all()
