"""Tests of the Inception-v3 kNN backbone and the on-disk feature cache of biaslab.backbones."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biaslab.backbones import (
    ClassifierBackbone,
    InceptionBackbone,
    backbone_fingerprint,
    cached_embeddings,
    default_weights_path,
    load_backbone,
)

tv = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A torchvision Inception-v3 state dict with random weights and non-trivial BN stats."""
    torch.manual_seed(0)
    net = tv.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "inception_v3_google-0cc3c7bd.pth"
    torch.save(net.state_dict(), path)
    return path


def _images(n, size, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


def _pool_output(net, x):
    """torchvision's own forward, read at the average pool by a hook."""
    taps = []
    handle = net.avgpool.register_forward_hook(lambda m, i, o: taps.append(o.flatten(1)))
    with torch.no_grad():
        net.eval()(x)
    handle.remove()
    return taps[0]


@pytest.mark.usefixtures("one_thread")
def test_inception_embed_matches_torchvision(inception_file):
    bb = InceptionBackbone(weights_path=inception_file)
    assert bb.name == "inception"
    x = _images(2, 32, seed=1)
    e = bb.embed(x)
    assert e.shape == (2, 2048) and e.dtype == torch.float32
    assert e.std() > 1e-3  # not a degenerate (vanishing) feature

    sd = torch.load(inception_file, weights_only=True)
    x299 = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    # 1. torchvision's ImageNet pipeline: ImageNet normalisation + transform_input=True
    net = tv.models.inception_v3(
        weights=None, aux_logits=True, init_weights=False, transform_input=True
    )
    net.load_state_dict(sd)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = _pool_output(net, ((x299 + 1) / 2 - mean) / std)
    assert torch.allclose(e, ref, rtol=1e-4, atol=1e-5)
    # 2. the same as feeding [-1, 1] straight to the net without transform_input
    net2 = tv.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    net2.load_state_dict(sd)
    assert torch.allclose(e, _pool_output(net2, x299), rtol=1e-3, atol=1e-4)

    # grey images are repeated to RGB; batching does not change the result
    g = _images(3, 16, channels=1, seed=2)
    bb.batch_size = 2
    assert torch.allclose(bb.embed(g), bb.embed(g.repeat(1, 3, 1, 1)), atol=1e-6)

    with pytest.raises(ValueError, match=r"metrics\.backbone.*kNN"):
        bb.lpips_features(x)

    via_loader = load_backbone("inception", weights_path=inception_file, resize=64)
    assert isinstance(via_loader, InceptionBackbone)
    assert backbone_fingerprint(via_loader) == backbone_fingerprint(bb)
    assert backbone_fingerprint(InceptionBackbone(random_backbone=True)) != (
        backbone_fingerprint(bb)
    )


def test_inception_missing_weights(tmp_path):
    missing = tmp_path / "nope" / "inception_v3_google-0cc3c7bd.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as e:
        InceptionBackbone(weights_path=missing)
    assert "biaslab.fetch_weights" in str(e.value)
    with pytest.raises(FileNotFoundError, match="inception"):
        load_backbone("inception", weights_path=missing)
    assert default_weights_path("inception").name == "inception_v3_google-0cc3c7bd.pth"
    assert default_weights_path("inception").parent.name == "checkpoints"


# ----------------------------------------------------------------------------- feature cache


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def feature_maps(self, x):
        return [torch.relu(self.conv(x))]

    def embed(self, x):
        return self.feature_maps(x)[0].mean(dim=(2, 3))


def _tiny_backbone(seed=0):
    torch.manual_seed(seed)
    return ClassifierBackbone(_Tiny())


def test_cache_computes_once_and_reuses(tmp_path, monkeypatch):
    bb = _tiny_backbone()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "cache" / "train_features.npz"

    first = cached_embeddings(bb, images, path, chunk=4)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over
    direct = bb.embed(torch.from_numpy(images).float() / 127.5 - 1)
    assert torch.allclose(first, direct, atol=1e-6)
    assert first.shape == (10, 4)

    def boom(x):
        raise AssertionError("embed must not run on a cache hit")

    monkeypatch.setattr(bb, "embed", boom)
    again = cached_embeddings(bb, images, path)
    assert torch.equal(again, first)
    # a skewed subset indexes into the cached base
    idx = np.array([1, 4, 7])
    assert torch.equal(again[idx], first[idx])


def test_cache_invalidated_by_images_and_weights(tmp_path):
    bb = _tiny_backbone()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(6, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "f.npz"
    calls = []
    embed = bb.embed

    def counting(x):
        calls.append(x.shape[0])
        return embed(x)

    bb.embed = counting
    cached_embeddings(bb, images, path)
    cached_embeddings(bb, images, path)
    assert calls == [6]

    changed = images.copy()
    changed[3, 0, 0, 0] ^= 1
    out = cached_embeddings(bb, changed, path)
    assert calls == [6, 6]
    assert torch.allclose(out, embed(torch.from_numpy(changed).float() / 127.5 - 1))
    cached_embeddings(bb, images[:5], path)  # another shape
    assert calls == [6, 6, 5]

    with torch.no_grad():
        bb.model.conv.bias += 1.0  # other weights
    cached_embeddings(bb, images[:5], path)
    assert calls == [6, 6, 5, 5]

    other = _tiny_backbone(seed=3)  # another backbone with the same images
    other_out = cached_embeddings(other, images[:5], path)
    assert torch.allclose(other_out, other.embed(torch.from_numpy(images[:5]).float() / 127.5 - 1))


def test_cache_unreadable_file_is_recomputed(tmp_path):
    bb = _tiny_backbone()
    images = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "f.npz"
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        out = cached_embeddings(bb, images, path)
    assert out.shape == (2, 4)
    assert torch.equal(cached_embeddings(bb, images, path), out)
