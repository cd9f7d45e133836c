"""Attribute labellers from local weights, for images of models this lab did not train.

* ``ClipLabeller`` - CLIP zero-shot (Radford et al. 2021): ``transformers`` ``CLIPModel`` and
  ``CLIPProcessor`` from a local folder; each attribute value is described by text templates,
  whose normalised embeddings are averaged (the CLIP paper's prompt ensembling); the
  probabilities are the softmax of ``logit_scale * cos(image, value)`` over the values. Its
  image embeddings are the CLIP-I space of ``same_seed_similarity`` and of the Fig. 6
  measurement.
* ``FairFaceLabeller`` - the public FairFace ResNet-34 (Karkkainen & Joo 2021,
  ``res34_fair_align_multi_7_20190809.pt``: 18 outputs, 7 race, 2 gender, 9 age logits), a
  ``torchvision`` ``resnet34`` with an 18-way head loaded from a state-dict file; ages are
  pooled into DiffLens' groups 0-19 / 20-59 / 60+ (``AGE_GROUPS``). Faces are not cropped.

Each labeller's ``probabilities(images)`` gives, per attribute, the value names and per-sample
probabilities [N, V], so shares, FD (``evaluation.quality.fd_interval``) and confidence are computed
as for the lab's own classifiers. Everything is read with ``local_files_only``: nothing downloads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from biaslab.pretrained.layouts import clip_missing_files

FAIRFACE_RACE = (
    "White",
    "Black",
    "Latino_Hispanic",
    "East Asian",
    "Southeast Asian",
    "Indian",
    "Middle Eastern",
)
FAIRFACE_GENDER = ("Male", "Female")
FAIRFACE_AGE = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
#: DiffLens' age groups as sums of FairFace's age bins
AGE_GROUPS: dict[str, tuple[str, ...]] = {
    "0-19": ("0-2", "3-9", "10-19"),
    "20-59": ("20-29", "30-39", "40-49", "50-59"),
    "60+": ("60-69", "70+"),
}
FAIRFACE_ATTRIBUTES = ("race", "gender", "age")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

Probabilities = dict[str, tuple[tuple[str, ...], np.ndarray]]


def _check_images(images: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"labeller: need uint8 RGB images [N, 3, H, W], got {images.dtype} {images.shape}"
        )


class ClipLabeller:
    """CLIP zero-shot attribute labels; ``attributes`` maps attribute -> value -> templates,
    e.g. ``{"gender": {"male": ["a photo of a man"], "female": ["a photo of a woman"]}}``."""

    def __init__(
        self,
        path: str | Path,
        attributes: Mapping[str, Mapping[str, Sequence[str]]],
        device: torch.device | str = "cpu",
        batch_size: int = 64,
    ):
        from transformers import CLIPModel, CLIPProcessor

        missing = clip_missing_files(path)
        if missing:
            raise FileNotFoundError(f"{path}: not a CLIP folder, missing {missing}")
        for attr, values in attributes.items():
            if len(values) < 2 or any(not t for t in values.values()):
                raise ValueError(
                    f"labellers.clip.attributes.{attr}: need two values at least, each with "
                    f"one text template at least"
                )
        try:
            self.model = CLIPModel.from_pretrained(str(path), local_files_only=True)
            self.processor = CLIPProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: cannot load a CLIP model: {e}") from e
        self.model = self.model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.attributes = {a: tuple(v) for a, v in attributes.items()}
        self._text = {a: self._value_embeddings(v) for a, v in attributes.items()}

    @torch.no_grad()
    def _value_embeddings(self, values: Mapping[str, Sequence[str]]) -> torch.Tensor:
        rows = []
        for templates in values.values():
            tok = self.processor.tokenizer(list(templates), padding=True, return_tensors="pt")
            e = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()})
            e = _tensor(e)
            rows.append(F.normalize(F.normalize(e, dim=-1).mean(0), dim=-1))
        return torch.stack(rows)

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> torch.Tensor:
        """Unit-norm CLIP image embeddings [N, D] of uint8 images [N, 3, H, W]."""
        _check_images(images)
        out = []
        for s in range(0, len(images), self.batch_size):
            batch = [im.transpose(1, 2, 0) for im in images[s : s + self.batch_size]]
            pix = self.processor.image_processor(images=batch, return_tensors="pt").pixel_values
            e = _tensor(self.model.get_image_features(pixel_values=pix.to(self.device)))
            out.append(F.normalize(e.float(), dim=-1).cpu())
        return torch.cat(out)

    def probabilities(self, images: np.ndarray, embeddings: torch.Tensor | None = None):
        """{attribute: (value names, probabilities [N, V])}."""
        e = self.embed(images) if embeddings is None else embeddings
        scale = float(self.model.logit_scale.detach().exp())
        return {
            a: (self.attributes[a], (scale * e @ t.float().cpu().T).softmax(-1).numpy())
            for a, t in self._text.items()
        }


def _tensor(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor (or, in some transformers versions, an output with
    ``pooler_output``)."""
    return out if torch.is_tensor(out) else out.pooler_output


