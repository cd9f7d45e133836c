"""Feature backbones for LPIPS diversity and kNN memorization scores.

Every backbone takes images as float tensors in [-1, 1] of shape N x C x H x W (C = 1 or 3) and
offers

* ``lpips_features(x) -> Tensor[N, F]`` (float64): the scaled flat LPIPS rows
  ``u_i = concat_l flatten(sqrt(w_l) * n_{i,l}) / sqrt(H_l W_l)`` of
  :func:`biaslab.evaluation.metrics.lpips_flat_features`, so that ``LPIPS(x_i, x_j) = |u_i -
  u_j|^2`` (see :mod:`biaslab.evaluation.metrics`);
* ``embed(x) -> Tensor[N, D]`` (float32): a global feature vector for kNN search;
* ``name``: ``"alex"``, ``"vgg"``, ``"classifier"`` or ``"inception"`` (kNN only: it has no
  ``lpips_features``).

Nothing here downloads anything: the ImageNet weights are read from local torchvision
checkpoint files (``python -m biaslab.evaluation.fetch_weights`` fetches them once, on a machine
with internet). The kNN features of each base set are computed once, by the workflow rule
``base_features`` (:func:`biaslab.evaluation.cell.knn_features`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from biaslab.evaluation.metrics import LPIPS_EPS, lpips_flat_features

__all__ = [
    "TORCHVISION_CHECKPOINTS",
    "WEIGHTS_FILES",
    "ClassifierBackbone",
    "InceptionBackbone",
    "LpipsBackbone",
    "default_weights_path",
    "load_backbone",
]

# torchvision file names of the IMAGENET1K_V1 weights the lpips package itself would download.
TORCHVISION_CHECKPOINTS = {
    "alex": ("alexnet", "alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16", "vgg16-397923af.pth"),
}
#: every local weights file: backbone name -> (torchvision builder, file name of IMAGENET1K_V1)
WEIGHTS_FILES = {
    **TORCHVISION_CHECKPOINTS,
    "inception": ("inception_v3", "inception_v3_google-0cc3c7bd.pth"),
}


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode, disable autograd, restore the previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _check_images(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x C x H x W with C in (1, 3), got {tuple(x.shape)}")
    return x


def _embed_from_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """Concatenation over layers of the spatial mean of the channel-unit-normalised maps:
    ``e_l = mean_{h,w} f_l / (sqrt(sum_c f_l^2) + 1e-10)``, ``e = concat_l e_l``."""
    parts = []
    for f in maps:
        f = f.detach().to(torch.float64)
        n = f / (torch.sqrt((f * f).sum(dim=1, keepdim=True)) + LPIPS_EPS)
        parts.append(n.mean(dim=(2, 3)))
    return torch.cat(parts, dim=1).to(torch.float32)


def default_weights_path(net: str) -> Path:
    """Where torchvision caches the ImageNet weights of ``net`` (alex, vgg, inception):
    ``torch.hub.get_dir()/checkpoints/<file>`` (honours ``TORCH_HOME``)."""
    if net not in WEIGHTS_FILES:
        raise ValueError(f"net must be one of {sorted(WEIGHTS_FILES)}, got {net!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILES[net][1]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and not any(str(k).startswith("features.") for k in sd):
        for key in ("state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {str(k).removeprefix("module."): v for k, v in sd.items()}


class LpipsBackbone:
    """The LPIPS network of the ``lpips`` package (``alex`` or ``vgg``) as a feature extractor.

    Builds ``lpips.LPIPS(net=net, pretrained=True, pnet_rand=True)``: the shipped v0.1 linear
    weights ``lpips/weights/v0.1/{net}.pth`` and a randomly initialised trunk (so nothing is
    downloaded), then copies the ImageNet trunk from a local torchvision state dict: its
    ``features.{i}.*`` entries go to the lpips slices, which keep the torchvision ``features``
    layers under their original indices as child names (``net.slice2.3`` is ``features.3``).

    Args:
        net: ``"alex"`` or ``"vgg"``.
        weights_path: torchvision state dict of the full AlexNet / VGG16; default
            :func:`default_weights_path` (the torch hub cache).
        resize: images are bilinearly resized (``align_corners=False``, no antialiasing) to
            ``resize x resize`` first when their size differs; ``None`` keeps them. AlexNet
            needs about 64 px to give non-trivial deep maps on 16/32 px images.
        random_backbone: keep the random trunk (tests only; ``weights_path`` must be None).
        lpips_model: use this already built ``lpips.LPIPS`` as is (trunk included).
        batch_size: images per network pass in :meth:`lpips_features` / :meth:`embed`.
        device: where the network runs; results are returned on the CPU.

    Grey images are repeated to 3 channels; then the lpips ``ScalingLayer`` is applied and the
    trunk run exactly as in ``lpips.LPIPS.forward`` (v0.1).
    """

    def __init__(
        self,
        net: str = "alex",
        weights_path: str | os.PathLike | None = None,
        resize: int | None = 64,
        *,
        random_backbone: bool = False,
        lpips_model: torch.nn.Module | None = None,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        if net not in TORCHVISION_CHECKPOINTS:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        if random_backbone and weights_path is not None:
            raise ValueError("random_backbone=True ignores weights; do not pass weights_path")
        self.name = net
        self.resize = None if resize is None else int(resize)
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.weights_path: Path | None = None

        if lpips_model is None:
            import lpips

            with warnings.catch_warnings():
                # lpips calls torchvision's deprecated ``pretrained=`` argument
                warnings.simplefilter("ignore", UserWarning)
                lpips_model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
            if not random_backbone:
                self.weights_path = (
                    Path(weights_path) if weights_path is not None else default_weights_path(net)
                )
                self._load_trunk(lpips_model, self.weights_path)
        elif getattr(lpips_model, "pnet_type", net) not in (net, net + "16"):
            raise ValueError(f"lpips_model is a {lpips_model.pnet_type!r} net, not {net!r}")
        self.model = lpips_model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # w_{l,c}: the 1x1 conv weights [1, C_l, 1, 1] of lin0..lin{L-1}
        self.channel_weights = [
            lin.model[-1].weight.detach().reshape(-1) for lin in lpips_model.lins
        ]

    def _load_trunk(self, model: torch.nn.Module, path: Path) -> None:
        if not path.is_file():
            arch = TORCHVISION_CHECKPOINTS[self.name][0]
            raise FileNotFoundError(
                f"ImageNet {arch} weights for LPIPS ({self.name}) not found at {path}. Nothing is "
                f"downloaded at run time: on a machine with internet run "
                f'`python -c "import torchvision; torchvision.models.{arch}'
                f"(weights='IMAGENET1K_V1')\"`, which stores "
                f"{TORCHVISION_CHECKPOINTS[self.name][1]} under torch.hub.get_dir()/checkpoints; "
                f"copy it to {path} (or set TORCH_HOME), or point `metrics.backbone_weights` in "
                f"the config at the file."
            )
        sd = _read_state_dict(path)
        target = {}
        for key in model.net.state_dict():
            # "slice2.3.weight" -> "features.3.weight"
            _, idx, param = key.split(".", 2)
            src = f"features.{idx}.{param}"
            if src not in sd:
                raise KeyError(f"{path} has no entry {src!r}; is it a torchvision {self.name}?")
            target[key] = sd[src]
        model.net.load_state_dict(target, strict=True)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_images(x).to(device=self.device, dtype=torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.resize is not None and tuple(x.shape[2:]) != (self.resize, self.resize):
            x = F.interpolate(
                x, size=(self.resize, self.resize), mode="bilinear", align_corners=False
            )
        return self.model.scaling_layer(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's layer outputs (relu1..relu5, as ``lpips.LPIPS.forward`` uses them) for one
        batch, after grey-to-RGB, resizing and the ScalingLayer. No batching, no grad."""
        with _eval_mode(self.model):
            return list(self.model.net(self._prepare(x)))

    def lpips_features(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled flat LPIPS rows ``u`` [N, F], float64 on the CPU: ``LPIPS(x_i, x_j) =
        |u_i - u_j|^2`` with the package's linear weights ``w_{l,c}``."""
        x = _check_images(x)
        out = []
        for s in range(0, x.shape[0], self.batch_size):
            maps = self.feature_maps(x[s : s + self.batch_size])
            out.append(lpips_flat_features(maps, self.channel_weights).cpu())
        return torch.cat(out, dim=0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Global feature [N, sum_l C_l] (float32, CPU) for kNN with cosine similarity: per layer
        the spatial mean of the channel-unit-normalised map, ``mean_{h,w} n_{l}``, concatenated
        over the 5 layers (unweighted; each layer block has norm <= 1)."""
        x = _check_images(x)
        out = []
        for s in range(0, x.shape[0], self.batch_size):
            out.append(_embed_from_maps(self.feature_maps(x[s : s + self.batch_size])).cpu())
        return torch.cat(out, dim=0)


class ClassifierBackbone:
    """The evaluation classifier as a feature extractor.

    ``model`` must provide ``feature_maps(x) -> list[Tensor N x C x H x W]`` and
    ``embed(x) -> Tensor[N, D]``; images are passed as given (no resizing, no channel repeat,
    no ScalingLayer). LPIPS uses the same formula as the lpips package with uniform channel
    weights ``w = 1``: ``d(x_i, x_j) = sum_l mean_{h,w} sum_c (n_{i,l} - n_{j,l})^2``.
    """

    name = "classifier"

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        batch_size: int = 256,
        device: str | torch.device | None = None,
    ) -> None:
        for attr in ("feature_maps", "embed"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(f"classifier must have a method {attr}(x)")
        self.model = model
        self.batch_size = max(1, int(batch_size))
        if device is None:
            p = next(iter(model.parameters()), None)
            device = p.device if p is not None else "cpu"
        self.device = torch.device(device)

    def _batches(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        x = _check_images(x)
        for s in range(0, x.shape[0], self.batch_size):
            yield x[s : s + self.batch_size].to(device=self.device, dtype=torch.float32)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``model.feature_maps`` in eval mode without grad (one batch)."""
        with _eval_mode(self.model):
            return list(self.model.feature_maps(_check_images(x).to(self.device, torch.float32)))

    def lpips_features(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled flat LPIPS rows ``u`` [N, F] (float64, CPU) with ``w = 1``."""
        out = []
        with _eval_mode(self.model):
            for xb in self._batches(x):
                out.append(lpips_flat_features(list(self.model.feature_maps(xb))).cpu())
        return torch.cat(out, dim=0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``model.embed(x)`` [N, D] (float32, CPU)."""
        out = []
        with _eval_mode(self.model):
            for xb in self._batches(x):
                out.append(self.model.embed(xb).detach().to(torch.float32).cpu())
        return torch.cat(out, dim=0)


class InceptionBackbone:
    """torchvision's Inception-v3 (ImageNet) as a kNN feature extractor (Table 3's "Inception
    feature space").

    The net is built as torchvision builds it for its ImageNet weights,
    ``inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)``,
    and loaded (strictly) from a local torchvision state dict, by default
    ``torch.hub.get_dir()/checkpoints/inception_v3_google-0cc3c7bd.pth``; nothing is
    downloaded. Preprocessing: images in [-1, 1] are mapped to [0, 1], grey is repeated to 3
    channels, everything is resized to ``resize x resize`` (299) bilinearly
    (``align_corners=False``, no antialiasing) and normalised with the ImageNet mean and std;
    ``transform_input=True`` then turns that into the (x - 0.5) / 0.5 input the Google weights
    expect, exactly as with ``torchvision.models.inception_v3(weights="IMAGENET1K_V1")``.
    :meth:`embed` returns the 2048-d output of the global average pool (after ``Mixed_7c``,
    before dropout and ``fc``), in eval mode.

    Args:
        weights_path: torchvision state dict of Inception-v3; default
            :func:`default_weights_path` ``("inception")``.
        random_backbone: keep the random initialisation (tests only).
        resize: input size of the net (299 as in torchvision's weights).
        batch_size: images per network pass.
        device: where the network runs; results are returned on the CPU.
    """

    name = "inception"
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        *,
        random_backbone: bool = False,
        resize: int = 299,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ) -> None:
        from torchvision.models import inception_v3

        if random_backbone and weights_path is not None:
            raise ValueError("random_backbone=True ignores weights; do not pass weights_path")
        self.resize = int(resize)
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.weights_path: Path | None = None
        model = inception_v3(
            weights=None, aux_logits=True, init_weights=False, transform_input=True
        )
        if not random_backbone:
            path = Path(weights_path) if weights_path else default_weights_path(self.name)
            if not path.is_file():
                raise FileNotFoundError(
                    f"ImageNet Inception-v3 weights not found at {path}. Nothing is downloaded "
                    "at run time: on a machine with internet run `python -m "
                    "biaslab.evaluation.fetch_weights --dest DIR inception`, which stores "
                    f"{WEIGHTS_FILES['inception'][1]} in DIR, then copy it to {path} (or set "
                    "TORCH_HOME) or point the backbone's weights path "
                    "(metrics.backbone_weights) at the file."
                )
            model.load_state_dict(_read_state_dict(path), strict=True)
            self.weights_path = path
        model.fc = torch.nn.Identity()  # forward now ends at the flattened average pool
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_images(x).to(device=self.device, dtype=torch.float32)
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if tuple(x.shape[2:]) != (self.resize, self.resize):
            x = F.interpolate(
                x, size=(self.resize, self.resize), mode="bilinear", align_corners=False
            )
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """2048-d average-pool features [N, 2048] (float32, CPU) for kNN with cosine."""
        x = _check_images(x)
        out = []
        with _eval_mode(self.model):
            for s in range(0, x.shape[0], self.batch_size):
                out.append(self.model(self._prepare(x[s : s + self.batch_size])).float().cpu())
        return torch.cat(out, dim=0)

    def lpips_features(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError(
            "metrics.backbone: 'inception' gives kNN features only (Table 3); LPIPS diversity "
            "needs 'alex', 'vgg' or 'classifier'"
        )


def load_backbone(
    name: str,
    *,
    weights_path: str | os.PathLike | None = None,
    resize: int | None = 64,
    classifier: torch.nn.Module | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> LpipsBackbone | ClassifierBackbone | InceptionBackbone:
    """Backbone for the config value ``metrics.backbone``: ``"alex"``, ``"vgg"`` (see
    :class:`LpipsBackbone`; ``weights_path`` from ``metrics.backbone_weights``),
    ``"classifier"`` (wraps ``classifier``, see :class:`ClassifierBackbone`) or
    ``"inception"`` (kNN features only, see :class:`InceptionBackbone`; ``resize`` is
    ignored: Inception-v3 always sees 299 x 299). ``device``: where the network runs (default:
    the classifier's device for ``"classifier"``, else
    ``biaslab.models.unets.default_device()``)."""
    from biaslab.models.unets import default_device

    if name in TORCHVISION_CHECKPOINTS:
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        return LpipsBackbone(
            name, weights_path, resize, device=device or default_device(), **kwargs
        )
    if name == "classifier":
        if classifier is None:
            raise ValueError("metrics.backbone='classifier' needs the classifier model")
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        return ClassifierBackbone(classifier, device=device, **kwargs)
    if name == "inception":
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        return InceptionBackbone(weights_path, device=device or default_device(), **kwargs)
    raise ValueError(
        f"unknown metrics.backbone {name!r}; expected one of 'alex', 'vgg', 'classifier', "
        "'inception'"
    )
