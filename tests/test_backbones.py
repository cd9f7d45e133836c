"""Tests of the Inception-v3 kNN backbone of biaslab.evaluation.backbones."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from biaslab.evaluation.backbones import (
    InceptionBackbone,
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
    assert torch.allclose(via_loader.embed(x), bb.embed(x))


def test_inception_missing_weights(tmp_path):
    missing = tmp_path / "nope" / "inception_v3_google-0cc3c7bd.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as e:
        InceptionBackbone(weights_path=missing)
    assert "biaslab.evaluation.fetch_weights" in str(e.value)
    with pytest.raises(FileNotFoundError, match="inception"):
        load_backbone("inception", weights_path=missing)
    assert default_weights_path("inception").name == "inception_v3_google-0cc3c7bd.pth"
    assert default_weights_path("inception").parent.name == "checkpoints"