def fairface_network() -> torch.nn.Module:
    """The FairFace architecture: torchvision ResNet-34 with an 18-way head."""
    from torchvision.models import resnet34

    return resnet34(weights=None, num_classes=18)


def load_fairface(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The FairFace ResNet-34 from its state-dict file, with a clear error for a missing
    file, a file that is not a state dict, or the weights of another network."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FairFace weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"FairFace weights {path}: not a readable state dict: {e}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"FairFace weights {path}: not a state dict ({type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = fairface_network()
    head = state.get("fc.weight")
    if head is None or tuple(head.shape) != tuple(net.fc.weight.shape):
        got = None if head is None else tuple(head.shape)
        raise ValueError(
            f"FairFace weights {path}: fc.weight is {got}, the 7-race/2-gender/9-age "
            f"ResNet-34 head is {tuple(net.fc.weight.shape)} (weights of another network?)"
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"FairFace weights {path}: not a ResNet-34 state dict: {e}") from e
    return net.to(device).eval()


class FairFaceLabeller:
    """FairFace race / gender / age (pooled into ``AGE_GROUPS``) probabilities."""

    def __init__(
        self,
        path: str | Path,
        attributes: Sequence[str] = ("gender", "age"),
        device: torch.device | str = "cpu",
        batch_size: int = 64,
    ):
        bad = [a for a in attributes if a not in FAIRFACE_ATTRIBUTES]
        if bad or not attributes:
            raise ValueError(
                f"labellers.fairface.attributes: {list(attributes)}, need some of "
                f"{FAIRFACE_ATTRIBUTES}"
            )
        self.net = load_fairface(path, device)
        self.device = torch.device(device)
        self.attributes = tuple(attributes)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def logits(self, images: np.ndarray) -> torch.Tensor:
        """The 18 logits of uint8 images [N, 3, H, W] (resized to 224, ImageNet-normalised as
        FairFace's ``predict.py``)."""
        _check_images(images)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        out = []
        for s in range(0, len(images), self.batch_size):
            x = torch.from_numpy(images[s : s + self.batch_size]).float() / 255.0
            x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
            out.append(self.net(((x - mean) / std).to(self.device)).float().cpu())
        return torch.cat(out)

    def probabilities(self, images: np.ndarray) -> Probabilities:
        z = self.logits(images)
        race = z[:, :7].softmax(-1).numpy()
        gender = z[:, 7:9].softmax(-1).numpy()
        age = z[:, 9:18].softmax(-1).numpy()
        groups = np.stack(
            [age[:, [FAIRFACE_AGE.index(b) for b in bins]].sum(1) for bins in AGE_GROUPS.values()],
            axis=1,
        )
        table = {
            "race": (FAIRFACE_RACE, race),
            "gender": (FAIRFACE_GENDER, gender),
            "age": (tuple(AGE_GROUPS), groups),
        }
        return {a: table[a] for a in self.attributes}
