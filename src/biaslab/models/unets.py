"""The U-Nets of "Deeper Diffusion Models Amplify Bias", Table A.

diffusers ``UNet2DModel`` with ``layers_per_block=2``; the up blocks mirror the down blocks
(the paper's printed up-block list for depth 4 is a typo: mirroring reproduces its parameter
count). ``2L`` is the parameter-count control: as many parameters as depth 5, depth of 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # diffusers is imported lazily: the Snakefile imports this module
    from diffusers import UNet2DModel

_DOWN = {"Down": "DownBlock2D", "AttnDown": "AttnDownBlock2D"}
_UP = {"Down": "UpBlock2D", "AttnDown": "AttnUpBlock2D"}


@dataclass(frozen=True)
class DepthSpec:
    blocks: tuple[str, ...]
    channels: tuple[int, ...]
    params_3ch: int  # the paper's count (3 input/output channels, width 1)


TABLE_A: dict[str, DepthSpec] = {
    "2": DepthSpec(("Down", "AttnDown"), (32, 64), 1_002_883),
    "2L": DepthSpec(("Down", "AttnDown"), (128, 256), 15_930_883),
    "3": DepthSpec(("Down", "AttnDown", "Down"), (32, 64, 128), 3_692_867),
    "4": DepthSpec(("Down", "Down", "AttnDown", "Down"), (32, 32, 64, 128), 3_859_203),
    "5": DepthSpec(
        ("Down", "Down", "Down", "AttnDown", "Down"), (32, 64, 128, 128, 256), 16_887_619
    ),
    "6": DepthSpec(
        ("Down", "Down", "Down", "Down", "AttnDown", "Down"),
        (32, 64, 128, 128, 256, 256),
        27_290_691,
    ),
}


def min_resolution(depth: str) -> int:
    """Smallest power-of-two side the depth accepts: each of the n-1 downsamples halves it."""
    return 2 ** (len(TABLE_A[str(depth)].blocks) - 1)


def check_resolution(depth: str, resolution: int) -> None:
    depth = str(depth)
    if depth not in TABLE_A:
        raise ValueError(f"unknown depth {depth!r}; Table A has {sorted(TABLE_A)}")
    n_down = len(TABLE_A[depth].blocks) - 1
    if resolution % (2**n_down) or resolution < 2**n_down:
        raise ValueError(
            f"depth {depth} downsamples {n_down} times, so the resolution must be a multiple "
            f"of {2**n_down}; got {resolution}"
        )


def scaled_channels(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Channel widths times ``width``, rounded to a multiple of 8 (GroupNorm uses 32 groups
    at width 1; narrow copies use ``norm_num_groups=8``)."""
    if width == 1.0:
        return channels
    return tuple(max(8, round(c * width / 8) * 8) for c in channels)


def build_unet(
    depth: str,
    *,
    resolution: int,
    in_channels: int = 1,
    width: float = 1.0,
    num_class_embeds: int | None = None,
) -> UNet2DModel:
    """Build the Table-A U-Net for ``depth`` ("2", "2L", "3", ..., "6")."""
    from diffusers import UNet2DModel

    depth = str(depth)
    check_resolution(depth, resolution)
    spec = TABLE_A[depth]
    channels = scaled_channels(spec.channels, width)
    norm_groups = 32 if width == 1.0 else 8  # same normalisation for every narrow depth
    return UNet2DModel(
        sample_size=resolution,
        in_channels=in_channels,
        out_channels=in_channels,
        layers_per_block=2,
        block_out_channels=channels,
        down_block_types=tuple(_DOWN[b] for b in spec.blocks),
        up_block_types=tuple(_UP[b] for b in reversed(spec.blocks)),
        norm_num_groups=norm_groups,
        num_class_embeds=num_class_embeds,
    )


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


#: environment variable that overrides the device every pipeline step runs on ("cpu", "cuda",
#: "cuda:1", ...); unset: CUDA when available, else the CPU
DEVICE_ENV = "BIASLAB_DEVICE"


def default_device():
    """The device the training, sampling and evaluation steps use: ``$BIASLAB_DEVICE`` when
    set, else CUDA when available, else the CPU."""
    import os

    import torch

    name = os.environ.get(DEVICE_ENV)
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"{DEVICE_ENV}={name!r} is not a torch device ({e})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={name!r}, but CUDA is not available here")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
