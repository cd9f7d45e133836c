"""Tests of biaslab.models.unets: the Table-A U-Nets of "Deeper Diffusion Models Amplify Bias"."""

from __future__ import annotations

import pytest
import torch

from biaslab.models.unets import (
    TABLE_A,
    build_unet,
    check_resolution,
    count_parameters,
    min_resolution,
    scaled_channels,
)

# The paper's Table A (3 input/output channels, width 1), hard-coded on purpose: the test
# must not trust biaslab.models.unets.TABLE_A to hold the right numbers.
PAPER_PARAMS_3CH = {
    "2": 1_002_883,
    "2L": 15_930_883,
    "3": 3_692_867,
    "4": 3_859_203,
    "5": 16_887_619,
    "6": 27_290_691,
}
# One input and one output channel instead of three: conv_in loses 2 * 3 * 3 * C0 weights and
# conv_out loses 2 * (3 * 3 * C0 + 1) weights and biases, i.e. 36 * C0 + 2 (C0 = 32 or 128).
ONE_CHANNEL_DROP = {"2": 1_154, "2L": 4_610, "3": 1_154, "4": 1_154, "5": 1_154, "6": 1_154}

# Block structure of Table A (down blocks; the up blocks mirror them).
PAPER_DOWN_BLOCKS = {
    "2": ("DownBlock2D", "AttnDownBlock2D"),
    "2L": ("DownBlock2D", "AttnDownBlock2D"),
    "3": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "4": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "5": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    "6": (
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ),
}
DEPTHS = list(PAPER_PARAMS_3CH)


pytestmark = pytest.mark.usefixtures("one_thread")


