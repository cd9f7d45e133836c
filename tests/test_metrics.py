"""Tests of biaslab.evaluation.metrics and biaslab.evaluation.backbones (CPU, offline, a few
seconds)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from biaslab.evaluation.backbones import ClassifierBackbone, LpipsBackbone, load_backbone
from biaslab.evaluation.metrics import (
    _knn_certified,
    clopper_pearson,
    cross_sq_lpips_from_features,
    knn_search,
    knn_similarity,
    lpips_flat_features,
    mean_pairwise_lpips,
    pairwise_sq_lpips_from_features,
)

lpips = pytest.importorskip("lpips")


def _reference_lpips(net: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()


def _images(n: int, size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


# ------------------------------------------------------------------------------- Clopper-Pearson


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1870, abs=1e-4)
    assert hi == pytest.approx(0.8130, abs=1e-4)
    # k = 0 and k = n: one-sided ends, (alpha/2)^(1/n) closed forms
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(0.025 ** (1 / 10), abs=1e-12)
    lo, hi = clopper_pearson(0, 0)
    assert math.isnan(lo) and math.isnan(hi)
    lo, hi = clopper_pearson(1, 1, alpha=0.1)
    assert (lo, hi) == (pytest.approx(0.05), 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


# ------------------------------------------------------------------------------- exact LPIPS


@pytest.mark.parametrize(("net", "n", "size"), [("alex", 8, 64), ("vgg", 4, 32)])
def test_lpips_equals_package(net, n, size):
    ref = _reference_lpips(net, seed=1)
    # an independent construction with the same seed has the same random trunk
    bb = LpipsBackbone(net, resize=None, random_backbone=True)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            bb.model.net.state_dict().values(), ref.net.state_dict().values(), strict=True
        )
    )  # different seeds -> different trunks, so the comparison below can fail
    torch.manual_seed(1)
    bb = LpipsBackbone(net, resize=None, random_backbone=True)
    for a, b in zip(bb.model.net.state_dict().values(), ref.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    x = _images(n, size, seed=2)
    u = bb.lpips_features(x)
    assert u.dtype == torch.float64 and u.shape[0] == n
    d = pairwise_sq_lpips_from_features(u)
    with torch.no_grad():
        ref_pairs = {
            (i, j): float(ref(x[i : i + 1], x[j : j + 1]).flatten()[0])
            for i, j in itertools.combinations(range(n), 2)
        }
    for (i, j), r in ref_pairs.items():
        assert abs(float(d[i, j]) - r) < 1e-5
        assert float(d[i, j]) == float(d[j, i])
    assert torch.all(d.diagonal() == 0)
    assert min(ref_pairs.values()) > 1e-3  # non-trivial distances
    ref_mean = float(np.mean(list(ref_pairs.values())))
    assert mean_pairwise_lpips(u) == pytest.approx(ref_mean, abs=1e-6)
    assert mean_pairwise_lpips(u, method="gram") == pytest.approx(ref_mean, abs=1e-6)


def test_lpips_grey_and_resize_match_package():
    ref = _reference_lpips("alex", seed=3)
    bb = LpipsBackbone("alex", resize=64, lpips_model=ref)
    x = _images(4, 28, channels=1, seed=4)
    x3 = torch.nn.functional.interpolate(
        x.repeat(1, 3, 1, 1), size=(64, 64), mode="bilinear", align_corners=False
    )
    d = pairwise_sq_lpips_from_features(bb.lpips_features(x))
    with torch.no_grad():
        for i, j in itertools.combinations(range(4), 2):
            assert abs(float(d[i, j]) - float(ref(x3[i : i + 1], x3[j : j + 1]))) < 1e-5


def test_mean_identity_agrees_with_gram_and_chunks():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(37, 50, generator=g, dtype=torch.float64) + 3.0  # large common offset
    brute = torch.cdist(u, u) ** 2
    d = pairwise_sq_lpips_from_features(u, chunk=5)
    assert torch.allclose(d, brute, atol=1e-10)
    iu = torch.triu_indices(37, 37, 1)
    m = float(brute[iu[0], iu[1]].mean())
    assert mean_pairwise_lpips(u) == pytest.approx(m, rel=1e-12)
    assert mean_pairwise_lpips(u, method="gram", chunk=7) == pytest.approx(m, rel=1e-12)
    # per-layer blocks are concatenated along the feature axis
    assert mean_pairwise_lpips([u[:, :20], u[:, 20:]]) == pytest.approx(m, rel=1e-12)
    v = u[:5] * 0.5
    assert torch.allclose(cross_sq_lpips_from_features(v, u, chunk=2), torch.cdist(v, u) ** 2)
    assert math.isnan(mean_pairwise_lpips(u[:1]))


def test_backbone_weights_loading(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(5)
    alex = tv.models.alexnet(weights=None).eval()
    path = tmp_path / "alexnet-fake.pth"
    torch.save(alex.state_dict(), path)

    torch.manual_seed(6)  # a different random trunk before loading
    bb = LpipsBackbone("alex", weights_path=path, resize=None)
    x = _images(3, 64, seed=7)
    with torch.no_grad():
        h = bb.model.scaling_layer(x)
        taps = []
        for i, layer in enumerate(alex.features):
            h = layer(h)
            if i in (1, 4, 7, 9, 11):
                taps.append(h.clone())
    maps = bb.feature_maps(x)
    assert len(maps) == 5
    for a, b in zip(maps, taps, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    w = [lin.model[-1].weight for lin in bb.model.lins]
    assert torch.allclose(bb.lpips_features(x), lpips_flat_features(taps, w), atol=1e-7)

    missing = tmp_path / "nope" / "alexnet-owt-7be5be79.pth"
    with pytest.raises(FileNotFoundError, match=str(missing).replace("\\", "\\\\")):
        LpipsBackbone("alex", weights_path=missing)
    with pytest.raises(FileNotFoundError, match="backbone_weights"):
        load_backbone("alex", weights_path=missing)


def test_vgg_weights_key_mapping(tmp_path):
    ref = _reference_lpips("vgg", seed=8)
    # a torchvision-style dict holding only the features.* entries the slices need
    sd = {}
    for key, val in ref.net.state_dict().items():
        _, idx, param = key.split(".", 2)
        sd[f"features.{idx}.{param}"] = val
    torch.save(sd, tmp_path / "vgg.pth")
    torch.manual_seed(9)
    bb = LpipsBackbone("vgg", weights_path=tmp_path / "vgg.pth")
    for a, b in zip(bb.model.net.state_dict().values(), ref.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------- classifier


class _TinyClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.drop = torch.nn.Dropout(0.5)  # must be off in eval mode
        self.fc = torch.nn.Linear(6, 5)

    def feature_maps(self, x):
        h1 = torch.relu(self.c1(x))
        h2 = torch.relu(self.c2(self.drop(h1)))
        return [h1, h2]

    def embed(self, x):
        return self.feature_maps(x)[-1].mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.embed(x))


def test_classifier_backbone_lpips_bruteforce():
    torch.manual_seed(10)
    model = _TinyClassifier().train()
    bb = load_backbone("classifier", classifier=model)
    assert bb.name == "classifier" and isinstance(bb, ClassifierBackbone)
    bb.batch_size = 3  # exercise batching
    x = _images(7, 8, channels=1, seed=11)
    d = pairwise_sq_lpips_from_features(bb.lpips_features(x))
    assert model.training  # mode restored

    model.eval()
    with torch.no_grad():
        maps = model.feature_maps(x)
    for i, j in itertools.combinations(range(7), 2):
        ref = 0.0
        for f in maps:
            a, b = f[i].double(), f[j].double()
            na = a / (a.pow(2).sum(0, keepdim=True).sqrt() + 1e-10)
            nb = b / (b.pow(2).sum(0, keepdim=True).sqrt() + 1e-10)
            ref += float((na - nb).pow(2).sum(0).mean())
        assert float(d[i, j]) == pytest.approx(ref, abs=1e-6)  # float32 maps: batch-size noise
    e = bb.embed(x)
    assert e.shape == (7, 6)
    assert torch.allclose(e, model.embed(x).detach())


def test_load_backbone_errors():
    with pytest.raises(ValueError, match=r"metrics\.backbone"):
        load_backbone("resnet")
    with pytest.raises(ValueError, match=r"metrics\.backbone"):
        load_backbone("classifier")


def test_lpips_embed_shape():
    bb = LpipsBackbone("alex", random_backbone=True)
    e = bb.embed(_images(3, 16, channels=1, seed=12))
    assert e.shape == (3, 64 + 192 + 384 + 256 + 256)
    assert e.dtype == torch.float32


# ------------------------------------------------------------------------------- kNN


def _brute_knn(gen, train, k, metric):
    gen, train = np.asarray(gen, np.float64), np.asarray(train, np.float64)
    if metric == "l2":
        val = np.sqrt(((gen[:, None, :] - train[None, :, :]) ** 2).sum(-1))
        key = val
    else:
        gn = gen / np.linalg.norm(gen, axis=1, keepdims=True)
        tn = train / np.linalg.norm(train, axis=1, keepdims=True)
        val = (gn[:, None, :] * tn[None, :, :]).sum(-1)
        key = -val
    idx = np.empty((len(gen), k), np.int64)
    for r in range(len(gen)):
        idx[r] = np.lexsort((np.arange(len(train)), key[r]))[:k]  # ties -> smaller index
    return np.take_along_axis(val, idx, 1), idx


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_matches_bruteforce(metric):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 24))
    train[50] = train[10]  # exact duplicate: tie broken by the smaller index
    gen = rng.normal(size=(41, 24))
    gen[3] = train[10] + 1e-3
    v, i = knn_search(gen, train, 10, metric, chunk=16)
    bv, bi = _brute_knn(gen, train, 10, metric)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(v, bv, rtol=0, atol=1e-12)
    assert i[3, 0] == 10 and i[3, 1] == 50
    sim = knn_similarity(gen, torch.from_numpy(train), ks=(1, 2, 5, 10), metric=metric, chunk=7)
    assert sorted(sim) == [1, 2, 5, 10]
    for k, val in sim.items():
        assert val == pytest.approx(bv[:, :k].mean(axis=1).mean(), abs=1e-12)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_near_ties_beyond_float32(metric):
    """Neighbours whose distances differ by 1e-9 (relative): float32 cannot rank them, so the
    candidate set is wrong without margin and the certificate must send the row to float64."""
    rng = np.random.default_rng(1)
    dim = 16
    gen = rng.normal(size=(4, dim))
    train = [rng.normal(size=(200, dim)) * 3]
    delta = 1e-9 if metric == "l2" else 1e-7  # cosine is flatter near its optimum
    for r in range(2):  # rows 0 and 1 have 40 near-tied neighbours each
        dirs = rng.normal(size=(40, dim))
        dirs -= np.outer(dirs @ gen[r], gen[r]) / (gen[r] @ gen[r])  # perpendicular to gen[r]
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        radius = 0.5 * np.linalg.norm(gen[r]) * (1 + delta * rng.permutation(40))[:, None]
        near = gen[r] + radius * dirs  # |near - g| and the angle to g are near-tied
        if metric == "cosine":  # different norms, same cosines
            near *= rng.uniform(0.5, 2.0, size=(40, 1))
        train.append(near)
    train = np.concatenate(train)
    perm = rng.permutation(len(train))
    train = train[perm]
    bv, bi = _brute_knn(gen, train, 5, metric)
    for margin in (0, 16):
        v, i, stage = _knn_certified(gen, train, 5, metric, chunk=64, margin=margin)
        np.testing.assert_array_equal(i.numpy(), bi)
        np.testing.assert_allclose(v.numpy(), bv, rtol=0, atol=1e-12)
        assert stage[0] >= 1 and stage[1] >= 1  # float32 could not certify the near-ties
        assert stage[2] == 0 and stage[3] == 0


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_agrees_with_sklearn_brute_force(metric):
    """``knn_search`` against scikit-learn's ``NearestNeighbors(algorithm="brute")``
    (euclidean; cosine distance = 1 - similarity): the same distances, and the same neighbours
    up to the order within ties (sklearn's order of tied rows is unspecified; ours: the
    smaller index first). A duplicated training row and a near-copy query plant a tie."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(5)
    train = rng.normal(size=(500, 32))
    train[7] = train[3]
    gen = rng.normal(size=(60, 32))
    gen[0] = train[3] + 1e-4 * rng.normal(size=32)
    k = 8
    v, i = knn_search(gen, train, k, metric)
    nn = NearestNeighbors(
        n_neighbors=k, algorithm="brute", metric="euclidean" if metric == "l2" else "cosine"
    ).fit(train)
    d, j = nn.kneighbors(gen)
    want = d if metric == "l2" else 1.0 - d
    np.testing.assert_allclose(v, want, rtol=0, atol=1e-9)
    for r in range(len(gen)):
        assert set(i[r]) == set(j[r]), r
        at = {int(t): p for p, t in enumerate(i[r])}
        for p, t in enumerate(j[r]):  # a different position only within a tie
            assert abs(v[r, at[int(t)]] - v[r, p]) <= 1e-9, (r, p)
    assert list(i[0, :2]) == [3, 7]  # the tie: the smaller index first


def test_knn_small_train_and_errors():
    rng = np.random.default_rng(2)
    gen, train = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    v, i = knn_search(gen, train, 4)  # every train row is a candidate
    bv, bi = _brute_knn(gen, train, 4, "l2")
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(v, bv, atol=1e-12)
    with pytest.raises(ValueError):
        knn_search(gen, train, 5)
    with pytest.raises(ValueError):
        knn_search(gen, train, 1, metric="l1")
    zero = np.zeros((1, 3))
    v, _ = knn_search(zero, train, 2, metric="cosine")
    np.testing.assert_array_equal(v, 0.0)