def _mirror(down: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(b.replace("Down", "Up") for b in reversed(down))


def test_table_covers_exactly_the_paper_depths():
    assert set(TABLE_A) == set(DEPTHS)


@pytest.mark.parametrize("depth", DEPTHS)
def test_parameter_count_matches_paper_table_a(depth):
    unet = build_unet(depth, resolution=32, in_channels=3)
    assert count_parameters(unet) == PAPER_PARAMS_3CH[depth]
    assert TABLE_A[depth].params_3ch == PAPER_PARAMS_3CH[depth]


@pytest.mark.parametrize("depth", DEPTHS)
def test_one_channel_parameter_count(depth):
    unet = build_unet(depth, resolution=32, in_channels=1)
    assert count_parameters(unet) == PAPER_PARAMS_3CH[depth] - ONE_CHANNEL_DROP[depth]
    assert unet.config.in_channels == 1
    assert unet.config.out_channels == 1


def test_default_is_one_channel():
    unet = build_unet("2", resolution=32)
    assert unet.config.in_channels == unet.config.out_channels == 1


@pytest.mark.parametrize("depth", DEPTHS)
def test_block_structure(depth):
    cfg = build_unet(depth, resolution=32).config
    assert tuple(cfg.down_block_types) == PAPER_DOWN_BLOCKS[depth]
    assert tuple(cfg.up_block_types) == _mirror(PAPER_DOWN_BLOCKS[depth])
    assert cfg.layers_per_block == 2
    assert tuple(cfg.block_out_channels) == TABLE_A[depth].channels
    assert len(cfg.block_out_channels) == len(PAPER_DOWN_BLOCKS[depth])
    assert cfg.sample_size == 32


def test_2L_is_depth_2_with_depth_5_parameters():
    """The parameter-count control: the depth of 2, about as many parameters as 5."""
    assert PAPER_DOWN_BLOCKS["2L"] == PAPER_DOWN_BLOCKS["2"]
    n_2l = count_parameters(build_unet("2L", resolution=32, in_channels=3))
    n_5 = count_parameters(build_unet("5", resolution=32, in_channels=3))
    assert abs(n_2l - n_5) / n_5 < 0.06


@pytest.mark.parametrize(
    ("depth", "smallest"), [("2", 2), ("2L", 2), ("3", 4), ("4", 8), ("5", 16), ("6", 32)]
)
def test_min_resolution(depth, smallest):
    assert min_resolution(depth) == smallest
    check_resolution(depth, smallest)
    if smallest > 2:
        with pytest.raises(ValueError, match=f"depth {depth}"):
            check_resolution(depth, smallest // 2)


def test_check_resolution_depth6():
    with pytest.raises(ValueError, match=r"depth 6 .*multiple of 32; got 16"):
        check_resolution("6", 16)
    with pytest.raises(ValueError, match="depth 6"):
        build_unet("6", resolution=16)
    check_resolution("6", 32)
    check_resolution("6", 64)
    with pytest.raises(ValueError, match="got 48"):
        check_resolution("6", 48)


def test_check_resolution_accepts_int_depth_and_rejects_unknown():
    check_resolution(5, 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown depth '7'"):
        check_resolution("7", 32)
    with pytest.raises(ValueError, match="unknown depth"):
        build_unet("7", resolution=32)


def test_scaled_channels():
    assert scaled_channels((32, 64), 1.0) == (32, 64)
    assert scaled_channels((32, 64), 0.5) == (16, 32)
    assert scaled_channels((32, 64, 128), 0.25) == (8, 16, 32)
    assert scaled_channels((32,), 0.1) == (8,)  # never below 8
    assert all(c % 8 == 0 for c in scaled_channels((32, 64, 128, 128, 256), 0.3))


@pytest.mark.parametrize("depth", ["2", "4", "6"])
def test_half_width_keeps_structure_with_fewer_parameters(depth):
    full = build_unet(depth, resolution=32)
    half = build_unet(depth, resolution=32, width=0.5)
    assert tuple(half.config.down_block_types) == tuple(full.config.down_block_types)
    assert tuple(half.config.up_block_types) == tuple(full.config.up_block_types)
    assert half.config.layers_per_block == 2
    assert tuple(half.config.block_out_channels) == tuple(c // 2 for c in TABLE_A[depth].channels)
    n_full, n_half = count_parameters(full), count_parameters(half)
    # Conv weights scale with width squared: roughly a quarter of the parameters.
    assert 0.2 * n_full < n_half < 0.3 * n_full


@pytest.mark.parametrize(("depth", "width", "res"), [("2", 0.5, 16), ("4", 0.25, 16)])
def test_forward_pass_narrow(depth, width, res):
    torch.manual_seed(0)
    unet = build_unet(depth, resolution=res, width=width).eval()
    x = torch.randn(2, 1, res, res)
    t = torch.tensor([0, 999])
    with torch.no_grad():
        out = unet(x, t).sample
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    # The timestep must matter (the network is conditioned on it).
    with torch.no_grad():
        out2 = unet(x, torch.tensor([999, 0])).sample
    assert not torch.allclose(out, out2)


def test_forward_pass_three_channels_and_class_embeds():
    torch.manual_seed(0)
    unet = build_unet("3", resolution=16, in_channels=3, width=0.25, num_class_embeds=2).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        a = unet(x, torch.tensor([10, 10]), class_labels=torch.tensor([0, 0])).sample
        b = unet(x, torch.tensor([10, 10]), class_labels=torch.tensor([1, 1])).sample
    assert a.shape == (2, 3, 16, 16)
    assert not torch.allclose(a, b)


def test_full_width_uses_32_groups():
    assert {build_unet(d, resolution=32).config.norm_num_groups for d in DEPTHS} == {32}


@pytest.mark.parametrize("width", [0.5, 0.25])
def test_narrow_copies_use_8_groups_for_every_depth(width):
    groups = {d: build_unet(d, resolution=32, width=width).config.norm_num_groups for d in DEPTHS}
    assert set(groups.values()) == {8}, groups


def test_default_device_and_its_override(monkeypatch):
    import torch

    from biaslab.models.unets import DEVICE_ENV, default_device

    monkeypatch.delenv(DEVICE_ENV, raising=False)
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device().type == want
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu-please")
    with pytest.raises(ValueError, match="not a torch device"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            default_device()
